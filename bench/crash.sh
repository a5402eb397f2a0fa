#!/bin/sh
# bench/crash.sh - the crash test of make check (tests/cli/crash.sh) with
# many more kills: apply killed with SIGKILL at hundreds of seeded random
# points (durability points and random moments), re-run each time, the
# result compared byte for byte with an uninterrupted run and verified.
#
#   bench/crash.sh [KILLS] [BUILDDIR]     (KILLS default 300)
#
# CRASH_SEED and CRASH_PRESET (tiny, small) are passed through.
set -eu
kills=${1:-300}
src=$(cd "$(dirname "$0")/.." && pwd)
build=${2:-$src}
[ -x "$build/src/loxstream" ] || { echo "build first: $build/src/loxstream not found" >&2; exit 1; }
LOXSTREAM="$build/src/loxstream" TESTS_SRCDIR="$src/tests" BLIS_NUM_THREADS=1 \
    CRASH_KILLS=$kills exec sh "$src/tests/cli/crash.sh"

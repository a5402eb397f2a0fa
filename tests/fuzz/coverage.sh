#!/bin/sh
# coverage.sh - line and branch coverage of the input code reached by a
# fuzzing corpus (clang source-based coverage, llvm-cov).
#
#   tests/fuzz/coverage.sh [OUTDIR]     (default: ./fuzz-build, as run.sh)
#
# Replays the seeds and OUTDIR/corpus/<target> (what run.sh found) through
# coverage builds of the three targets and prints llvm-cov's report for the
# files they exercise.  FUZZ_CC / LLVM_COV / LLVM_PROFDATA to choose tools.
set -eu

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-fuzz-build}
mkdir -p "$out/cov"
out=$(cd "$out" && pwd)
cc=${FUZZ_CC:-clang}
ver=$($cc --version | sed -n 's/.*clang version \([0-9]*\).*/\1/p' | head -n 1)
cov=${LLVM_COV:-$(command -v "llvm-cov-$ver" || command -v llvm-cov)}
prof=${LLVM_PROFDATA:-$(command -v "llvm-profdata-$ver" || command -v llvm-profdata)}

deps=$(pkg-config --cflags jansson libxxhash)
libs=$(pkg-config --libs jansson libxxhash)
lib="src/base/error.c src/base/parse.c src/base/fs.c src/base/testhook.c
     src/io/safetensors.c src/io/st_write.c src/io/direct.c src/io/index.c
     src/io/checkpoint.c src/numeric/dtype.c"
files=
for f in $lib; do
    files="$files $srcdir/$f"
done
flags="-std=c11 -D_GNU_SOURCE -g -O0 -I$srcdir/include $deps -fprofile-instr-generate -fcoverage-mapping"

rm -f "$out"/cov/*.profraw
for t in header index checkpoint; do
    # shellcheck disable=SC2086
    $cc $flags -fsanitize=fuzzer "$srcdir/tests/fuzz/fuzz_$t.c" $files $libs -lm -o "$out/cov/fuzz_$t"
    dirs="$srcdir/tests/fuzz/corpus/$t"
    [ -d "$out/corpus/$t" ] && dirs="$dirs $out/corpus/$t"
    # shellcheck disable=SC2086
    LLVM_PROFILE_FILE="$out/cov/$t.profraw" "$out/cov/fuzz_$t" -runs=0 $dirs >"$out/cov/$t.log" 2>&1
done
"$prof" merge -sparse "$out"/cov/*.profraw -o "$out/cov/all.profdata"
# shellcheck disable=SC2086
"$cov" report "$out/cov/fuzz_header" -object "$out/cov/fuzz_index" \
    -object "$out/cov/fuzz_checkpoint" -instr-profile="$out/cov/all.profdata" $files

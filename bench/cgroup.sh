#!/bin/bash
# bench/cgroup.sh - apply within a memory limit (issue 15): one run in a
# memory cgroup of LIMIT MiB (v1 or v2, tests/cli/cglib.sh; needs root), on
# a Llama-2-7B-shaped pair of LAYERS layers (default 1: 2 x 0.93 GB), its
# inputs dropped from the page cache first.  Prints apply's --stats line
# (the limit it found, read-ahead, wall time, peak RSS), the bytes the run
# read and wrote (/proc/PID/io of the shell that waited for it), the ratio
# of bytes read to input bytes and the cgroup's peak memory use.
#
#   bench/cgroup.sh [LIMIT_MIB] [BUILDDIR] [LAYERS]     (LIMIT_MIB default 400)
#
# BENCH_DIR: where the pair is made (default a fresh directory under
# /var/tmp, deleted at the end unless BENCH_KEEP=1); a pair already there
# (BENCH_DIR/m) is used as it is.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
limit_mib=${1:-400}
build=${2:-$src}
layers=${3:-1}
lox="$build/src/loxstream"
[ -x "$lox" ] || { echo "build first: $lox not found" >&2; exit 1; }
. "$src/tests/cli/cglib.sh"
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/loxcgbench.XXXXXX)}
if [ "${BENCH_KEEP:-0}" = 1 ]; then trap cg_remove EXIT; else trap 'cg_remove; rm -rf "$dir"' EXIT; fi
[ -d "$dir/m/aligned" ] ||
    "$lox" synth -q --preset llama-7b --layers "$layers" --no-finetuned "$dir/m"
rm -rf "$dir/lox"
inputs=("$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors)
in_bytes=$(cat "${inputs[@]}" | wc -c)
lscpu | sed -n 's/^Model name: *//p'
echo "inputs: $in_bytes bytes; cgroup limit: $limit_mib MiB"
uncache "${inputs[@]}"
cg_make $((limit_mib << 20)) || { echo "no memory cgroup: $CG_WHY" >&2; exit 1; }
cg_run "$dir/io" "$lox" apply -q --stats -b "$dir/m/base" -a "$dir/m/aligned" -o "$dir/lox"
read_bytes=$(awk '/^read_bytes:/ {print $2}' "$dir/io")
write_bytes=$(awk '/^write_bytes:/ {print $2}' "$dir/io")
peak=$(cg_peak)
printf 'read %s bytes (%.2f x the inputs), wrote %s bytes; cgroup peak %s MiB (v%s)\n' \
    "$read_bytes" "$(echo "$read_bytes / $in_bytes" | bc -l)" "$write_bytes" \
    "$((${peak:-0} >> 20))" "$CG_VER"
"$lox" verify -q "$dir/lox" && echo "verify: ok"

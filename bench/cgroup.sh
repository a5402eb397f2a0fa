#!/bin/bash
# bench/cgroup.sh - apply within a memory limit against the same run without
# one (issue 15's target: storage read <= 1.1 x the input bytes, wall <= 1.3 x
# the unconstrained run).  On a Llama-2-7B-shaped pair of LAYERS layers
# (default 1: 2 x 0.93 GB; 8 layers: 2 x 3.77 GB), REPEAT rounds (default 2)
# of two runs each, interleaved: one unconstrained, one in a memory cgroup of
# LIMIT MiB (v1 or v2, tests/cli/cglib.sh; needs root).  Before each run the
# inputs are dropped from the page cache (uncache: only these files, not
# the whole machine's cache) and the last output is removed.  Each run's
# storage read and write are the /proc/PID/io of the shell that waited for
# it; wall is that shell's (date), beside apply's --stats line.  Prints a
# line per run, then the smallest wall of each kind, the wall ratio and the
# bytes read per input byte side by side.
#
#   bench/cgroup.sh [LIMIT_MIB] [BUILDDIR] [LAYERS] [REPEAT]  (LIMIT_MIB default 512)
#
# BENCH_DIR: where the pair is made (default a fresh directory under
# /var/tmp, deleted at the end unless BENCH_KEEP=1); a pair already there
# (BENCH_DIR/m) is used as it is.  BENCH_ARGS: more apply options.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
limit_mib=${1:-512}
build=${2:-$src}
layers=${3:-1}
repeat=${4:-2}
lox="$build/src/loxstream"
[ -x "$lox" ] || { echo "build first: $lox not found" >&2; exit 1; }
. "$src/tests/cli/cglib.sh"
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/loxcgbench.XXXXXX)}
if [ "${BENCH_KEEP:-0}" = 1 ]; then trap cg_remove EXIT; else trap 'cg_remove; rm -rf "$dir"' EXIT; fi
[ -d "$dir/m/aligned" ] ||
    "$lox" synth -q --preset llama-7b --layers "$layers" --no-finetuned "$dir/m"
inputs=("$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors)
in_bytes=$(cat "${inputs[@]}" | wc -c)
cg_make $((limit_mib << 20)) || { echo "no memory cgroup: $CG_WHY" >&2; exit 1; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" \
    "(family $(grep -m1 '^cpu family' /proc/cpuinfo | sed 's/.*: //')," \
    "model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | sed 's/.*: //'))"
echo "inputs: $in_bytes bytes ($layers layers); cgroup v$CG_VER limit: $limit_mib MiB"

# run MODE: one apply, MODE "free" (no limit) or "limit" (in the cgroup);
# appends "MODE read_bytes write_bytes wall_s peak_bytes" to $dir/runs
# shellcheck disable=SC2086 # BENCH_ARGS: separate words
run() {
    rm -rf "$dir/lox"
    uncache "${inputs[@]}"
    local t0 t1 peak=
    t0=$(date +%s.%N)
    if [ "$1" = limit ]; then
        cg_run "$dir/io" "$lox" apply -q --stats ${BENCH_ARGS:-} -b "$dir/m/base" \
            -a "$dir/m/aligned" -o "$dir/lox" 2>"$dir/err"
    else
        CG_IOFILE=$dir/io sh -c '"$@"
rc=$?
grep -E "^(read|write)_bytes:" /proc/$$/io >"$CG_IOFILE"
exit $rc' sh "$lox" apply -q --stats ${BENCH_ARGS:-} -b "$dir/m/base" \
            -a "$dir/m/aligned" -o "$dir/lox" 2>"$dir/err"
    fi
    t1=$(date +%s.%N)
    [ "$1" = limit ] && peak=$(cg_peak)
    local rd wr
    rd=$(awk '/^read_bytes:/ {print $2}' "$dir/io")
    wr=$(awk '/^write_bytes:/ {print $2}' "$dir/io")
    echo "$1 $rd $wr $(echo "$t1 - $t0" | bc -l) ${peak:-0}" >>"$dir/runs"
    printf '%-5s read %6.3f GB (%.2f x inputs), wrote %6.3f GB, wall %7.2f s%s\n' "$1" \
        "$(echo "$rd / 1000000000" | bc -l)" "$(echo "$rd / $in_bytes" | bc -l)" \
        "$(echo "$wr / 1000000000" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" \
        "${peak:+, cgroup peak $((peak >> 20)) MiB}"
    grep -E '^(loxstream: )?stats:|warning' "$dir/err" | sed 's/^/      /' | cut -c1-400
    # the first unconstrained run's output, less its shards (the manifest
    # loxstream.xxh3 has their checksums; verify reads them back at the end)
    if [ "$1" = limit ] && [ -d "$dir/ref" ]; then
        diff -r --exclude='*.safetensors' "$dir/ref" "$dir/lox" >/dev/null &&
            echo "      output: manifest and journal identical to the unconstrained run's" ||
            echo "      output: DIFFERS from the unconstrained run's"
    fi
    if [ "$1" = free ] && [ ! -d "$dir/ref" ]; then
        mkdir "$dir/ref"
        tar -C "$dir/lox" --exclude='*.safetensors' -cf - . | tar -C "$dir/ref" -xf -
    fi
}

: >"$dir/runs"
rm -rf "$dir/ref"
for r in $(seq "$repeat"); do
    echo "round $r"
    run free
    run limit
done
"$lox" verify -q "$dir/lox" && echo "verify (the last run in the cgroup): ok"
rm -rf "$dir/ref" "$dir/lox"
awk -v in_bytes="$in_bytes" '
    { n[$1]++; if (!($1 in w) || $4 < w[$1]) w[$1] = $4
      if (!($1 in rmin) || $2 < rmin[$1]) rmin[$1] = $2
      if ($2 > rmax[$1]) rmax[$1] = $2 }
    END {
        printf "%-22s %16s %16s\n", "", "unconstrained", "in the cgroup"
        printf "%-22s %16s %16s\n", "runs", n["free"], n["limit"]
        printf "%-22s %7.2f - %5.2f x %7.2f - %5.2f x\n", "read / input bytes",
            rmin["free"] / in_bytes, rmax["free"] / in_bytes,
            rmin["limit"] / in_bytes, rmax["limit"] / in_bytes
        printf "%-22s %14.2f s %14.2f s\n", "wall (min)", w["free"], w["limit"]
        printf "wall ratio (min / min): %.2f\n", w["limit"] / w["free"]
    }' "$dir/runs"

#!/bin/bash
# bench/run.sh - end-to-end benchmark of loxstream apply on a Llama-2-7B-shaped
# synthetic pair, with the floor it is measured against.
#
#   bench/run.sh [LAYERS] [BUILDDIR]      (LAYERS default 32: the whole 7B shape)
#
# Needs ~14 GB of disk per model at 32 layers (BENCH_DIR, default a fresh
# directory under /var/tmp, deleted at the end unless BENCH_KEEP=1).
# Prints: wall time, peak RSS and peak anonymous memory, bytes read and
# written, GB/s, SVD time and GFLOP/s; the floor (sequential read of the
# inputs, sequential write of an output of the same size, the GEMM flops at
# the measured BLIS rate); and one 4096x11008 matrix done by the randomized
# SVD and by the exact SVD, with the error of each against the exact one.
set -euo pipefail
layers=${1:-32}
build=${2:-$(cd "$(dirname "$0")/.." && pwd)}
lox="$build/src/loxstream"
lxcheck="$build/tests/tools/lxcheck"
[ -x "$lox" ] || { echo "build first: $lox not found" >&2; exit 1; }
[ -x "$lxcheck" ] || make -C "$build" tests/tools/lxcheck >/dev/null
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/loxbench.XXXXXX)}
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT

"$lox" --version
echo "== synth: llama-7b shapes, $layers layers, bf16"
/usr/bin/time -f "synth: %e s, max RSS %M KiB" "$lox" synth -q --preset llama-7b --layers "$layers" \
    --no-finetuned "$dir/m"
in_bytes=$(du -cb "$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors | tail -1 | cut -f1)
out_bytes=$(du -cb "$dir"/m/aligned/*.safetensors | tail -1 | cut -f1)

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

echo "== floor: sequential I/O"
drop_caches
t0=$(date +%s.%N)
cat "$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors >/dev/null
t1=$(date +%s.%N)
read_s=$(echo "$t1 - $t0" | bc)
dd if=/dev/zero of="$dir/floor.out" bs=16M count=$((out_bytes / 16777216)) conv=fdatasync status=none
t2=$(date +%s.%N)
write_s=$(echo "$t2 - $t1" | bc)
rm -f "$dir/floor.out"
printf 'read inputs  %.1f GB in %.1f s (%.2f GB/s)\n' "$(echo "$in_bytes/1000000000" | bc -l)" "$read_s" "$(echo "$in_bytes/1000000000/$read_s" | bc -l)"
printf 'write output %.1f GB in %.1f s (%.2f GB/s)\n' "$(echo "$out_bytes/1000000000" | bc -l)" "$write_s" "$(echo "$out_bytes/1000000000/$write_s" | bc -l)"

echo "== apply (default: rank 6, alpha 1.25, tol)"
drop_caches
"$lox" apply -q --base "$dir/m/base" --aligned "$dir/m/aligned" --output "$dir/lox" \
    --report "$dir/report.tsv" --stats 2>"$dir/apply.err" &
pid=$!
anon_peak=0
while kill -0 $pid 2>/dev/null; do
    a=$(awk '/^RssAnon:/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    [ "${a:-0}" -gt "$anon_peak" ] && anon_peak=$a
    sleep 0.2
done
wait $pid
cat "$dir/apply.err"
echo "peak anonymous memory (sampled every 0.2 s): $((anon_peak / 1024)) MiB"
awk -F '\t' 'NR > 1 && $6 == "lowrank" { n++; p += $8; if ($9 != "yes") nc++ }
    END { printf "matrices %d, mean passes %.2f, not converged %d\n", n, p / n, nc }' "$dir/report.tsv"
rm -rf "$dir/lox"

echo "== one 4096x11008 matrix (model.layers.0.mlp.down_proj.weight)"
t=model.layers.0.mlp.down_proj.weight
for mode in rsvd exact; do
    extra=""
    [ $mode = exact ] && extra="--exact --max-memory 4G"
    "$lox" apply -q --base "$dir/m/base" --aligned "$dir/m/aligned" --output "$dir/one-$mode" \
        --include "^$t\$" --report "$dir/one-$mode.tsv" $extra
    awk -F '\t' -v m=$mode '$6 == "lowrank" { printf "%-5s %s: %s s, %s passes, top-6 %s\n", m, $1, $14, $8, $13 }' "$dir/one-$mode.tsv"
    # lxcheck computes its own exact SVD: only worth it for the randomized result
    [ $mode = rsvd ] && LXCHECK_ONLY="$t" "$lxcheck" "$dir/m/base" "$dir/m/aligned" "$dir/one-$mode" 6 1.25 1 |
        awk -v m=$mode '{ printf "%-5s error vs exact truncation (after bf16 rounding): %s\n", m, $3 }'
    rm -rf "$dir/one-$mode"
done

#!/bin/bash
# bench/run.sh - end-to-end benchmark of loxstream apply on a synthetic pair
# of one of synth's presets (default llama-7b: Llama-2-7B's shapes), with
# the floor it is measured against.
#
#   bench/run.sh [--preset NAME] [LAYERS] [BUILDDIR]
#
# NAME: llama-7b, llama3-70b or mixtral (see loxstream synth --help); LAYERS
# default: the preset's (32 for llama-7b, the whole 7B shape).  BENCH_SYNTH
# adds synth options (e.g. "--fused-experts", or sizes for a quick try:
# "--hidden 256 --intermediate 512 --vocab 1000"); BENCH_MATRIX names the
# one matrix timed alone (default: layer 0's down projection).
# Needs ~14 GB of disk per model at 32 layers of llama-7b, 1.7 GB per layer
# of llama3-70b (plus 4.2 GB of embeddings), 2.9 GB per layer of mixtral
# (BENCH_DIR, default a fresh directory under /var/tmp, deleted at the end
# unless BENCH_KEEP=1).
# Prints: wall time, peak RSS and peak anonymous memory, bytes read and
# written, GB/s, SVD time and GFLOP/s, time by phase; the floor (sequential
# read of the inputs and sequential write of an output of the same size,
# each the faster of a buffered and a direct one (the read: cold only); the
# run's GEMM flops at the rate bench/gemmrate measures); and one matrix
# (4096x11008 in llama-7b), extracted into a checkpoint of its own, done 5 times by the
# randomized SVD and once by the exact SVD (BENCH_EXACT=0 skips it), with
# the error of the randomized result against the exact truncation
# (BENCH_CHECK=0 skips that check: a full float SVD, several minutes).
set -euo pipefail
preset=llama-7b
if [ "${1:-}" = --preset ]; then
    preset=${2:?--preset needs a name}
    shift 2
fi
case $preset in
llama-7b | llama3-70b) matrix=model.layers.0.mlp.down_proj.weight ;;
mixtral) matrix=model.layers.0.block_sparse_moe.experts.0.w2.weight
    case " ${BENCH_SYNTH:-} " in *" --fused-experts "*) matrix=model.layers.0.mlp.experts.down_proj ;; esac ;;
*) echo "bench/run.sh: unknown preset '$preset' (llama-7b, llama3-70b or mixtral)" >&2; exit 2 ;;
esac
matrix=${BENCH_MATRIX:-$matrix}
layers=${1:-}
build=${2:-$(cd "$(dirname "$0")/.." && pwd)}
lox="$build/src/loxstream"
lxcheck="$build/tests/tools/lxcheck"
[ -x "$lox" ] || { echo "build first: $lox not found" >&2; exit 1; }
gemmrate="$build/bench/gemmrate"
[ -x "$lxcheck" ] || make -C "$build" tests/tools/lxcheck >/dev/null
[ -x "$gemmrate" ] || make -C "$build" bench/gemmrate >/dev/null
dir=${BENCH_DIR:-$(mktemp -d /var/tmp/loxbench.XXXXXX)}
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$dir"' EXIT

"$lox" --version
echo "== synth: $preset shapes, ${layers:-all} layers, bf16${BENCH_SYNTH:+ ($BENCH_SYNTH)}"
# shellcheck disable=SC2086 # BENCH_SYNTH: options, split on purpose
/usr/bin/time -f "synth: %e s, max RSS %M KiB" "$lox" synth -q --preset "$preset" \
    ${layers:+--layers "$layers"} ${BENCH_SYNTH:-} --no-finetuned "$dir/m"
in_bytes=$(du -cb "$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors | tail -1 | cut -f1)
out_bytes=$(du -cb "$dir"/m/aligned/*.safetensors | tail -1 | cut -f1)

# BENCH_COLD=0: leave the page cache alone (inputs warm where they fit);
# either way nothing written before (synth's files) is still being written
# back while a figure is measured
drop_caches() {
    sync
    [ "${BENCH_COLD:-1}" = 1 ] || return 0
    echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

echo "== floor: sequential I/O"
drop_caches
t0=$(date +%s.%N)
cat "$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors >/dev/null
t1=$(date +%s.%N)
read_buf_s=$(echo "$t1 - $t0" | bc)
# faster A B: the smaller of two times in seconds; B may be n/a (not measured)
faster() { if [ "$2" != n/a ] && [ "$(echo "$2 < $1" | bc)" = 1 ]; then echo "$2"; else echo "$1"; fi; }
# cold: the read floor is the faster of that buffered read (the kernel's
# read-ahead) and 16 MiB direct reads, the disk's best sequential read (on
# this VM twice as fast as the buffered one in one hour, a little slower in
# another: bench/RESULTS.md, session 11).  apply itself reads through the
# page cache, its prefetcher populating 8 MiB of the mapping at a time.
read_dir_s=n/a
if [ "${BENCH_COLD:-1}" = 1 ]; then
    drop_caches
    t0=$(date +%s.%N)
    for f in "$dir"/m/base/*.safetensors "$dir"/m/aligned/*.safetensors; do
        dd if="$f" of=/dev/null bs=16M iflag=direct status=none 2>/dev/null || { t0=; break; }
    done
    [ -z "$t0" ] || read_dir_s=$(echo "$(date +%s.%N) - $t0" | bc)
fi
read_s=$(faster "$read_buf_s" "$read_dir_s")
# the write floor: the faster of a buffered write and a direct one (apply
# writes past the page cache where it can: direct.h), each synced
t1=$(date +%s.%N)
dd if=/dev/zero of="$dir/floor.out" bs=16M count=$((out_bytes / 16777216)) conv=fdatasync status=none
t2=$(date +%s.%N)
rm -f "$dir/floor.out"
write_buf_s=$(echo "$t2 - $t1" | bc)
write_dir_s=n/a
t2=$(date +%s.%N)
if dd if=/dev/zero of="$dir/floor.out" bs=16M count=$((out_bytes / 16777216)) oflag=direct conv=fdatasync \
    status=none 2>/dev/null; then
    write_dir_s=$(echo "$(date +%s.%N) - $t2" | bc)
fi
rm -f "$dir/floor.out"
write_s=$(faster "$write_buf_s" "$write_dir_s")
# secs S: S to one decimal, or n/a
secs() { case $1 in n/a) echo n/a ;; *) printf '%.1f' "$1" ;; esac; }
printf 'read inputs  %.1f GB in %.1f s (%.2f GB/s; buffered %.1f s, direct %s s)\n' "$(echo "$in_bytes/1000000000" | bc -l)" \
    "$read_s" "$(echo "$in_bytes/1000000000/$read_s" | bc -l)" "$read_buf_s" "$(secs "$read_dir_s")"
printf 'write output %.1f GB in %.1f s (%.2f GB/s; buffered %.1f s, direct %s s)\n' "$(echo "$out_bytes/1000000000" | bc -l)" \
    "$write_s" "$(echo "$out_bytes/1000000000/$write_s" | bc -l)" "$write_buf_s" "$(secs "$write_dir_s")"

echo "== apply (default: rank 6, alpha 1.25, tol)"
drop_caches
"$lox" apply -q --base "$dir/m/base" --aligned "$dir/m/aligned" --output "$dir/lox" \
    --report "$dir/report.tsv" --stats 2>"$dir/apply.err" &
pid=$!
anon_peak=0 utime=0 stime=0
while kill -0 $pid 2>/dev/null; do
    a=$(awk '/^RssAnon:/{print $2}' /proc/$pid/status 2>/dev/null || echo 0)
    [ "${a:-0}" -gt "$anon_peak" ] && anon_peak=$a
    # CPU time in clock ticks (fields 14 and 15), as of the last sample
    if read -r -a f </proc/$pid/stat 2>/dev/null; then utime=${f[13]} stime=${f[14]}; fi
    sleep 0.2
done
wait $pid
cat "$dir/apply.err"
tck=$(getconf CLK_TCK)
printf 'apply CPU (sampled every 0.2 s): %.1f s user, %.1f s system\n' \
    "$(echo "$utime / $tck" | bc -l)" "$(echo "$stime / $tck" | bc -l)"
flops=$(sed -n 's/.*SVD [0-9.]* s[a-z ]*, \([0-9.]*\) GFLOP.*/\1/p' "$dir/apply.err")
# the faster of BLIS's rate and the pass kernel's (where the CPU has one)
"$gemmrate" 2 | tee "$dir/gemmrate.out"
rate=$(sed 's/gemm GFLOP\/s: \([0-9.]*\).*/\1/' "$dir/gemmrate.out" | sort -g | tail -1)
printf 'floor: the run'"'"'s %s GFLOP at %s GFLOP/s (bench/gemmrate, 2 threads): %.1f s\n' \
    "$flops" "$rate" "$(echo "$flops / $rate" | bc -l)"
# issue 14's target: 128 MiB at the defaults, for every preset
anon_verdict=ok
[ $((anon_peak / 1024)) -le 128 ] || anon_verdict=OVER
echo "peak anonymous memory (sampled every 0.2 s): $((anon_peak / 1024)) MiB (target <= 128 MiB: $anon_verdict)"
# the run against its floors, and per input byte: the I/O floor is the read
# (from the page cache with BENCH_COLD=0) plus the write of the output, the
# compute floor the GEMM's; issue 14's targets are ratios to the larger
wall=$(sed -n 's/^stats: wall \([0-9.]*\) s.*/\1/p' "$dir/apply.err")
gemm_s=$(echo "$flops / $rate" | bc -l)
awk -v w="$wall" -v r="$read_s" -v wr="$write_s" -v g="$gemm_s" -v b="$in_bytes" \
    -v cold="${BENCH_COLD:-1}" 'BEGIN {
    io = r + wr; fl = io > g ? io : g
    printf "apply %.1f s against the %s floor max(read %.1f s + write %.1f s, GEMM %.1f s) = %.1f s: %.2fx\n",
        w, cold == 1 ? "cold" : "warm", r, wr, g, fl, w / fl
    printf "per input byte: apply %.2f ns; read %.2f ns, write %.2f ns, GEMM %.2f ns\n",
        w / b * 1e9, r / b * 1e9, wr / b * 1e9, g / b * 1e9 }'
awk -F '\t' 'NR > 1 && $6 == "lowrank" { n++; p += $8; if ($9 != "yes") nc++ }
    END { printf "matrices %d, mean passes %.2f, not converged %d\n", n, p / n, nc }' "$dir/report.tsv"
rm -rf "$dir/lox"

# extract_tensor CKPT TENSOR OUT: write OUT, a safetensors file holding only
# that tensor (header made here, bytes copied with dd from the shard)
extract_tensor() {
    local line dtype shape bytes shard off hdr d
    line=$("$lox" inspect --json -q "$1" | grep -F "\"name\":\"$2\"") ||
        { echo "no tensor $2 in $1" >&2; return 1; }
    dtype=$(printf '%s' "$line" | sed 's/.*"dtype":"\([^"]*\)".*/\1/')
    shape=$(printf '%s' "$line" | sed 's/.*"shape":\(\[[^]]*\]\).*/\1/')
    bytes=$(printf '%s' "$line" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
    shard=$(printf '%s' "$line" | sed 's/.*"shard":"\([^"]*\)".*/\1/')
    off=$(printf '%s' "$line" | sed 's/.*"offset":\([0-9]*\).*/\1/')
    hdr="{\"$2\":{\"dtype\":\"$dtype\",\"shape\":$shape,\"data_offsets\":[0,$bytes]}}"
    while [ $(( ${#hdr} % 8 )) -ne 0 ]; do hdr="$hdr "; done
    # the header's length as 8 bytes, little-endian
    printf "$(printf '%016x' "${#hdr}" | sed 's/\(..\)/\1 /g' |
        awk '{ for (i = 8; i >= 1; i--) printf "\\x%s", $i }')" >"$3"
    printf '%s' "$hdr" >>"$3"
    d=$1
    [ -d "$d" ] || d=$(dirname "$d")
    dd if="$d/$shard" bs=4M iflag=skip_bytes,count_bytes skip="$off" count="$bytes" \
        status=none >>"$3"
}

t=$matrix
shape=$("$lox" inspect -q "$dir/m/base" | awk -F '\t' -v t="$t" '$1 == t { print $3 }')
[ -n "$shape" ] || { echo "bench/run.sh: no tensor $t in the $preset model" >&2; exit 1; }
echo "== one $shape matrix ($t), alone in a checkpoint, page cache warm"
mkdir -p "$dir/one/base" "$dir/one/aligned"
extract_tensor "$dir/m/base" "$t" "$dir/one/base/model.safetensors"
extract_tensor "$dir/m/aligned" "$t" "$dir/one/aligned/model.safetensors"
cat "$dir"/one/*/model.safetensors >/dev/null
# "tensor": its line in the report (SVD, output rows, handed to the writer);
# "command": the whole run, from exec to the output synced and marked complete
for run in 1 2 3 4 5; do
    rm -rf "$dir/one-rsvd"
    "$lox" apply -q --stats --base "$dir/one/base" --aligned "$dir/one/aligned" \
        --output "$dir/one-rsvd" --report "$dir/one-rsvd.tsv" 2>"$dir/one.err"
    # (a 3-D tensor: one line per matrix, the command's times after the last)
    awk -F '\t' -v r=$run '$6 == "lowrank" { if (n++) print ""; printf "rsvd run %d: matrix %s: tensor %s s, %s passes, top-6 %s", r, $2, $14, $8, $13 }' \
        "$dir/one-rsvd.tsv"
    sed 's/^stats: wall \([0-9.]*\) s.*SVD \([0-9.]*\) s.*output rows \([0-9.]*\) s.*/; command \1 s (SVD \2 s, output rows \3 s)/' "$dir/one.err"
done
if [ "${BENCH_CHECK:-1}" = 1 ]; then
    "$lxcheck" "$dir/one/base" "$dir/one/aligned" "$dir/one-rsvd" 6 1.25 1 |
        awk '{ printf "rsvd error vs exact truncation (after bf16 rounding): %s\n", $3 }'
fi
rm -rf "$dir/one-rsvd"
if [ "${BENCH_EXACT:-1}" = 1 ]; then
    "$lox" apply -q --stats --exact --max-memory 4G --base "$dir/one/base" \
        --aligned "$dir/one/aligned" --output "$dir/one-exact" --report "$dir/one-exact.tsv" 2>/dev/null
    awk -F '\t' '$6 == "lowrank" { printf "exact: tensor %s s, top-6 %s\n", $14, $13 }' "$dir/one-exact.tsv"
    rm -rf "$dir/one-exact"
fi

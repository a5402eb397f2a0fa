#!/bin/sh
# lanes.sh - apply's two lanes (-j 2 or more, lanes.h): the same bytes as
# -j 1 on 3-D tensors (batch > 1) and a sweep, the same failure on a NaN in
# a later matrix of a 3-D tensor, and no second lane when --max-memory
# leaves no 64 MiB beside the largest need with its 48 MiB of fixed
# overhead (the man page, --threads), nor with -j 1; whether the lane ran
# is read from --stats.
. "$TESTS_SRCDIR/cli/lib.sh"

"$LOXSTREAM" synth -q --preset tiny --dtype f32 --experts 4 --fused-experts --seed 8 "$TMP/x" ||
    fail "synth"
X="$TMP/x"

# ---- the same bytes as -j 1: 3-D tensors, a sweep ----------------------
for j in 1 2; do
    expect_exit 0 "$LOXSTREAM" apply -q -j $j -b "$X/base" -a "$X/aligned" -o "$TMP/o$j" \
        --report "$TMP/r$j.tsv"
    cut -f1-13,15- "$TMP/r$j.tsv" >"$TMP/r$j.cut"
    mkdir "$TMP/s$j"
    expect_exit 0 "$LOXSTREAM" apply -q -j $j -b "$X/base" -a "$X/aligned" --alpha 1,2 \
        --rank 3,6 -o "$TMP/s$j/o-%a-%k"
done
NCHECKS=$((NCHECKS + 1))
diff -r "$TMP/o1" "$TMP/o2" >/dev/null || fail "-j 1 and -j 2 outputs differ"
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/r1.cut" "$TMP/r2.cut" || fail "-j 1 and -j 2 reports differ"
NCHECKS=$((NCHECKS + 1))
diff -r "$TMP/s1" "$TMP/s2" >/dev/null || fail "-j 1 and -j 2 sweeps differ"

# ---- a NaN in matrix 2 of a 3-D tensor: -j 1's failure, byte for byte ---
t=model.layers.0.mlp.experts.gate_up_proj
line=$("$LOXSTREAM" inspect -q --json "$X/aligned" | grep "\"$t\"") || fail "no $t"
shard=$(printf '%s\n' "$line" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
off=$(printf '%s\n' "$line" | sed 's/.*"offset": *\([0-9]*\).*/\1/')
cp -r "$X/aligned" "$TMP/nan"
printf '\000\000\300\177' | dd of="$TMP/nan/$shard" bs=1 \
    seek=$((off + (2 * 344 * 64 + 5 * 64 + 7) * 4)) conv=notrunc 2>/dev/null
for j in 1 2; do
    expect_exit 3 "$LOXSTREAM" apply -q -j $j -b "$X/base" -a "$TMP/nan" -o "$TMP/n$j"
    cp "$TMP/err" "$TMP/nerr$j"
done
expect_err "tensor '$t': matrix 2, row 5, column 7: aligned nan"
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/nerr1" "$TMP/nerr2" || fail "-j 1 and -j 2 fail differently"
NCHECKS=$((NCHECKS + 1))
diff -r "$TMP/n1" "$TMP/n2" >/dev/null || fail "-j 1 and -j 2 leave different outputs"

# ---- no second lane without 64 MiB beside the need and the overhead -----
expect_exit 2 "$LOXSTREAM" apply -q -j 3 -b "$X/base" -a "$X/aligned" -o "$TMP/m0" --max-memory 1M
need=$(sed -n 's/.* needs \([0-9.]*\) MiB of working memory (with 48.00 MiB of fixed overhead).*/\1/p' "$TMP/err")
[ -n "$need" ] || fail "no need in: $(cat "$TMP/err")"
# in KiB: just enough for the run; 63 MiB more (no lane); 1 GiB (a lane)
low=$(awk -v n="$need" 'BEGIN { printf "%d", n * 1024 + 1024 }')
mid=$((low + 62 * 1024))
# lanes J MEMORY: how many lanes a run with -j J within MEMORY factored on (--stats)
lanes() {
    rm -rf "$TMP/m"
    expect_exit 0 "$LOXSTREAM" apply -q --stats -j "$1" --max-memory "$2" \
        -b "$X/base" -a "$X/aligned" -o "$TMP/m"
    nlanes=$(sed -n 's/^stats: .*; SVD [0-9.]* s on \(one\|two\) lanes*,.*/\1/p' "$TMP/err")
    [ -n "$nlanes" ] || fail "no lanes in the --stats line: $(cat "$TMP/err")"
}
for case in "3 ${low}K one" "3 1G two" "3 ${mid}K one" "1 1G one"; do
    set -- $case
    lanes "$1" "$2"
    expect_eq "lanes with -j $1 --max-memory $2" "$nlanes" "$3"
done
pass

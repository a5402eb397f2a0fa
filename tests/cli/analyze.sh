#!/bin/sh
# loxstream analyze: R_align, R_ft, energies and singular values per matrix,
# checked by lxrcheck against an exact SVD and exact projections computed
# from the stored values (tests/tools/lxrcheck.c).
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXRCHECK:?}"

"$LOXSTREAM" synth -q --preset tiny --dtype f32 --seed 5 "$TMP/m" >/dev/null 2>&1 || fail "synth"

# ---- with a fine-tuned model: every column against the exact values -----
expect_exit 0 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned"
cp "$TMP/out" "$TMP/ft.tsv"
cp "$TMP/err" "$TMP/ft.err"
expect_err 'mean R_align [0-9.]+ at k = 6, mean R_ft [0-9.]+, mean R_ft/R_align [0-9.]+'
head -1 "$TMP/ft.tsv" | grep -q '^tensor	matrix	rows	cols	linear	passes	err_est	frobenius	energy_1	energy_2	energy_3	energy_4	energy_6	energy_8	r_align	frobenius_ft	r_ft	retention	singular_values$' ||
    fail "header: $(head -1 "$TMP/ft.tsv")"
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/m/finetuned" 6 "$TMP/ft.tsv" 1e-4
# the embedding table is analysed but not linear (out of the means)
awk -F '\t' '$1 == "model.embed_tokens.weight" && $5 == "no" { f = 1 } END { exit !f }' "$TMP/ft.tsv" ||
    fail "embed_tokens not marked as an embedding"
awk -F '\t' '$1 == "lm_head.weight" && $5 == "yes" { f = 1 } END { exit !f }' "$TMP/ft.tsv" ||
    fail "lm_head not marked linear"
# the planted model: fine-tuning undid much of the top alignment directions
awk -F '\t' 'NR > 1 && $5 == "yes" { n++; s += $18 } END { exit !(n > 0 && s / n < 0.9) }' \
    "$TMP/ft.tsv" || fail "retention not below 0.9 on the synthetic model"
# the mean on stderr is the mean of the linear lines
want=$(awk -F '\t' 'NR > 1 && $5 == "yes" { n++; s += $15 } END { printf "%.4f", s / n }' "$TMP/ft.tsv")
grep -q "mean R_align $want " "$TMP/ft.err" || fail "mean R_align on stderr is not $want: $(cat "$TMP/ft.err")"

# ---- the checker fails on a wrong value ----------------------------------
awk -F '\t' 'BEGIN { OFS = "\t" } NR == 3 { $17 = $17 + 0.01 } { print }' "$TMP/ft.tsv" >"$TMP/bad.tsv"
expect_exit 1 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/m/finetuned" 6 "$TMP/bad.tsv" 1e-4
sed '$d' "$TMP/ft.tsv" >"$TMP/short.tsv"
expect_exit 1 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/m/finetuned" 6 "$TMP/short.tsv" 1e-4

# ---- without a fine-tuned model, other ranks, exact mode -----------------
expect_exit 0 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" --rank 3 --ranks 8,1,16,1
cp "$TMP/out" "$TMP/r3.tsv"
[ -s "$TMP/err" ] && fail "-q printed on stderr"
head -1 "$TMP/r3.tsv" | grep -q 'energy_1	energy_8	energy_16	r_align	singular_values$' ||
    fail "header with --ranks 8,1,16,1: $(head -1 "$TMP/r3.tsv")"
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" - 3 "$TMP/r3.tsv" 1e-4
expect_exit 0 "$LOXSTREAM" analyze -q --exact -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned"
cp "$TMP/out" "$TMP/exact.tsv"
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/m/finetuned" 6 "$TMP/exact.tsv" 1e-5

# ---- same output on 1 and 2 threads, and run to run ----------------------
expect_exit 0 "$LOXSTREAM" analyze -q -j 1 -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned"
cmp -s "$TMP/out" "$TMP/ft.tsv" || fail "1 thread differs from the default"

# ---- a filter narrows the matrices; the rest is checked as before --------
expect_exit 0 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" --include 'mlp'
n=$(sed 1d "$TMP/out" | wc -l)
n_mlp=$(sed 1d "$TMP/ft.tsv" | grep -c 'mlp')
expect_eq "lines with --include mlp" "$n" "$n_mlp"

# ---- errors ----------------------------------------------------------------
expect_exit 2 "$LOXSTREAM" analyze -b "$TMP/m/base"
expect_err '--base and --aligned are required'
expect_exit 2 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" --ranks 1,,2
expect_err '--ranks'
expect_exit 2 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" --rank 0
expect_exit 2 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" --include 'nothing-matches'
expect_err 'no matrix to analyse'
expect_exit 2 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" --embedding '('
expect_err 'invalid regular expression'
expect_exit 1 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/missing"
# a NaN in the fine-tuned model: exit 3 naming tensor, row and column
cp -r "$TMP/m/finetuned" "$TMP/nan"
poke_nan "$TMP/nan" model.layers.1.self_attn.v_proj.weight 3 7
expect_exit 3 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/nan"
expect_err "tensor 'model.layers.1.self_attn.v_proj.weight': row 3, column 7: fine-tuned nan"
pass

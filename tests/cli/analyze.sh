#!/bin/sh
# loxstream analyze: R_align, R_ft, energies and singular values per matrix,
# checked by lxrcheck against an exact SVD and exact projections computed
# from the stored values (tests/tools/lxrcheck.c).
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"
: "${LXRCHECK:?}"

# tsv FILE PROGRAM: awk PROGRAM over analyze's TSV FILE, fields by column
# name: $c["r_ft"] (the header line is NR == 1)
tsv() {
    awk -F '\t' -v OFS='\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i } '"$2" "$1"
}

"$LOXSTREAM" synth -q --preset tiny --dtype f32 --seed 5 "$TMP/m" >/dev/null 2>&1 || fail "synth"

# ---- with a fine-tuned model: every column against the exact values -----
expect_exit 0 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned"
cp "$TMP/out" "$TMP/ft.tsv"
cp "$TMP/err" "$TMP/ft.err"
expect_err 'mean R_align [0-9.]+ at k = 6; 15 of them in the fine-tuned model: mean R_ft [0-9.]+, mean R_ft/R_align [0-9.]+'
head -1 "$TMP/ft.tsv" | grep -q '^tensor	matrix	rows	cols	linear	passes	converged	err_est	frobenius	energy_1	energy_2	energy_3	energy_4	energy_6	energy_8	r_align	frobenius_ft	r_ft	retention	singular_values$' ||
    fail "header: $(head -1 "$TMP/ft.tsv")"
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/m/finetuned" 6 "$TMP/ft.tsv" 1e-4
# the embedding table is analysed but not linear (out of the means)
tsv "$TMP/ft.tsv" '$1 == "model.embed_tokens.weight" && $c["linear"] == "no" { f = 1 } END { exit !f }' ||
    fail "embed_tokens not marked as an embedding"
tsv "$TMP/ft.tsv" '$1 == "lm_head.weight" && $c["linear"] == "yes" { f = 1 } END { exit !f }' ||
    fail "lm_head not marked linear"
# the planted model: fine-tuning undid much of the top alignment directions
tsv "$TMP/ft.tsv" 'NR > 1 && $c["linear"] == "yes" { n++; s += $c["retention"] }
    END { exit !(n > 0 && s / n < 0.9) }' || fail "retention not below 0.9 on the synthetic model"
# the mean on stderr is the mean of the linear lines
want=$(tsv "$TMP/ft.tsv" 'NR > 1 && $c["linear"] == "yes" { n++; s += $c["r_align"] } END { printf "%.4f", s / n }')
grep -q "mean R_align $want " "$TMP/ft.err" || fail "mean R_align on stderr is not $want: $(cat "$TMP/ft.err")"

# ---- the checker fails on a wrong value ----------------------------------
tsv "$TMP/ft.tsv" 'NR == 3 { $c["r_ft"] += 0.01 } { print }' >"$TMP/bad.tsv"
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

# ---- a fine-tuned model lacking some matrices: the means over those it has
# loose shards 1-3 of the fine-tuned model (no index): embed_tokens and
# layer 0 (7 linear matrices of the 15)
mkdir "$TMP/ftpart"
for i in 1 2 3; do cp "$TMP/m/finetuned/model-0000$i-of-00007.safetensors" "$TMP/ftpart/"; done
expect_exit 0 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/ftpart"
cp "$TMP/out" "$TMP/part.tsv"
cp "$TMP/err" "$TMP/part.err"
# every value exact, and the matrices it lacks have empty R_ft fields
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/ftpart" 6 "$TMP/part.tsv" 1e-4
tsv "$TMP/part.tsv" 'NR > 1 && $c["r_ft"] == "" && !d { $c["r_ft"] = 0.5; d = 1 } { print }' \
    >"$TMP/bad-part.tsv"
expect_exit 1 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/ftpart" 6 "$TMP/bad-part.tsv" 1e-4
# the means on stderr: over exactly the linear rows that have R_ft
want=$(tsv "$TMP/part.tsv" 'NR > 1 && $c["linear"] == "yes" && $c["r_ft"] != "" {
    n++; s += $c["r_ft"]; t += $c["retention"] }
    END { printf "%d of them in the fine-tuned model: mean R_ft %.4f, mean R_ft/R_align %.4f", n, s / n, t / n }')
expect_eq "linear rows with R_ft" \
    "$(tsv "$TMP/part.tsv" 'NR > 1 && $c["linear"] == "yes" && $c["r_ft"] != ""' | wc -l | tr -d ' ')" 7
grep -qF "15 linear matrices (embedding tables excluded): mean R_align" "$TMP/part.err" ||
    fail "R_align is not over the 15 linear matrices: $(cat "$TMP/part.err")"
grep -qF "; $want" "$TMP/part.err" || fail "means on stderr are not '$want': $(cat "$TMP/part.err")"

# ---- a fine-tuned model that shares no analysed matrix: exit 3, no output
expect_exit 3 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/ftpart" \
    --include 'layers\.1\.'
expect_err "$TMP/ftpart: the fine-tuned model shares no matrix with the base and aligned models"
[ -s "$TMP/out" ] && fail "output before the error: $(head -2 "$TMP/out")"

# ---- only embedding tables: their rows, exit 0, and no means ---------------
expect_exit 0 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned" \
    --include embed
expect_err '1 matrix, all embedding tables \(--embedding\): no means over linear matrices'
expect_eq "rows with --include embed" "$(sed 1d "$TMP/out" | wc -l | tr -d ' ')" 1
# the row is the one checked above against the exact values
sed 1d "$TMP/out" >"$TMP/emb.row"
grep '^model\.embed_tokens\.weight	' "$TMP/ft.tsv" >"$TMP/emb.want"
cmp -s "$TMP/emb.row" "$TMP/emb.want" || fail "embed_tokens row differs: $(cat "$TMP/emb.row")"

# ---- converged: no when --max-passes stops the passes first, with one warning
expect_exit 0 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" --max-passes 2 \
    --tol 1e-9
cp "$TMP/out" "$TMP/cap.tsv"
rows=$(sed 1d "$TMP/cap.tsv" | wc -l | tr -d ' ')
expect_eq "unconverged rows at --max-passes 2 --tol 1e-9" \
    "$(tsv "$TMP/cap.tsv" 'NR > 1 && $c["converged"] == "no" && $c["passes"] <= 2' | wc -l | tr -d ' ')" "$rows"
expect_eq "warnings" "$(grep -c 'did not reach' "$TMP/err")" 1
expect_err "warning: analyze: $rows of $rows matrices did not reach --tol 1e-09 within 2 passes"
expect_exit 0 "$LXRCHECK" "$TMP/m/base" "$TMP/m/aligned" - 6 "$TMP/cap.tsv" 1e-2
# the default run: a matrix is no exactly when the cap was hit, and the
# warning counts them (none: no warning)
tsv "$TMP/ft.tsv" 'NR > 1 && (($c["converged"] == "no") != ($c["passes"] == 12)) { exit 1 }' ||
    fail "converged disagrees with the passes in the default run"
nno=$(tsv "$TMP/ft.tsv" 'NR > 1 && $c["converged"] == "no"' | wc -l | tr -d ' ')
if [ "$nno" = 0 ]; then
    grep -q 'did not reach' "$TMP/ft.err" && fail "a warning with every matrix converged"
else
    grep -q "warning: analyze: $nno of " "$TMP/ft.err" || fail "no warning for $nno unconverged"
fi
# exact mode: every matrix converged, err_est at the rounding of the factors
tsv "$TMP/exact.tsv" 'NR > 1 && ($c["converged"] != "yes" || $c["err_est"] > 1e-6) { exit 1 }' ||
    fail "--exact: a row not converged or with err_est > 1e-6"

# ---- names longer than 255 bytes: whole and escaped -------------------------
# one file per model: the 8 x 6 f32 values at the start of q_proj of layer
# 0 of each model, under a 300-byte name with a tab (JSON "\t")
long=$(printf 'x%.0s' $(seq 1 300))
name="model.layers.0.$long\\tq.weight" # as JSON spells it, and as the TSV escapes it
hdr="{\"$name\":{\"dtype\":\"F32\",\"shape\":[8,6],\"data_offsets\":[0,192]}}"
for w in base aligned finetuned; do
    line=$("$LOXSTREAM" inspect -q --json "$TMP/m/$w" | grep '"model.layers.0.self_attn.q_proj.weight"')
    shard=$(printf '%s\n' "$line" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
    offset=$(printf '%s\n' "$line" | sed 's/.*"offset": *\([0-9]*\).*/\1/')
    mkdir "$TMP/long-$w"
    { le64 "$(nbytes "$hdr")"; printf %s "$hdr"
      dd if="$TMP/m/$w/$shard" bs=1 skip="$offset" count=192 2>/dev/null; } \
        >"$TMP/long-$w/model.safetensors"
done
expect_exit 0 "$LOXSTREAM" analyze -q -b "$TMP/long-base" -a "$TMP/long-aligned" \
    -f "$TMP/long-finetuned"
cp "$TMP/out" "$TMP/long.tsv"
expect_eq "the long name in the TSV" "$(sed -n 2p "$TMP/long.tsv" | cut -f1)" "$name"
expect_exit 0 "$LXRCHECK" "$TMP/long-base" "$TMP/long-aligned" "$TMP/long-finetuned" 6 \
    "$TMP/long.tsv" 1e-4
# apply's --report escapes it the same way
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/long-base" -a "$TMP/long-aligned" -o "$TMP/long-out" \
    --report "$TMP/long-apply.tsv"
expect_eq "the long name in apply's report" "$(sed -n 2p "$TMP/long-apply.tsv" | cut -f1)" "$name"
expect_eq "apply's report lines" "$(wc -l <"$TMP/long-apply.tsv" | tr -d ' ')" 2

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
expect_exit 3 "$LOXSTREAM" analyze -b "$TMP/m/base" -a "$TMP/missing"
expect_err "^loxstream: --aligned: '$TMP/missing': No such file or directory\$"
# a NaN in the fine-tuned model: exit 3 naming tensor, row and column
cp -r "$TMP/m/finetuned" "$TMP/nan"
poke_nan "$TMP/nan" model.layers.1.self_attn.v_proj.weight 3 7
expect_exit 3 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/nan"
expect_err "tensor 'model.layers.1.self_attn.v_proj.weight': row 3, column 7: fine-tuned nan"
pass

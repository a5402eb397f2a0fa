#!/bin/sh
# loxstream apply end to end: generated models and real PEFT checkpoints,
# each output checked by lxcheck against an exact SVD computed from the
# stored values (tests/tools/lxcheck.c).
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXCHECK:?}"

q() { "$LOXSTREAM" "$@" -q; }

# ---- f32 model: the randomized SVD at the default tolerance ------------
q synth --preset tiny --dtype f32 --seed 7 "$TMP/f32" >/dev/null 2>&1 || fail "synth f32"
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/f32/base" -a "$TMP/f32/aligned" -o "$TMP/f32/lox" \
    --rank 6 --alpha 1.25 --report "$TMP/f32.tsv"
expect_exit 0 "$LXCHECK" "$TMP/f32/base" "$TMP/f32/aligned" "$TMP/f32/lox" 6 1.25 1e-3
expect_out 'q_proj.weight'
expect_out 'input_layernorm.weight.*copied'
# the output directory is a complete model: index, config, tokenizer
for f in model.safetensors.index.json config.json; do
    [ -f "$TMP/f32/lox/$f" ] || fail "output lacks $f"
    cmp -s "$TMP/f32/aligned/$f" "$TMP/f32/lox/$f" || [ "$f" = model.safetensors.index.json ] ||
        fail "$f differs from the aligned model's"
done
ls "$TMP/f32/lox" | grep -q '\.partial$' && fail "a .partial shard was left behind"
"$LOXSTREAM" inspect -q "$TMP/f32/aligned" >"$TMP/a.tsv"
"$LOXSTREAM" inspect -q "$TMP/f32/lox" >"$TMP/o.tsv"
cmp -s "$TMP/a.tsv" "$TMP/o.tsv" || fail "output tensor table differs from the aligned model's"
# report: header + one line per matrix, lowrank lines with 6 singular values
head -1 "$TMP/f32.tsv" | grep -q '^tensor	matrix	rows' || fail "report header"
n_low=$(awk -F '\t' '$6 == "lowrank"' "$TMP/f32.tsv" | wc -l)
n_2d=$(awk -F '\t' '$3 ~ /x/' "$TMP/a.tsv" | wc -l)
expect_eq "lowrank report lines" "$n_low" "$n_2d"
awk -F '\t' '$6 == "lowrank" && split($13, s, ",") != 6 { exit 1 }' "$TMP/f32.tsv" ||
    fail "report lines without 6 singular values"

# ---- exact mode matches to f32 accuracy ---------------------------------
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/f32/base" -a "$TMP/f32/aligned" -o "$TMP/f32/exact" \
    --rank 3 --alpha 2 --exact
expect_exit 0 "$LXCHECK" "$TMP/f32/base" "$TMP/f32/aligned" "$TMP/f32/exact" 3 2 1e-5

# ---- full rank (k = 0): W + alpha * dW exactly --------------------------
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/f32/base" -a "$TMP/f32/aligned" -o "$TMP/f32/full" \
    --rank 0 --alpha 0.5
expect_exit 0 "$LXCHECK" "$TMP/f32/base" "$TMP/f32/aligned" "$TMP/f32/full" 0 0.5 1e-6

# ---- bf16: rounding of both sides cancels in lxcheck's metric ----------
q synth --preset tiny --seed 3 "$TMP/bf" >/dev/null 2>&1 || fail "synth bf16"
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/lox1" -j 1
expect_exit 0 "$LXCHECK" "$TMP/bf/base" "$TMP/bf/aligned" "$TMP/bf/lox1" 6 1.25 2e-2
# determinism: a second run, and 2 threads, give the same bytes
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/lox2" -j 2
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/lox3" -j 2 \
    --max-memory 200M
for f in "$TMP"/bf/lox1/*; do
    b=$(basename "$f")
    cmp "$f" "$TMP/bf/lox2/$b" || fail "$b: 1 and 2 threads differ"
    cmp "$f" "$TMP/bf/lox3/$b" || fail "$b: runs with another memory limit differ"
done
# two lanes factor at once (-j 2): libFLAME's first calls, made at once by
# two threads, raced (a Fortran warning on stdout, other bits in 1 run of
# 3); each run a fresh process, nothing on stdout, the same bytes
for r in 1 2 3 4 5 6; do
    rm -rf "$TMP/bf/lox5"
    "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/lox5" -j 2 \
        >"$TMP/bf/out5" || fail "run $r with 2 threads failed"
    [ ! -s "$TMP/bf/out5" ] || fail "run $r with 2 threads wrote to stdout: $(head -c 200 "$TMP/bf/out5")"
    for f in "$TMP"/bf/lox1/*; do
        cmp -s "$f" "$TMP/bf/lox5/$(basename "$f")" || fail "run $r: $(basename "$f") differs"
    done
done
# another seed gives other bytes (the seed is used), within tolerance
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/lox4" --seed 99
same=1
for f in "$TMP"/bf/lox1/*.safetensors; do
    cmp -s "$f" "$TMP/bf/lox4/$(basename "$f")" || same=0
done
NCHECKS=$((NCHECKS + 1))
[ "$same" = 0 ] || fail "seed has no effect"
expect_exit 0 "$LXCHECK" "$TMP/bf/base" "$TMP/bf/aligned" "$TMP/bf/lox4" 6 1.25 2e-2

# ---- dW = 0: base == aligned gives the aligned model's bytes back -------
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/aligned" -a "$TMP/bf/aligned" -o "$TMP/bf/zero"
for f in "$TMP"/bf/zero/*.safetensors; do
    "$LOXSTREAM" inspect -q --json "$f" >/dev/null || fail "output unreadable"
done
expect_exit 0 "$LXCHECK" "$TMP/bf/aligned" "$TMP/bf/aligned" "$TMP/bf/zero" 6 1.25 0

# ---- filters: excluded tensors are copied bit for bit -------------------
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/filt" \
    --exclude 'embed_tokens|lm_head' --report "$TMP/filt.tsv"
grep -q '^model.embed_tokens.weight	0	.*filtered out' "$TMP/filt.tsv" || fail "embed not filtered"
grep -q '^lm_head.weight	0	.*filtered out' "$TMP/filt.tsv" || fail "lm_head not filtered"
grep -q '^model.layers.0.mlp.up_proj.weight	0	.*lowrank' "$TMP/filt.tsv" || fail "up_proj not transformed"

# ---- odd shapes: m < n, m > n, rank near and above min(m, n) ------------
q synth --preset tiny --hidden 40 --intermediate 72 --vocab 33 --layers 1 --dtype f32 "$TMP/odd" >/dev/null 2>&1 ||
    fail "synth odd"
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/odd/base" -a "$TMP/odd/aligned" -o "$TMP/odd/k39" --rank 39
expect_exit 0 "$LXCHECK" "$TMP/odd/base" "$TMP/odd/aligned" "$TMP/odd/k39" 39 1.25 1e-3
expect_exit 0 "$LOXSTREAM" apply -b "$TMP/odd/base" -a "$TMP/odd/aligned" -o "$TMP/odd/k50" --rank 50
expect_err "rank 50 exceeds min\(33, 40\): using rank 33"
expect_exit 0 "$LXCHECK" "$TMP/odd/base" "$TMP/odd/aligned" "$TMP/odd/k50" 50 1.25 1e-3

# ---- real PEFT checkpoints: two steps of one training run ---------------
g="$REAL/gpt2-lora-run"
expect_exit 0 "$LOXSTREAM" apply -q -b "$g/checkpoint-2000/adapter_model.safetensors" \
    -a "$g/checkpoint-7500/adapter_model.safetensors" -o "$TMP/gpt2" --rank 4
[ -f "$TMP/gpt2/adapter_model.safetensors" ] || fail "single-file output name"
expect_exit 0 "$LXCHECK" "$g/checkpoint-2000/adapter_model.safetensors" \
    "$g/checkpoint-7500/adapter_model.safetensors" "$TMP/gpt2/adapter_model.safetensors" 4 1.25 1e-3
r="$REAL/roberta-lora"
expect_exit 0 "$LOXSTREAM" apply -q -b "$r/checkpoint-500/adapter_model.safetensors" \
    -a "$r/checkpoint-2400/adapter_model.safetensors" -o "$TMP/roberta" --rank 2 --alpha 0.7
expect_exit 0 "$LXCHECK" "$r/checkpoint-500/adapter_model.safetensors" \
    "$r/checkpoint-2400/adapter_model.safetensors" "$TMP/roberta/adapter_model.safetensors" 2 0.7 1e-3
expect_out 'classifier.dense.weight'
# issue 9: at the paper's setting every matrix of both runs meets a strict
# tolerance, the LoRA factors (min(m, n) = 8 < 4 l) by the dense SVD
for pair in "$g/checkpoint-2000 $g/checkpoint-7500" "$r/checkpoint-500 $r/checkpoint-2400"; do
    set -- $pair
    rm -rf "$TMP/real6" "$TMP/real6.tsv"
    expect_exit 0 "$LOXSTREAM" apply -q -b "$1/adapter_model.safetensors" \
        -a "$2/adapter_model.safetensors" -o "$TMP/real6" --rank 6 --alpha 1.25 --tol 1e-5 \
        --report "$TMP/real6.tsv"
    expect_exit 0 "$LXCHECK" "$1/adapter_model.safetensors" "$2/adapter_model.safetensors" \
        "$TMP/real6/adapter_model.safetensors" 6 1.25 1e-5
    awk -F '\t' 'NR > 1 && $6 == "lowrank" && ($9 != "yes" || $10 > 1e-5 ||
        (($3 < 64 || $4 < 64) && $15 != "exact")) { print; bad = 1 } END { exit bad }' \
        "$TMP/real6.tsv" >"$TMP/out" ||
        fail "$2: a LoRA factor not exact, or not converged to 1e-5: $(cat "$TMP/out")"
    NCHECKS=$((NCHECKS + 1))
done
[ -s "$TMP/err" ] && fail "warnings on converged real runs: $(cat "$TMP/err")"

# ---- a tolerance the passes cannot reach: not converged, one warning ----
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/f32/base" -a "$TMP/f32/aligned" -o "$TMP/f32/cap" \
    --tol 1e-9 --max-passes 2 --report "$TMP/cap.tsv"
n_mat=$(awk -F '\t' '$6 == "lowrank"' "$TMP/cap.tsv" | wc -l)
n_no=$(awk -F '\t' '$6 == "lowrank" && $9 == "no" && $10 > 1e-9' "$TMP/cap.tsv" | wc -l)
expect_eq "unconverged report lines" "$n_no" "$n_mat"
expect_err "warning: apply: $n_mat of $n_mat matrices did not reach --tol 1e-09 within 2 passes"
expect_eq "warnings" "$(grep -c warning "$TMP/err")" 1
awk -F '\t' '$6 == "lowrank" && ($15 != "randomized" || $16 == "")' "$TMP/cap.tsv" | grep -q . &&
    fail "method or gap column missing"

# ---- refusals -----------------------------------------------------------
mkdir "$TMP/foreign" && echo keep >"$TMP/foreign/notes.txt"
expect_exit 5 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/foreign"
expect_err 'not empty and not a loxstream output'
expect_exit 5 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/bf/aligned/sub"
expect_err 'inside the input'
[ ! -e "$TMP/bf/aligned/sub" ] || fail "output dir left inside the input"
expect_exit 2 "$LOXSTREAM" apply -q -b "$TMP/bf/base" -a "$TMP/bf/aligned" -o "$TMP/mem" --max-memory 1M
expect_err "--max-memory 1.00 MiB is too small: tensor '[^']+' needs"
[ ! -e "$TMP/mem" ] || fail "a refused run created its output directory"
# shape mismatch between base and aligned
q synth --preset tiny --hidden 48 --no-finetuned "$TMP/other" >/dev/null 2>&1 || fail "synth other"
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/other/base" -a "$TMP/bf/aligned" -o "$TMP/mis"
expect_err "tensor 'model\.[a-z_.0-9]+': aligned is BF16 \[[0-9x]+\] but base is BF16 \[[0-9x]+\]"
[ ! -e "$TMP/mis" ] || fail "a refused run created its output directory"
# a tensor missing from base
expect_exit 3 "$LOXSTREAM" apply -q -b "$g/checkpoint-2000/adapter_model.safetensors" \
    -a "$r/checkpoint-2400/adapter_model.safetensors" -o "$TMP/miss"
expect_err "is in the aligned model .* but not in the base model"

# ---- a NaN in an input: a clear error naming tensor, row and column -----
cp -r "$TMP/f32/aligned" "$TMP/nan"
poke_nan "$TMP/nan" model.layers.0.self_attn.k_proj.weight 2 5
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/f32/base" -a "$TMP/nan" -o "$TMP/nanout"
expect_err "tensor 'model.layers.0.self_attn.k_proj.weight': row 2, column 5: aligned nan"
ls "$TMP/nanout" 2>/dev/null | grep -q '\.safetensors$' && fail "a failed run left complete-looking shards"
pass

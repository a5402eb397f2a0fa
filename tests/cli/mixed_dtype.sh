#!/bin/sh
# mixed_dtype.sh - a base and an aligned model in different float dtypes
# (base F32 and aligned BF16, the reverse, F32 and F16, F16 and BF16):
# dW is computed in f32 from both as stored and the output written in the
# aligned dtype, said once on stderr; checked against lxcheck's exact
# expectation (dW from the stored values in double, full SVD), for the
# exact solver, the randomized one and full rank.  The models are synth's
# with one seed in two dtypes.  Shapes that differ stay errors, and the
# --copy-unmatched hint is given only when something is still transformed:
# models of different architectures are named as such, from config.json.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

for d in f32 bf16 f16; do
    "$LOXSTREAM" synth -q --preset tiny --no-finetuned --dtype $d "$TMP/$d" >/dev/null 2>&1 ||
        fail "synth $d"
done
lox() {
    rm -rf "$TMP/o"
    lb=$1 la=$2
    shift 2
    "$LOXSTREAM" apply -j 1 -b "$TMP/$lb/base" -a "$TMP/$la/aligned" -o "$TMP/o" "$@"
}
up() { echo "$1" | tr a-z A-Z; }
for pair in f32:bf16 bf16:f32 f32:f16 f16:bf16; do
    b=${pair%%:*}
    a=${pair#*:}
    # the exact solver: only rounding differs from the expectation
    expect_exit 0 lox $b $a --rank 4 --exact
    expect_eq "$pair: notes" "$(grep -c 'other float dtypes in base' "$TMP/err")" 1
    expect_err "16 tensors of other float dtypes in base than in aligned, the first 'model\\.embed_tokens\\.weight' \\(base $(up $b), aligned $(up $a)\\): dW is computed in f32"
    expect_exit 0 "$LXCHECK" "$TMP/$b/base" "$TMP/$a/aligned" "$TMP/o" 4 1.25 1e-3
    # the output in the aligned dtype, tensor for tensor
    "$LOXSTREAM" inspect -q "$TMP/$a/aligned" | cut -f1-3 >"$TMP/want"
    "$LOXSTREAM" inspect -q "$TMP/o" | cut -f1-3 >"$TMP/got"
    cmp -s "$TMP/want" "$TMP/got" || fail "$pair: dtypes or shapes of the output differ"
    NCHECKS=$((NCHECKS + 1))
    expect_exit 0 "$LOXSTREAM" verify "$TMP/o"
    # full rank: exact up to the rounding of the output
    expect_exit 0 lox $b $a --rank 0 --alpha 0.5
    expect_exit 0 "$LXCHECK" "$TMP/$b/base" "$TMP/$a/aligned" "$TMP/o" 0 0.5 1e-6
done
# the randomized solver (the bound of a bf16 output, as in apply.sh)
expect_exit 0 lox f32 bf16 --rank 4
expect_exit 0 "$LXCHECK" "$TMP/f32/base" "$TMP/bf16/aligned" "$TMP/o" 4 1.25 2e-2
# the base anchor needs one dtype
expect_exit 2 lox f32 bf16 --anchor base
expect_err "--anchor base: tensor '.*' is F32 in base and BF16 in aligned"
[ ! -e "$TMP/o" ] || fail "a refused run created its output"
NCHECKS=$((NCHECKS + 1))

# ---- shapes that differ stay errors ----
"$LOXSTREAM" synth -q --preset tiny --hidden 48 --no-finetuned "$TMP/h48" >/dev/null 2>&1 || fail "synth h48"
for extra in "" --copy-unmatched; do
    rm -rf "$TMP/o"
    expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/h48/base" -a "$TMP/bf16/aligned" -o "$TMP/o" $extra
    expect_err "tensor 'model\\.[a-z_.0-9]+': aligned is BF16 \\[[0-9x]+\\] but base is BF16 \\[[0-9x]+\\]; every tensor to transform \\([0-9]+\\) differs from base: different architectures \\(config\\.json: hidden_size 48 in base, 64 in aligned"
    grep -q 'use --copy-unmatched' "$TMP/err" && fail "the hint leads to a run that changes nothing"
    [ ! -e "$TMP/o" ] || fail "a refused run created its output"
    NCHECKS=$((NCHECKS + 2))
done
# one tensor of two differs: the hint, with what is still transformed
mkdir "$TMP/in"
st_file "$TMP/in/a.safetensors" '{"w1":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]},"w2":{"dtype":"F32","shape":[4,4],"data_offsets":[64,128]}}' 128
st_file "$TMP/in/b.safetensors" '{"w1":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]},"w2":{"dtype":"F32","shape":[2,8],"data_offsets":[64,128]}}' 128
expect_exit 3 "$LOXSTREAM" apply -q --rank 1 -b "$TMP/in/b.safetensors" -a "$TMP/in/a.safetensors" -o "$TMP/o"
expect_err "tensor 'w2': aligned is F32 \\[4x4\\] but base is F32 \\[2x8\\]; 1 tensor differs from base: use --copy-unmatched to copy it unchanged \\(1 other tensors are still transformed\\)"
expect_exit 0 "$LOXSTREAM" apply -q --rank 1 -b "$TMP/in/b.safetensors" -a "$TMP/in/a.safetensors" -o "$TMP/o" --copy-unmatched
expect_err "tensor 'w2': aligned F32 \\[4x4\\] differs from base F32 \\[2x8\\]: copied unchanged"
# a NaN in a base of another dtype (F32 base, BF16 aligned, zeros
# otherwise): named by tensor, row and column, exit 3, nothing recorded
mkdir -p "$TMP/nan"
st_file "$TMP/nan/b.safetensors" '{"w":{"dtype":"F32","shape":[16,16],"data_offsets":[0,1024]}}' 1024
st_file "$TMP/nan/a.safetensors" '{"w":{"dtype":"BF16","shape":[16,16],"data_offsets":[0,512]}}' 512
nan_at=$((8 + $(header_len "$TMP/nan/b.safetensors") + (2 * 16 + 3) * 4))
printf '\000\000\300\177' | dd of="$TMP/nan/b.safetensors" bs=1 seek=$nan_at conv=notrunc 2>/dev/null
expect_exit 3 "$LOXSTREAM" apply -q --rank 2 -b "$TMP/nan/b.safetensors" -a "$TMP/nan/a.safetensors" -o "$TMP/onan"
expect_err "tensor 'w': row 2, column 3: aligned 0, base nan: the difference is not finite"
pass

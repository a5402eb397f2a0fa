#!/bin/sh
# dtype_weights.sh - a matrix the method would transform but whose dtype
# loxstream cannot compute in (F8_*, F4, I8, U8, BOOL, C64) is an error
# naming tensor and dtype (exit 3), with -q too; with --copy-unmatched it
# is copied bit for bit and said once.  A base/aligned pair whose dtypes
# differ in kind is a mismatch; an integer index buffer (I64) of the same
# dtype on both sides is copied as before.  The checkpoints are written by
# hand (stlib.sh), the copied bytes compared with dd's.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

# pair DTYPE_ALIGNED DTYPE_BASE BYTES: $TMP/in/a.safetensors and
# $TMP/in/b.safetensors, each one tensor "model.w" [4,4] of BYTES bytes, the
# aligned one's bytes 0x5a, the base's zeros
pair() {
    st_file "$TMP/in/b.safetensors" \
        "{\"model.w\":{\"dtype\":\"$2\",\"shape\":[4,4],\"data_offsets\":[0,$3]}}" "$3"
    j="{\"model.w\":{\"dtype\":\"$1\",\"shape\":[4,4],\"data_offsets\":[0,$3]}}"
    { le64 "$(nbytes "$j")"; printf %s "$j"; zeros "$3" | tr '\000' 'Z'; } >"$TMP/in/a.safetensors"
}
lox() {
    rm -rf "$TMP/o"
    "$LOXSTREAM" apply -j 1 --rank 2 -b "$TMP/in/b.safetensors" -a "$TMP/in/a.safetensors" \
        -o "$TMP/o" "$@"
}

mkdir "$TMP/in"
# ---- every dtype of the format loxstream cannot compute in --------------
for spec in F8_E4M3:16 F8_E5M2:16 F8_E8M0:16 F8_E4M3FNUZ:16 F4:8 F6_E2M3:12 I8:16 U8:16 \
    BOOL:16 C64:128; do
    dt=${spec%%:*}
    nb=${spec#*:}
    pair "$dt" "$dt" "$nb"
    expect_exit 3 lox
    expect_err "tensor 'model\\.w' \\(.*a\\.safetensors\\): aligned is $dt \\[4x4\\], base $dt \\[4x4\\]: loxstream cannot compute in dtype $dt"
    expect_err 'use --copy-unmatched'
    [ ! -e "$TMP/o/a.safetensors" ] || fail "$dt: a refused run left an output shard"
    expect_exit 3 lox -q
    expect_err "cannot compute in dtype $dt"
done

# ---- --copy-unmatched: copied unchanged, one warning with the count ------
pair F8_E4M3 F8_E4M3 16
expect_exit 0 lox --copy-unmatched
expect_eq "warnings" "$(grep -c 'cannot compute in' "$TMP/err")" 1
expect_err "1 tensor of a dtype loxstream cannot compute in copied unchanged \\(--copy-unmatched\\), the first 'model\\.w' \\(F8_E4M3\\)"
expect_exit 0 "$LOXSTREAM" verify "$TMP/o"
hs=$(header_len "$TMP/o/a.safetensors")
expect_eq "copied bytes" "$(dd if="$TMP/o/a.safetensors" bs=1 skip=$((8 + hs)) count=16 2>/dev/null)" \
    "ZZZZZZZZZZZZZZZZ"
expect_exit 0 "$LOXSTREAM" inspect -q "$TMP/o/a.safetensors"
expect_out '^model\.w	F8_E4M3	4x4	16	'

# ---- dtypes that differ in kind are a mismatch, either way round ---------
pair F8_E4M3 BF16 16
st_file "$TMP/in/b.safetensors" '{"model.w":{"dtype":"BF16","shape":[4,4],"data_offsets":[0,32]}}' 32
expect_exit 3 lox
expect_err "tensor 'model\\.w' .*aligned is F8_E4M3 \\[4x4\\], base BF16 \\[4x4\\]: loxstream cannot compute in dtype F8_E4M3"
st_file "$TMP/in/a.safetensors" '{"model.w":{"dtype":"BF16","shape":[4,4],"data_offsets":[0,32]}}' 32
st_file "$TMP/in/b.safetensors" '{"model.w":{"dtype":"F8_E4M3","shape":[4,4],"data_offsets":[0,16]}}' 16
expect_exit 3 lox
expect_err "tensor 'model\\.w': aligned is BF16 \\[4x4\\] but base is F8_E4M3 \\[4x4\\]"
# an index buffer against a float one: a mismatch too
st_file "$TMP/in/a.safetensors" '{"model.w":{"dtype":"I64","shape":[4,4],"data_offsets":[0,128]}}' 128
st_file "$TMP/in/b.safetensors" '{"model.w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}' 64
expect_exit 3 lox
expect_err "tensor 'model\\.w' .*aligned is I64 \\[4x4\\], base F32 \\[4x4\\]"

# ---- an integer index buffer of one dtype on both sides: copied ----------
pair I64 I64 128
expect_exit 0 lox
expect_err '0 tensors transformed|0 transformed'
hs=$(header_len "$TMP/o/a.safetensors")
dd if="$TMP/o/a.safetensors" bs=1 skip=$((8 + hs)) count=128 2>/dev/null >"$TMP/got"
dd if="$TMP/in/a.safetensors" bs=1 skip=$((8 + $(header_len "$TMP/in/a.safetensors"))) count=128 \
    2>/dev/null >"$TMP/want"
cmp "$TMP/got" "$TMP/want" || fail "the I64 buffer was not copied bit for bit"
NCHECKS=$((NCHECKS + 1))
pass

#!/bin/sh
# Overflow on output: an aligned value near the largest finite value of its
# dtype (F16, BF16, F32) plus alpha times the update rounds to Inf.  apply
# (low-rank and rank-0 paths) must refuse with exit 3 naming the tensor, row,
# column and that largest value, before the tensor is journaled (so a resumed
# run refuses again and verify does not call the output intact); lora must
# refuse adapter factors that overflow their dtype.  The inputs are written
# by hand (stlib.sh), not by loxstream.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

# ones_matrix ROWS COLS R C BYTES ONE: a ROWS x COLS matrix whose elements
# are the little-endian bytes ONE but element (R, C), which is BYTES (octal
# escapes); f16_matrix and f32_matrix: ONE is 1.0 (0x3c00, 0x3f800000).
ones_matrix() {
    i=0
    while [ "$i" -lt $(($1 * $2)) ]; do
        # shellcheck disable=SC2059 # the escapes are the point
        if [ "$i" = $(($3 * $2 + $4)) ]; then printf "$5"; else printf "$6"; fi
        i=$((i + 1))
    done
}
f16_matrix() { ones_matrix "$@" '\000\074'; }
f32_matrix() { ones_matrix "$@" '\000\000\200\077'; }

# pair DIR DTYPE A_BASE A_ALIGNED B_BASE B_ALIGNED: DIR/base and DIR/aligned,
# each one file with tensors a.weight and b.weight (4 x 8, 1.0 everywhere
# but element (2, 5), given as two bytes for each model and tensor).
pair() {
    hdr="{\"a.weight\":{\"dtype\":\"$2\",\"shape\":[4,8],\"data_offsets\":[0,64]},"
    hdr="$hdr\"b.weight\":{\"dtype\":\"$2\",\"shape\":[4,8],\"data_offsets\":[64,128]}}"
    mkdir -p "$1/base" "$1/aligned"
    { le64 "$(nbytes "$hdr")"; printf %s "$hdr"; f16_matrix 4 8 2 5 "$3"; f16_matrix 4 8 2 5 "$5"; } \
        >"$1/base/model.safetensors"
    { le64 "$(nbytes "$hdr")"; printf %s "$hdr"; f16_matrix 4 8 2 5 "$4"; f16_matrix 4 8 2 5 "$6"; } \
        >"$1/aligned/model.safetensors"
}

# F16: a.weight 1.0 -> 2.0 (harmless); b.weight 65440 -> 65504 (0x7bfd ->
# 0x7bff), so dW(2, 5) = 64 and 65504 + 1.25 * 64 = 65584 rounds to Inf.
# dW is rank 1: the rank-2 update is exact, the low-rank path overflows too.
pair "$TMP/h" F16 '\000\074' '\000\100' '\375\173' '\377\173'
"$LOXSTREAM" inspect "$TMP/h/aligned" >/dev/null || fail "the F16 pair is not readable"

msg="tensor 'b.weight': row 2, column 5: aligned 65504 plus the update overflows F16 \(largest finite value 65504\)"

# ---- low-rank path: exit 3, the message, nothing journaled ----------------
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/h/base" -a "$TMP/h/aligned" -o "$TMP/lr" --rank 2
expect_err "$msg"
[ -e "$TMP/lr/model.safetensors" ] && fail "the final output file exists after the overflow"
# a.weight, before it, is recorded; b.weight is not
j="$TMP/lr/.loxstream/journal.part-0001-of-0001"
grep -q "$(printf '^T\ta\\.weight\t')" "$j" || fail "a.weight was not journaled: $(cat "$j")"
grep -q 'b\.weight' "$j" && fail "b.weight was journaled: $(cat "$j")"
# resumed: the tensor is computed again and refused again
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/h/base" -a "$TMP/h/aligned" -o "$TMP/lr" --rank 2
expect_err "$msg"
# verify does not call it intact
set +e
"$LOXSTREAM" verify "$TMP/lr" >"$TMP/out" 2>"$TMP/err"
rc=$?
set -e
[ "$rc" = 0 ] && fail "verify calls the overflowed output intact: $(cat "$TMP/err")"
expect_eq "verify's exit status" "$rc" 4

# ---- rank 0 (full extrapolation): the same ---------------------------------
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/h/base" -a "$TMP/h/aligned" -o "$TMP/full" --rank 0
expect_err "$msg"
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/h/base" -a "$TMP/h/aligned" -o "$TMP/full" --rank 0
expect_err "$msg"
expect_exit 4 "$LOXSTREAM" verify "$TMP/full"

# ---- just below: 65504 + 0.2 * 64 = 65516.8 rounds to 65504, written ------
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/h/base" -a "$TMP/h/aligned" -o "$TMP/ok" --rank 0 \
    --alpha 0.2
expect_exit 0 "$LOXSTREAM" verify -q "$TMP/ok"
# b.weight (2, 5) is 0x7bff in the output: last 128 bytes are a then b
got=$(tail -c 64 "$TMP/ok/model.safetensors" | od -An -tx1 -j $(((2 * 8 + 5) * 2)) -N2 | tr -d ' ')
expect_eq "b.weight (2, 5) with --alpha 0.2" "$got" ff7b

# ---- BF16, rank 0: the largest finite value 0x7f7f plus 1.25 * one step ----
pair "$TMP/b" BF16 '\200\077' '\000\100' '\176\177' '\177\177'
expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/b/base" -a "$TMP/b/aligned" -o "$TMP/bf" --rank 0
expect_err "tensor 'b.weight': row 2, column 5: aligned 3.3895[0-9]*e\+38 plus the update overflows BF16 \(largest finite value 3.38953139e\+38\)"

# ---- F32, both paths: FLT_MAX - 1 ulp -> FLT_MAX, plus 1.25 ulp is Inf -------
hdr='{"a.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]},'
hdr="$hdr\"b.weight\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[128,256]}}"
mkdir -p "$TMP/f/base" "$TMP/f/aligned"
# a.weight 1.0 -> 2.0; b.weight 0x7f7ffffe -> 0x7f7fffff (FLT_MAX): dW = 2^104
{ le64 "$(nbytes "$hdr")"; printf %s "$hdr"; f32_matrix 4 8 2 5 '\000\000\200\077'
  f32_matrix 4 8 2 5 '\376\377\177\177'; } >"$TMP/f/base/model.safetensors"
{ le64 "$(nbytes "$hdr")"; printf %s "$hdr"; f32_matrix 4 8 2 5 '\000\000\000\100'
  f32_matrix 4 8 2 5 '\377\377\177\177'; } >"$TMP/f/aligned/model.safetensors"
msg32="tensor 'b.weight': row 2, column 5: aligned 3.40282[0-9]*e\+38 plus the update overflows F32 \(largest finite value 3.40282347e\+38\)"
for r in 2 0; do
    expect_exit 3 "$LOXSTREAM" apply -q -b "$TMP/f/base" -a "$TMP/f/aligned" -o "$TMP/f32-$r" --rank "$r"
    expect_err "$msg32"
    [ -e "$TMP/f32-$r/model.safetensors" ] && fail "an F32 output file exists after the overflow (rank $r)"
done
expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/f/base" -a "$TMP/f/aligned" -o "$TMP/f32-ok" --rank 0 \
    --alpha 0.2
expect_exit 0 "$LOXSTREAM" verify -q "$TMP/f32-ok"

# ---- lora: factors that overflow the adapter's dtype ------------------------
# an F32 pair whose dW has one element 1e10: sqrt(S) = 1e5 > 65504 in F16
hdr='{"w.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}'
mkdir -p "$TMP/l/base" "$TMP/l/aligned"
# 0.0 everywhere; aligned (1, 0) = 1e10 (0x501502f9)
{ le64 "$(nbytes "$hdr")"; printf %s "$hdr"; zeros 16; } >"$TMP/l/base/model.safetensors"
{ le64 "$(nbytes "$hdr")"; printf %s "$hdr"; zeros 8; printf '\371\002\025\120'; zeros 4; } \
    >"$TMP/l/aligned/model.safetensors"
expect_exit 3 "$LOXSTREAM" lora -q -b "$TMP/l/base" -a "$TMP/l/aligned" -o "$TMP/ad" --rank 1 \
    --dtype f16
expect_err "tensor 'base_model.model.w.lora_A.weight': row 0, column 0: -?100000 overflows F16 \(largest finite value 65504\)"
[ -e "$TMP/ad/adapter_model.safetensors" ] && fail "an adapter was left behind"
# in F32 the same factors are fine: 1e5 on each side, B A = 1e10
expect_exit 0 "$LOXSTREAM" lora -q -b "$TMP/l/base" -a "$TMP/l/aligned" -o "$TMP/ad32" --rank 1 \
    --dtype f32
pass

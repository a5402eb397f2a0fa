#!/bin/sh
# bf16_portable.sh - the BF16 loops through the portable code (the path of a
# CPU without AVX-512, LOXSTREAM_BF16_KERNEL=portable) as well as through
# bf16_kernel.c: the switch turns the kernels off (test_bf16_kernel then
# skips, exit 77); the dtype and output-row tests pass on the portable path
# (test_dtype, test_rsvd); and apply writes the same bytes either way, on a
# BF16 pair whose aligned model holds an Inf (the error names the same
# element) and on one without.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"
UNIT=$(dirname "$LOXSTREAM")/../tests/unit

# skips (exit 77) with the switch set
expect_exit 77 env LOXSTREAM_BF16_KERNEL=portable "$UNIT/test_bf16_kernel"

for t in test_dtype test_rsvd; do
    NCHECKS=$((NCHECKS + 1))
    LOXSTREAM_BF16_KERNEL=portable "$UNIT/$t" >"$TMP/$t.out" 2>&1 ||
        fail "$t on the portable path: $(tail -5 "$TMP/$t.out")"
done

"$LOXSTREAM" synth -q --preset small --layers 2 --seed 5 "$TMP/m" || fail "synth"
for path in kernel portable; do
    if [ $path = portable ]; then export LOXSTREAM_BF16_KERNEL=portable; fi
    expect_exit 0 "$LOXSTREAM" apply -q -b "$TMP/m/base" -a "$TMP/m/aligned" -o "$TMP/$path"
done
unset LOXSTREAM_BF16_KERNEL
NCHECKS=$((NCHECKS + 1))
diff -r "$TMP/kernel" "$TMP/portable" >/dev/null || fail "the kernels and the portable loops wrote different files"

# zeros but an Inf in the aligned model at row 5, column 37 (past the
# kernel's first 32 columns of a row of 64): the same error either way
mkdir -p "$TMP/inf"
st_file "$TMP/inf/b.safetensors" '{"w":{"dtype":"BF16","shape":[40,64],"data_offsets":[0,5120]}}' 5120
st_file "$TMP/inf/a.safetensors" '{"w":{"dtype":"BF16","shape":[40,64],"data_offsets":[0,5120]}}' 5120
inf_at=$((8 + $(header_len "$TMP/inf/a.safetensors") + (5 * 64 + 37) * 2))
printf '\200\177' | dd of="$TMP/inf/a.safetensors" bs=1 seek=$inf_at conv=notrunc 2>/dev/null
for path in kernel portable; do
    if [ $path = portable ]; then export LOXSTREAM_BF16_KERNEL=portable; fi
    expect_exit 3 "$LOXSTREAM" apply -q --rank 2 -b "$TMP/inf/b.safetensors" \
        -a "$TMP/inf/a.safetensors" -o "$TMP/oinf$path"
    expect_err "tensor 'w': row 5, column 37: aligned inf, base 0: the difference is not finite"
done
unset LOXSTREAM_BF16_KERNEL
pass

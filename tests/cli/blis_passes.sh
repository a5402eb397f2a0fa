#!/bin/sh
# blis_passes.sh - the passes' two products through BLIS (the path of a
# CPU without AVX-512F, LOXSTREAM_PASS_KERNEL=blis) as well as through
# pass_kernel.c: the switch turns the kernel off (test_pass_kernel then
# skips, exit 77); the randomized SVD's accuracy tests pass on the BLIS
# path too (test_rsvd); and apply's output is within the same error of the
# exact truncation (lxcheck) either way, -j 1 and -j 2 giving the same
# bytes on each path.
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXCHECK:?}"
UNIT=$(dirname "$LOXSTREAM")/../tests/unit

# skips (exit 77) with the switch set
expect_exit 77 env LOXSTREAM_PASS_KERNEL=blis "$UNIT/test_pass_kernel"

NCHECKS=$((NCHECKS + 1))
LOXSTREAM_PASS_KERNEL=blis "$UNIT/test_rsvd" >"$TMP/rsvd.out" 2>&1 ||
    fail "test_rsvd on the BLIS path: $(tail -5 "$TMP/rsvd.out")"

"$LOXSTREAM" synth -q --preset small --dtype f32 --layers 1 --seed 3 "$TMP/m" || fail "synth"
for path in kernel blis; do
    if [ $path = blis ]; then export LOXSTREAM_PASS_KERNEL=blis; fi
    for j in 1 2; do
        expect_exit 0 "$LOXSTREAM" apply -q -j $j -b "$TMP/m/base" -a "$TMP/m/aligned" \
            -o "$TMP/$path$j"
    done
    NCHECKS=$((NCHECKS + 1))
    diff -r "$TMP/${path}1" "$TMP/${path}2" >/dev/null || fail "$path: -j 1 and -j 2 differ"
    expect_exit 0 "$LXCHECK" "$TMP/m/base" "$TMP/m/aligned" "$TMP/${path}1" 6 1.25 1e-3
done
unset LOXSTREAM_PASS_KERNEL
# which path each run took, as --version says: the kernel where the CPU has
# AVX-512F, BLIS when told so
NCHECKS=$((NCHECKS + 1))
LOXSTREAM_PASS_KERNEL=blis "$LOXSTREAM" --version | grep -q 'pass products: BLIS$' ||
    fail "LOXSTREAM_PASS_KERNEL=blis: --version does not say the passes use BLIS"
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    NCHECKS=$((NCHECKS + 1))
    "$LOXSTREAM" --version | grep -q 'pass products: AVX-512 kernel$' ||
        fail "an AVX-512F CPU, but --version does not say the passes use the kernel"
fi
pass

/* test_bf16_kernel.c - the AVX-512 BF16 loops (src/numeric/bf16_kernel.c).
 *
 * The output block, bit for bit against the rule factors.c's portable loop
 * follows, written
 * out here element by element: a = c[0] v[0], then a = a + c[t] v[t] for
 * t = 1 .., each product rounded to f32 before its sum (the build's
 * -ffp-contract=off), the anchor decoded and added last, and the sum
 * rounded to BF16 by dtype_elem.h's encoder, which test_dtype checks
 * against the exact rule; the flag is set exactly when a result is an Inf
 * or a NaN.  Cases: every length 1 .. 200 (the 64-column steps and the
 * masked tail), ranks 1 .. 9 and 64, a V stride beyond the block, anchors
 * that hold quiet and signalling NaNs, Infs, the largest finite values
 * (which overflow), subnormals and signed zeros, and the output written
 * over its own anchor.
 *
 * The difference (through lx_sub_to_f32, which takes it for BF16): every
 * finite a - b exactly (both widened, subtracted in f32), computed here in
 * double from the bit patterns; the index returned is that of the first
 * element whose difference is an Inf or a NaN (or n), for lengths 1 .. 200
 * and 11008, inputs at odd byte offsets.
 *
 * A CPU without AVX-512 F/BW/VL/DQ skips (exit 77).
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/numeric/dtype_elem.h"
#include "loxstream/dtype.h"
#include "../../src/numeric/bf16_kernel.h"
#include "kernel_gate.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rnd(void)
{
    return (float)((double)(next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* An anchor element: mostly ordinary values, some of every special kind. */
static uint16_t anchor_bits(void)
{
    static const uint16_t special[] = {
        0x7fc0, 0xffc1, /* quiet NaNs */
        0x7f81, 0xff80 | 0x0005, /* signalling NaNs */
        0x7f80, 0xff80, /* +-Inf */
        0x7f7f, 0xff7f, /* the largest finite: overflows with the update */
        0x0001, 0x8003, 0x007f, /* subnormals */
        0x0000, 0x8000, /* signed zeros */
    };
    uint64_t r = next();
    if (r % 8 == 0)
        return special[(r >> 8) % (sizeof special / sizeof *special)];
    return bf16_encode(rnd() * 4.0f);
}

/* The rule, element by element. */
static unsigned reference(const float *c, int tt, const float *v, size_t ldv,
                          const uint16_t *base, uint16_t *dst, size_t len)
{
    unsigned bad = 0;
    for (size_t j = 0; j < len; j++) {
        float a = c[0] * v[j];
        for (int t = 1; t < tt; t++) {
            float p = c[t] * v[(size_t)t * ldv + j];
            a = a + p;
        }
        float s = bf16_decode(base[j]) + a;
        dst[j] = bf16_encode(s);
        bad |= (dst[j] & 0x7f80u) == 0x7f80u;
    }
    return bad;
}

static void check(size_t len, int tt, size_t ldv, int in_place)
{
    float c[64];
    float *v = malloc((size_t)tt * ldv * sizeof *v);
    uint16_t *base = malloc((len + 8) * 2), *want = malloc(len * 2), *got = malloc((len + 8) * 2);
    assert_true(v && base && want && got);
    for (int t = 0; t < tt; t++)
        c[t] = rnd() * (next() % 16 == 0 ? 1e38f : 1.0f); /* a few sums overflow */
    for (size_t i = 0; i < (size_t)tt * ldv; i++)
        v[i] = rnd();
    for (size_t j = 0; j < len + 8; j++)
        base[j] = anchor_bits();
    unsigned wbad = reference(c, tt, v, ldv, base, want, len);
    for (size_t j = 0; j < len + 8; j++)
        got[j] = in_place ? base[j] : 0x5555;
    const uint16_t *src = in_place ? got : base;
    unsigned gbad = lx_bf16_out_block(c, tt, v, ldv, (const unsigned char *)src,
                                       (unsigned char *)got, len);
    for (size_t j = 0; j < len; j++)
        if (got[j] != want[j])
            fail_msg("len %zu rank %d ldv %zu%s: element %zu: 0x%04x, expected 0x%04x (anchor "
                     "0x%04x)",
                     len, tt, ldv, in_place ? " in place" : "", j, got[j], want[j], base[j]);
    /* nothing written past the block */
    for (size_t j = len; j < len + 8; j++)
        assert_int_equal(got[j], in_place ? base[j] : 0x5555);
    assert_int_equal(gbad != 0, wbad != 0);
    free(v);
    free(base);
    free(want);
    free(got);
}

static void every_length_and_rank(void **state)
{
    (void)state;
    for (size_t len = 1; len <= 200; len++)
        for (int tt = 1; tt <= 9; tt++)
            check(len, tt, len + (size_t)tt, (int)(len + (size_t)tt) % 2);
    check(512, 64, 1100, 0);
    check(512, 64, 1100, 1);
}

/* Finite anchors and small updates: the flag stays clear. */
static void finite_flag_clear(void **state)
{
    (void)state;
    size_t len = 333;
    float c[6], *v = malloc(6 * len * sizeof *v);
    uint16_t *base = malloc(len * 2), *dst = malloc(len * 2);
    assert_true(v && base && dst);
    for (int t = 0; t < 6; t++)
        c[t] = rnd();
    for (size_t i = 0; i < 6 * len; i++)
        v[i] = rnd();
    for (size_t j = 0; j < len; j++)
        base[j] = bf16_encode(rnd());
    assert_int_equal(lx_bf16_out_block(c, 6, v, len, (const unsigned char *)base,
                                        (unsigned char *)dst, len),
                     0);
    free(v);
    free(base);
    free(dst);
}

/* a - b for n elements at odd byte offsets, one special value in about
 * every `rare` elements (0: none) */
static void check_sub(size_t n, unsigned rare)
{
    unsigned char *ba = malloc(2 * n + 1), *bb = malloc(2 * n + 1);
    float *dst = malloc((n + 1) * sizeof *dst);
    assert_true(ba && bb && dst);
    unsigned char *a = ba + 1, *b = bb + 1; /* not 2-byte aligned */
    size_t first = n;
    for (size_t j = 0; j < n; j++) {
        uint16_t ha = bf16_encode(rnd() * 8.0f), hb = bf16_encode(rnd() * 8.0f);
        if (rare && next() % rare == 0)
            ha = anchor_bits();
        if (rare && next() % rare == 0)
            hb = anchor_bits();
        memcpy(a + 2 * j, &ha, 2);
        memcpy(b + 2 * j, &hb, 2);
        double d = (double)f32_from_bits((uint32_t)ha << 16) - (double)f32_from_bits((uint32_t)hb << 16);
        if (!isfinite(d) && first == n)
            first = j;
    }
    dst[n] = 7.0f;
    size_t got = lx_sub_to_f32(LX_DT_BF16, a, b, dst, n);
    assert_int_equal(got, first);
    for (size_t j = 0; j < n; j++) {
        uint16_t ha, hb;
        memcpy(&ha, a + 2 * j, 2);
        memcpy(&hb, b + 2 * j, 2);
        /* the f32 subtraction rounds the exact difference once; so does
         * (float) of the double one, exact in double at these magnitudes
         * (or far below half an ulp of the larger value) */
        double d = (double)f32_from_bits((uint32_t)ha << 16) - (double)f32_from_bits((uint32_t)hb << 16);
        if (isfinite(d) && isfinite((float)d) && dst[j] != (float)d)
            fail_msg("n %zu: element %zu: %a - %a gave %a, expected %a", n, j,
                     (double)f32_from_bits((uint32_t)ha << 16), (double)f32_from_bits((uint32_t)hb << 16),
                     (double)dst[j], (double)(float)d);
    }
    assert_true(dst[n] == 7.0f); /* nothing written past the end */
    free(ba);
    free(bb);
    free(dst);
}

static void differences(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 200; n++) {
        check_sub(n, 0);
        check_sub(n, 64);
    }
    check_sub(11008, 0);
    check_sub(11008, 5000);
}

int main(void)
{
    int gate = kernel_gate("LOXSTREAM_BF16_KERNEL", "portable", lx_bf16_kernel_on,
                           "no AVX-512 F/BW/VL/DQ on this CPU (the portable loop is used)");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_length_and_rank),
        cmocka_unit_test(finite_flag_clear),
        cmocka_unit_test(differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

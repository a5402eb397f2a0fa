/* test_dtype.c - dtype table and float conversions against independent references.
 *
 * The references decode and round in double arithmetic from the format
 * definitions (sign, exponent and mantissa fields; ldexp/frexp), sharing no
 * code or bit tricks with src/numeric/dtype.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/dtype.h"

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

/* splitmix64: deterministic, so a failure reproduces */
static uint64_t rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* A 16-bit binary float format: bf16 is 8 exponent / 7 mantissa bits, f16
 * is 5 / 10. */
typedef struct fmt {
    const char *name;
    int ebits, mbits;
    float (*to_f32)(uint16_t);
    uint16_t (*from_f32)(float);
} fmt;

static const fmt BF16 = {"bf16", 8, 7, lx_bf16_to_f32, lx_f32_to_bf16};
static const fmt F16 = {"f16", 5, 10, lx_f16_to_f32, lx_f32_to_f16};

static int bias_of(const fmt *f)
{
    return (1 << (f->ebits - 1)) - 1;
}

static bool ref_is_nan(const fmt *f, uint16_t h)
{
    unsigned e = (h >> f->mbits) & ((1u << f->ebits) - 1);
    return e == (1u << f->ebits) - 1 && (h & ((1u << f->mbits) - 1)) != 0;
}

/* The value of a bit pattern, from the field definitions. */
static double ref_decode(const fmt *f, uint16_t h)
{
    unsigned sign = h >> 15;
    unsigned e = (h >> f->mbits) & ((1u << f->ebits) - 1);
    unsigned m = h & ((1u << f->mbits) - 1);
    double v;
    if (e == (1u << f->ebits) - 1)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, 1 - bias_of(f) - f->mbits);
    else
        v = ldexp((double)((1u << f->mbits) + m), (int)e - bias_of(f) - f->mbits);
    return sign ? -v : v;
}

/* Round a finite double to the format, ties to even, by finding the two
 * neighbouring representable values (overflow gives +-Inf).  Works for any
 * x whose neighbours are exact in double, which holds for every float. */
static double ref_round(const fmt *f, double x)
{
    double ax = fabs(x);
    if (ax == 0)
        return x;
    int emin = 1 - bias_of(f), emax = bias_of(f);
    int e;
    frexp(ax, &e);                    /* ax in [2^(e-1), 2^e) */
    int ulp_exp = (e - 1 < emin ? emin : e - 1) - f->mbits;
    double q = ldexp(1.0, ulp_exp);
    double k = floor(ax / q);         /* lo = k * q <= ax < hi */
    double lo = k * q, hi = (k + 1) * q;
    double r;
    if (ax - lo < hi - ax)
        r = lo;
    else if (ax - lo > hi - ax)
        r = hi;
    else
        r = fmod(k, 2) == 0 ? lo : hi;
    if (r >= ldexp(1.0, emax + 1))
        r = INFINITY;
    return x < 0 ? -r : r;
}

/* Value of an implementation result as double, via the reference decoder. */
static bool same_value(double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return a == b && !signbit(a) == !signbit(b);
}

/* ---- dtype table --------------------------------------------------------- */

static void test_names_and_bits(void **state)
{
    static const struct {
        lx_dtype dt;
        const char *name;
        unsigned bits;
        bool transformable;
    } table[] = {
        {LX_DT_BOOL, "BOOL", 8, false},
        {LX_DT_F4, "F4", 4, false},
        {LX_DT_F6_E2M3, "F6_E2M3", 6, false},
        {LX_DT_F6_E3M2, "F6_E3M2", 6, false},
        {LX_DT_U8, "U8", 8, false},
        {LX_DT_I8, "I8", 8, false},
        {LX_DT_F8_E5M2, "F8_E5M2", 8, false},
        {LX_DT_F8_E4M3, "F8_E4M3", 8, false},
        {LX_DT_F8_E8M0, "F8_E8M0", 8, false},
        {LX_DT_F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, false},
        {LX_DT_F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, false},
        {LX_DT_I16, "I16", 16, false},
        {LX_DT_U16, "U16", 16, false},
        {LX_DT_F16, "F16", 16, true},
        {LX_DT_BF16, "BF16", 16, true},
        {LX_DT_I32, "I32", 32, false},
        {LX_DT_U32, "U32", 32, false},
        {LX_DT_F32, "F32", 32, true},
        {LX_DT_C64, "C64", 64, false},
        {LX_DT_F64, "F64", 64, true},
        {LX_DT_I64, "I64", 64, false},
        {LX_DT_U64, "U64", 64, false},
    };
    assert_int_equal(sizeof table / sizeof table[0], LX_DT_COUNT);
    for (size_t i = 0; i < LX_DT_COUNT; i++) {
        lx_dtype got = LX_DT_COUNT;
        assert_string_equal(lx_dtype_name(table[i].dt), table[i].name);
        assert_true(lx_dtype_from_name(table[i].name, &got));
        assert_int_equal(got, table[i].dt);
        assert_int_equal(lx_dtype_bits(table[i].dt), table[i].bits);
        assert_int_equal(lx_dtype_is_transformable(table[i].dt), table[i].transformable);
    }
    static const char *bad[] = {"", "bf16", "F32 ", " F32", "F8", "FLOAT", "F64X", "BF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lx_dtype got = LX_DT_BF16;
        assert_false(lx_dtype_from_name(bad[i], &got));
        assert_int_equal(got, LX_DT_BF16);   /* untouched on failure */
    }
}

/* ---- 16-bit -> f32, every pattern ----------------------------------------- */

static void check_all_decodes(const fmt *f)
{
    unsigned bad = 0;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float got = f->to_f32((uint16_t)h);
        if (ref_is_nan(f, (uint16_t)h)) {
            /* NaN stays NaN, quiet (top mantissa bit set), sign kept */
            uint32_t u = bits_of(got);
            if (!isnan(got) || !(u & 0x00400000u) || (u >> 31) != (h >> 15))
                bad++;
            continue;
        }
        if (!same_value(got, ref_decode(f, (uint16_t)h))) {
            if (bad++ < 5)
                print_message("%s 0x%04x: got %a, expected %a\n", f->name, h, (double)got,
                              ref_decode(f, (uint16_t)h));
        }
    }
    assert_int_equal(bad, 0);
}

static void test_bf16_to_f32_all(void **state)
{
    check_all_decodes(&BF16);
}

static void test_f16_to_f32_all(void **state)
{
    check_all_decodes(&F16);
}

static void check_round_trips(const fmt *f)
{
    unsigned bad = 0;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        uint16_t back = f->from_f32(f->to_f32((uint16_t)h));
        if (ref_is_nan(f, (uint16_t)h)) {
            /* a NaN must not come back as Inf or a number */
            if (!ref_is_nan(f, back) || (back >> 15) != (h >> 15))
                bad++;
        } else if (back != h) {
            if (bad++ < 5)
                print_message("%s 0x%04x came back as 0x%04x\n", f->name, h, back);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_round_trip_bf16(void **state)
{
    check_round_trips(&BF16);
}

static void test_round_trip_f16(void **state)
{
    check_round_trips(&F16);
}

/* ---- f32 -> 16-bit rounding ------------------------------------------------ */

static unsigned check_encode(const fmt *f, float x)
{
    uint16_t h = f->from_f32(x);
    if (isnan(x)) {
        if (ref_is_nan(f, h) && (h >> 15) == (bits_of(x) >> 31))
            return 0;
        print_message("%s: NaN 0x%08x encoded as 0x%04x\n", f->name, bits_of(x), h);
        return 1;
    }
    double want = ref_round(f, x);
    if (same_value(ref_decode(f, h), want))
        return 0;
    print_message("%s: %a (0x%08x) encoded as 0x%04x = %a, expected %a\n", f->name, (double)x,
                  bits_of(x), h, ref_decode(f, h), want);
    return 1;
}

/* Every midpoint between neighbouring values of the format (an exact tie),
 * the floats just below and above it, and both signs.  This covers the
 * subnormal range, the normal range and the step from the largest finite
 * value to Inf. */
static void check_ties(const fmt *f)
{
    unsigned bad = 0;
    uint16_t inf = (uint16_t)(((1u << f->ebits) - 1) << f->mbits);
    for (uint16_t h = 0; h < inf; h++) {
        double lo = ref_decode(f, h);
        double hi = h + 1 < inf ? ref_decode(f, (uint16_t)(h + 1))
                                : ldexp(1.0, bias_of(f) + 1);   /* beyond the largest finite */
        float mid = (float)((lo + hi) / 2);
        assert_true((double)mid == (lo + hi) / 2);   /* the tie is an exact float */
        float probes[] = {mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (size_t i = 0; i < 3 && bad < 10; i++) {
            bad += check_encode(f, probes[i]);
            bad += check_encode(f, -probes[i]);
        }
    }
    assert_int_equal(bad, 0);
}

static void test_f32_to_bf16_ties(void **state)
{
    check_ties(&BF16);
}

static void test_f32_to_f16_ties(void **state)
{
    check_ties(&F16);
}

/* Every 4099th float bit pattern over all 2^32, then random ones: covers
 * NaNs, Infs, f32 subnormals and everything in between. */
static void check_sweep(const fmt *f)
{
    unsigned bad = 0;
    for (uint64_t u = 0; u <= 0xffffffffu && bad < 10; u += 4099)
        bad += check_encode(f, float_of((uint32_t)u));
    for (int i = 0; i < 1000000 && bad < 10; i++)
        bad += check_encode(f, float_of((uint32_t)rng()));
    assert_int_equal(bad, 0);
}

static void test_f32_to_bf16_sweep(void **state)
{
    check_sweep(&BF16);
}

static void test_f32_to_f16_sweep(void **state)
{
    check_sweep(&F16);
}

/* Hand-checked anchors, so the reference itself is pinned down. */
static void test_known_values(void **state)
{
    /* f16: 65504 is the largest finite; 65520 is the tie that rounds to Inf */
    assert_int_equal(lx_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(lx_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
    assert_int_equal(lx_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(lx_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(lx_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(lx_f32_to_f16(FLT_MAX), 0x7c00);
    assert_int_equal(lx_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(lx_f32_to_f16(-INFINITY), 0xfc00);
    /* f16 subnormals: 2^-24 is the smallest, 2^-25 the tie that goes to zero */
    assert_int_equal(lx_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(lx_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(lx_f32_to_f16(-0x1p-25f), 0x8000);
    assert_int_equal(lx_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
    assert_int_equal(lx_f32_to_f16(0x1p-26f), 0x0000);
    assert_int_equal(lx_f32_to_f16(FLT_TRUE_MIN), 0x0000);
    assert_int_equal(lx_f32_to_f16(-FLT_TRUE_MIN), 0x8000);
    assert_int_equal(lx_f32_to_f16(0x1.8p-24f), 0x0002);   /* tie 1.5 -> 2 */
    assert_int_equal(lx_f32_to_f16(0x1.4p-23f), 0x0002);   /* tie 2.5 -> 2 */
    assert_int_equal(lx_f32_to_f16(0x1.ff8p-15f), 0x03ff); /* largest subnormal */
    assert_int_equal(lx_f32_to_f16(0x1.ffcp-15f), 0x0400); /* tie up to the smallest normal */
    assert_int_equal(lx_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(lx_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(lx_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);        /* tie, even */
    assert_int_equal(lx_f32_to_f16(1.0f + 0x3p-11f), 0x3c02);        /* tie, up to even */
    assert_int_equal(lx_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(lx_f32_to_f16(-0.0f), 0x8000);
    assert_true(lx_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(lx_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(lx_f16_to_f32(0x3555) == 0x1.554p-2f);
    assert_true(signbit(lx_f16_to_f32(0x8000)));

    /* bf16 */
    assert_int_equal(lx_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(lx_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);       /* tie, even */
    assert_int_equal(lx_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);       /* tie, up to even */
    assert_int_equal(lx_f32_to_bf16(nextafterf(1.0f + 0x1p-8f, 2)), 0x3f81);
    assert_int_equal(lx_f32_to_bf16(FLT_MAX), 0x7f80);              /* rounds to Inf */
    assert_int_equal(lx_f32_to_bf16(0x1.fep127f), 0x7f7f);          /* largest finite bf16 */
    assert_int_equal(lx_f32_to_bf16(-0.0f), 0x8000);
    assert_int_equal(lx_f32_to_bf16(FLT_TRUE_MIN), 0x0000);         /* tie to even zero */
    assert_int_equal(lx_f32_to_bf16(0x1p-133f), 0x0001);            /* smallest bf16 subnormal */
    assert_int_equal(lx_f32_to_bf16(0x1.8p-133f), 0x0002);          /* tie 1.5 -> 2 */
    assert_true(lx_bf16_to_f32(0x0001) == 0x1p-133f);
    assert_true(lx_bf16_to_f32(0x4049) == 3.140625f);
}

/* NaNs whose payload lies only in the dropped bits would truncate to Inf. */
static void test_nan_stays_nan(void **state)
{
    static const uint32_t nans[] = {
        0x7f800001u, 0x7f801fffu, 0x7f80ffffu, 0x7fc00000u, 0xff800001u, 0xffc00000u,
        0x7fffffffu, 0xffffffffu, 0x7fa00000u,
    };
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float x = float_of(nans[i]);
        uint16_t b = lx_f32_to_bf16(x), h = lx_f32_to_f16(x);
        assert_true(ref_is_nan(&BF16, b));
        assert_true(ref_is_nan(&F16, h));
        assert_true(b & 0x0040);                 /* quiet */
        assert_true(h & 0x0200);
        assert_int_equal(b >> 15, nans[i] >> 31);
        assert_int_equal(h >> 15, nans[i] >> 31);
    }
    /* signalling 16-bit NaNs come out as quiet f32 NaNs */
    assert_true(bits_of(lx_bf16_to_f32(0x7f81)) & 0x00400000u);
    assert_true(bits_of(lx_f16_to_f32(0x7c01)) & 0x00400000u);
    assert_true(isnan(lx_f16_to_f32(0xfc01)) && signbit(lx_f16_to_f32(0xfc01)));
}

/* ---- array routines ---------------------------------------------------------- */

static const lx_dtype transformable[] = {LX_DT_BF16, LX_DT_F16, LX_DT_F32, LX_DT_F64};
/* around the block sizes an implementation might use, and odd */
static const size_t lengths[] = {0, 1, 2, 3, 7, 15, 31, 63, 255, 511, 512, 513, 1023, 1025, 3001};
enum { MAX_N = 3001, GUARD = 16 };

/* Random element of dtype dt: mostly finite values of varied magnitude, some
 * specials (from raw bit patterns) for the 16-bit types. */
static void random_element(lx_dtype dt, unsigned char *p)
{
    uint64_t r = rng();
    double v = ldexp((double)(int32_t)r, (int)(r >> 40) % 24 - 40);
    switch (dt) {
    case LX_DT_BF16: {
        uint16_t h = (r >> 32) % 8 == 0 ? (uint16_t)(r >> 48) : lx_f32_to_bf16((float)v);
        memcpy(p, &h, 2);
        break;
    }
    case LX_DT_F16: {
        uint16_t h = (r >> 32) % 8 == 0 ? (uint16_t)(r >> 48) : lx_f32_to_f16((float)(v * 1e-4));
        memcpy(p, &h, 2);
        break;
    }
    case LX_DT_F32: {
        float f = (float)v;
        memcpy(p, &f, 4);
        break;
    }
    default:
        memcpy(p, &v, 8);
        break;
    }
}

/* scalar reference of one element, through the scalar API */
static float scalar_load(lx_dtype dt, const unsigned char *p)
{
    uint16_t h;
    float f;
    double d;
    switch (dt) {
    case LX_DT_BF16:
        memcpy(&h, p, 2);
        return lx_bf16_to_f32(h);
    case LX_DT_F16:
        memcpy(&h, p, 2);
        return lx_f16_to_f32(h);
    case LX_DT_F32:
        memcpy(&f, p, 4);
        return f;
    default:
        memcpy(&d, p, 8);
        return (float)d;
    }
}

static void scalar_store(lx_dtype dt, unsigned char *p, float f)
{
    uint16_t h;
    double d = f;
    switch (dt) {
    case LX_DT_BF16:
        h = lx_f32_to_bf16(f);
        memcpy(p, &h, 2);
        break;
    case LX_DT_F16:
        h = lx_f32_to_f16(f);
        memcpy(p, &h, 2);
        break;
    case LX_DT_F32:
        memcpy(p, &f, 4);
        break;
    default:
        memcpy(p, &d, 8);
        break;
    }
}

/* bit-identical, or both NaN */
static bool same_f32(float a, float b)
{
    return bits_of(a) == bits_of(b) || (isnan(a) && isnan(b));
}

static bool same_elem(lx_dtype dt, const unsigned char *a, const unsigned char *b)
{
    size_t size = lx_dtype_bits(dt) / 8;
    if (memcmp(a, b, size) == 0)
        return true;
    if (dt == LX_DT_F64) {
        double x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        return isnan(x) && isnan(y);
    }
    return isnan(scalar_load(dt, a)) && isnan(scalar_load(dt, b));
}

typedef struct bufs {
    unsigned char a[MAX_N * 8 + GUARD], b[MAX_N * 8 + GUARD];
    unsigned char out[MAX_N * 8 + GUARD], expect[MAX_N * 8 + GUARD];
    float f[MAX_N + GUARD], g[MAX_N + GUARD];
} bufs;

static void test_to_from_f32_arrays(void **state)
{
    bufs *B = malloc(sizeof *B);
    assert_non_null(B);
    for (size_t t = 0; t < 4; t++) {
        lx_dtype dt = transformable[t];
        size_t size = lx_dtype_bits(dt) / 8;
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            size_t n = lengths[li];
            for (size_t off = 0; off < 4; off++) {
                unsigned char *src = B->a + off, *dst = B->out + off;
                for (size_t i = 0; i < n; i++)
                    random_element(dt, src + i * size);
                memset(B->f, 0x5a, sizeof B->f);
                lx_to_f32(dt, src, B->f, n);
                for (size_t i = 0; i < n; i++)
                    assert_true(same_f32(B->f[i], scalar_load(dt, src + i * size)));
                assert_int_equal(bits_of(B->f[n]), 0x5a5a5a5au);   /* nothing beyond n */

                /* raw patterns (NaN, Inf, huge, subnormal) and values below 2 */
                for (size_t i = 0; i < n; i++)
                    B->g[i] = float_of((uint32_t)rng() & (i % 2 ? 0xffffffffu : 0xbfffffffu));
                memset(B->out, 0xa5, sizeof B->out);
                lx_from_f32(dt, B->g, dst, n);
                for (size_t i = 0; i < n; i++) {
                    scalar_store(dt, B->expect, B->g[i]);
                    assert_true(same_elem(dt, dst + i * size, B->expect));
                }
                assert_int_equal(dst[n * size], 0xa5);   /* nothing outside [0, n) */
                if (off)
                    assert_int_equal(dst[-1], 0xa5);
            }
        }
    }
    free(B);
}

static void test_sub_to_f32(void **state)
{
    bufs *B = malloc(sizeof *B);
    assert_non_null(B);
    for (size_t t = 0; t < 4; t++) {
        lx_dtype dt = transformable[t];
        size_t size = lx_dtype_bits(dt) / 8;
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            size_t n = lengths[li];
            for (size_t off = 0; off < 3; off++) {
                unsigned char *a = B->a + off, *b = B->b + (off + 1) % 3;
                for (size_t i = 0; i < n; i++) {
                    random_element(dt, a + i * size);
                    random_element(dt, b + i * size);
                }
                memset(B->f, 0x5a, sizeof B->f);
                size_t bad = lx_sub_to_f32(dt, a, b, B->f, n), first = n;
                for (size_t i = 0; i < n; i++) {
                    float want;
                    if (dt == LX_DT_F64) {
                        double x, y;
                        memcpy(&x, a + i * 8, 8);
                        memcpy(&y, b + i * 8, 8);
                        want = (float)(x - y);
                    } else {
                        want = scalar_load(dt, a + i * size) - scalar_load(dt, b + i * size);
                    }
                    assert_true(same_f32(B->f[i], want));
                    if (first == n && !isfinite(want))
                        first = i;
                }
                assert_int_equal(bad, first);
                assert_int_equal(bits_of(B->f[n]), 0x5a5a5a5au);
            }
        }
    }
    free(B);
}

/* lx_sub_to_f32's index of the first non-finite difference: an Inf or a
 * NaN in either input, or a difference of two finite values beyond FLT_MAX,
 * at every position class (first, inside and at the end of a full block,
 * in the last partial one), a second one later not reported. */
static void test_sub_nonfinite(void **state)
{
    (void)state;
    static const size_t n = 1300, at[] = {0, 1, 511, 512, 1023, 1024, 1299};
    uint16_t a[1300], b[1300];
    double da[1300], db[1300];
    float d[1300];
    for (size_t i = 0; i < n; i++) {
        a[i] = lx_f32_to_bf16(1.0f + (float)i);
        b[i] = lx_f32_to_bf16(0.5f);
        da[i] = 1.0 + (double)i;
        db[i] = 0.5;
    }
    assert_int_equal(lx_sub_to_f32(LX_DT_BF16, a, b, d, n), n);
    assert_int_equal(lx_sub_to_f32(LX_DT_F64, da, db, d, n), n);
    for (size_t t = 0; t < sizeof at / sizeof at[0]; t++) {
        size_t p = at[t];
        for (int kind = 0; kind < 4; kind++) {
            uint16_t sa = a[p], sb = b[p];
            /* NaN in a; Inf in b; max - (-max) overflows; a later one too */
            if (kind == 0)
                a[p] = 0x7fc1;
            else if (kind == 1)
                b[p] = 0xff80;
            else {
                a[p] = 0x7f7f;
                b[p] = 0xff7f;
            }
            uint16_t late = a[n - 1];
            if (kind == 3 && p < n - 1)
                a[n - 1] = 0x7f80;
            assert_int_equal(lx_sub_to_f32(LX_DT_BF16, a, b, d, n), p);
            a[p] = sa;
            b[p] = sb;
            a[n - 1] = late;
        }
        double sd = da[p];
        da[p] = 1e300; /* finite in double, Inf in f32 */
        assert_int_equal(lx_sub_to_f32(LX_DT_F64, da, db, d, n), p);
        da[p] = sd;
    }
    /* not transformable: n, nothing written */
    assert_int_equal(lx_sub_to_f32(LX_DT_I32, a, b, d, 7), 7);
}

static void test_add_f32(void **state)
{
    bufs *B = malloc(sizeof *B);
    assert_non_null(B);
    for (size_t t = 0; t < 4; t++) {
        lx_dtype dt = transformable[t];
        size_t size = lx_dtype_bits(dt) / 8;
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            size_t n = lengths[li];
            for (size_t off = 0; off < 3; off++) {
                for (int in_place = 0; in_place < 2; in_place++) {
                    unsigned char *base = B->a + off;
                    unsigned char *dst = in_place ? base : B->out + (off + 2) % 3;
                    for (size_t i = 0; i < n; i++) {
                        random_element(dt, base + i * size);
                        B->g[i] = (float)ldexp((double)(int32_t)rng(), -40);
                    }
                    /* expected results first: dst may overwrite base */
                    for (size_t i = 0; i < n; i++) {
                        unsigned char *e = B->expect + i * size;
                        if (dt == LX_DT_F64) {
                            double x;
                            memcpy(&x, base + i * 8, 8);
                            x += (double)B->g[i];
                            memcpy(e, &x, 8);
                        } else {
                            scalar_store(dt, e, scalar_load(dt, base + i * size) + B->g[i]);
                        }
                    }
                    unsigned char after = dst[n * size];
                    lx_add_f32(dt, base, B->g, dst, n);
                    for (size_t i = 0; i < n; i++)
                        assert_true(same_elem(dt, dst + i * size, B->expect + i * size));
                    assert_int_equal(dst[n * size], after);
                }
            }
        }
    }
    free(B);
}

/* F64 differences and sums are formed in double, not after rounding to f32;
 * the others round the f32 sum once. */
static void test_precision_of_f64_and_rounding(void **state)
{
    double a[2] = {1.0 + 0x1p-30, 1e10}, b[2] = {1.0, 1e10 - 0.5};
    float d[2];
    lx_sub_to_f32(LX_DT_F64, a, b, d, 2);
    assert_true(d[0] == 0x1p-30f);   /* 0 if the inputs were rounded to f32 first */
    assert_true(d[1] == 0.5f);

    double base = 1e10, out;
    float delta = 0x1p-20f;
    lx_add_f32(LX_DT_F64, &base, &delta, &out, 1);
    assert_true(out == 1e10 + 0x1p-20);

    /* bf16 1.0 + 2^-8 is a tie: stays 1.0; + 3 * 2^-9 rounds up */
    uint16_t one = 0x3f80, r;
    delta = 0x1p-8f;
    lx_add_f32(LX_DT_BF16, &one, &delta, &r, 1);
    assert_int_equal(r, 0x3f80);
    delta = 0x3p-9f;
    lx_add_f32(LX_DT_BF16, &one, &delta, &r, 1);
    assert_int_equal(r, 0x3f81);
    /* f16 near the top: 65504 + 15.9 stays finite, + 16 overflows to Inf */
    uint16_t top = 0x7bff;
    delta = 15.9f;
    lx_add_f32(LX_DT_F16, &top, &delta, &r, 1);
    assert_int_equal(r, 0x7bff);
    delta = 16.0f;
    lx_add_f32(LX_DT_F16, &top, &delta, &r, 1);
    assert_int_equal(r, 0x7c00);
}

/* Exponent and mantissa widths of the transformable dtypes. */
static void float_fields(lx_dtype dt, int *ebits, int *mbits)
{
    *ebits = dt == LX_DT_F64 ? 11 : dt == LX_DT_F32 || dt == LX_DT_BF16 ? 8 : 5;
    *mbits = dt == LX_DT_F64 ? 52 : dt == LX_DT_F32 ? 23 : dt == LX_DT_BF16 ? 7 : 10;
}

/* Reference of lx_find_nonfinite from the format definitions: the exponent
 * field (ebits wide, above mbits mantissa bits) all ones. */
static int ref_nonfinite(lx_dtype dt, const unsigned char *p)
{
    int ebits, mbits;
    float_fields(dt, &ebits, &mbits);
    uint64_t u = 0;
    memcpy(&u, p, lx_dtype_bits(dt) / 8); /* little-endian, as safetensors */
    uint64_t e = (u >> mbits) & ((1u << ebits) - 1);
    return e == (1u << ebits) - 1;
}

/* Random bits made finite by clearing the top exponent bit when the
 * exponent is all ones. */
static void finite_element(lx_dtype dt, unsigned char *p)
{
    int ebits, mbits;
    float_fields(dt, &ebits, &mbits);
    uint64_t u = rng();
    memcpy(p, &u, lx_dtype_bits(dt) / 8);
    if (ref_nonfinite(dt, p)) {
        u &= ~((uint64_t)1 << (mbits + ebits - 1));
        memcpy(p, &u, lx_dtype_bits(dt) / 8);
    }
}

/* Every 16-bit pattern alone, then arrays of every length and alignment
 * with one Inf/NaN (or two: the first is found) planted anywhere. */
static void test_find_nonfinite(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t x = (uint16_t)h;
        const unsigned char *p = (const unsigned char *)&x;
        assert_int_equal(lx_find_nonfinite(LX_DT_F16, &x, 1), ref_nonfinite(LX_DT_F16, p) ? 0 : 1);
        assert_int_equal(lx_find_nonfinite(LX_DT_BF16, &x, 1), ref_nonfinite(LX_DT_BF16, p) ? 0 : 1);
    }
    /* in the order of transformable[]: BF16, F16, F32, F64 */
    static const uint64_t infs[4] = {0x7f80, 0x7c00, 0x7f800000u, 0x7ff0000000000000u};
    static const uint64_t nans[4] = {0xffc1, 0xfe01, 0xffc00001u, 0xfff8000000000001u};
    unsigned char *buf = malloc(3001 * 8 + 8);
    assert_non_null(buf);
    for (size_t t = 0; t < 4; t++) {
        lx_dtype dt = transformable[t];
        size_t size = lx_dtype_bits(dt) / 8;
        for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
            size_t n = lengths[li];
            for (size_t off = 0; off < 3; off++) {
                unsigned char *p = buf + off;
                for (size_t i = 0; i < n; i++)
                    finite_element(dt, p + i * size);
                assert_int_equal(lx_find_nonfinite(dt, p, n), n);
                if (n == 0)
                    continue;
                size_t at = (size_t)(rng() % n), at2 = at + (size_t)(rng() % (n - at));
                memcpy(p + at2 * size, &nans[t], size);
                memcpy(p + at * size, &infs[t], size);
                assert_int_equal(lx_find_nonfinite(dt, p, n), at);
                /* the largest finite value (both places) is not flagged */
                unsigned char e[8];
                if (dt == LX_DT_F64) {
                    double d = lx_dtype_max(dt);
                    memcpy(e, &d, 8);
                } else {
                    scalar_store(dt, e, (float)lx_dtype_max(dt));
                }
                memcpy(p + at * size, e, size);
                memcpy(p + at2 * size, e, size);
                assert_int_equal(lx_find_nonfinite(dt, p, n), n);
                /* only the elements asked about are scanned */
                memcpy(p + (n - 1) * size, &infs[t], size);
                assert_int_equal(lx_find_nonfinite(dt, p, n - 1), n - 1);
            }
        }
    }
    free(buf);
    /* the largest finite values, from the format definitions */
    assert_true(lx_dtype_max(LX_DT_F16) == ldexp(2 - ldexp(1, -10), 15));
    assert_true(lx_dtype_max(LX_DT_BF16) == ldexp(2 - ldexp(1, -7), 127));
    assert_true(lx_dtype_max(LX_DT_F32) == ldexp(2 - ldexp(1, -23), 127));
    assert_true(lx_dtype_max(LX_DT_F64) == ldexp(2 - ldexp(1, -52), 1023));
    assert_true(lx_dtype_max(LX_DT_I32) == 0);
    assert_true(lx_f32_to_f16((float)lx_dtype_max(LX_DT_F16)) == 0x7bff);
    assert_true(lx_f32_to_f16(65520.0f) == 0x7c00); /* half a step above: rounds to Inf */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_and_bits),
        cmocka_unit_test(test_bf16_to_f32_all),
        cmocka_unit_test(test_f16_to_f32_all),
        cmocka_unit_test(test_round_trip_bf16),
        cmocka_unit_test(test_round_trip_f16),
        cmocka_unit_test(test_f32_to_bf16_ties),
        cmocka_unit_test(test_f32_to_f16_ties),
        cmocka_unit_test(test_f32_to_bf16_sweep),
        cmocka_unit_test(test_f32_to_f16_sweep),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_nan_stays_nan),
        cmocka_unit_test(test_to_from_f32_arrays),
        cmocka_unit_test(test_sub_to_f32),
        cmocka_unit_test(test_sub_nonfinite),
        cmocka_unit_test(test_add_f32),
        cmocka_unit_test(test_precision_of_f64_and_rounding),
        cmocka_unit_test(test_find_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

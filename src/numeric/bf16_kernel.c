/* bf16_kernel.c - the two element loops over BF16 data that every run
 * spends its time in, in AVX-512 registers (see bf16_kernel.h), for the
 * dtype nearly every model is stored in: a block of output row (the
 * innermost step of factors.c's lx_factors_add_rows) and the difference of
 * two rows (dtype.c's lx_sub_to_f32, which each pass makes of every row).
 * Both give the bits of the portable loops, which test_bf16_kernel checks
 * element by element.  LOXSTREAM_BF16_KERNEL=portable turns them off.
 *
 * Output rows.  factors.c's portable loop makes the same values, but GCC
 * keeps its sums in two vector registers, so each block waits on one chain
 * of rank dependent adds (bench/outrows: 23 ms for a 4096 x 11008 matrix on
 * one Zen 4 core, a memcpy of the anchor 4 ms).  Here 64 columns (four zmm
 * registers, four chains) are made at a time, the anchor read 1 KiB ahead.
 * Each operation is the one factors.c's out_lanes applies, in the same
 * order: c[0] v[0] as a product, then + c[t] v[t] for t = 1 .., each
 * product rounded before its sum (configure builds with -ffp-contract=off,
 * and these are separate multiply and add instructions), the anchor
 * widened exactly and added last, rounded to nearest even with NaNs kept
 * quiet (dtype_elem.h's bf16_encode).  bench/outrows prints a checksum of
 * the result: 16 ms where it took 23.
 *
 * Differences.  GCC's loop for dtype.c's sub_block loads each input twice
 * and tests each difference with three instructions; here two widening
 * loads, a subtraction and one vfpclassps per 16 elements: 3.9 ms for the
 * 4096 x 11008 pair in the cache where it took 5.4, 6.9 from memory where
 * it took 8.7 (one Zen 4 core).  Finite differences are exact either way
 * (both inputs widen exactly); a NaN's bits may differ, as the caller then
 * reports an error and uses none.
 */
#include <stdlib.h>

#include "bf16_kernel.h"
#include "kernel_choice.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_BF16_KERNEL 1
#include <immintrin.h>
#endif

#ifdef HAVE_BF16_KERNEL

#define KERNEL __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))

/* vfpclassps categories: quiet and signalling NaN; and +-Inf with them */
#define FP_NAN 0x81
#define FP_NONFINITE 0x99

/* BF16 bit patterns to f32 as dtype_elem.h's bf16_decode: exact, a
 * signalling NaN made quiet. */
KERNEL static inline __attribute__((always_inline)) __m512 decode(__m256i h)
{
    __m512i u = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
    __mmask16 nan = _mm512_fpclass_ps_mask(_mm512_castsi512_ps(u), FP_NAN);
    return _mm512_castsi512_ps(_mm512_mask_or_epi32(u, nan, u, _mm512_set1_epi32(0x00400000)));
}

/* f32 to BF16 bits (in the low half of each 32-bit lane) as bf16_encode;
 * *bad gets the lanes whose result is an Inf or a NaN. */
KERNEL static inline __attribute__((always_inline)) __m512i encode(__m512 f, __mmask16 *bad)
{
    __m512i u = _mm512_castps_si512(f);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    __mmask16 nan = _mm512_fpclass_ps_mask(f, FP_NAN);
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
    /* the top 16 bits of r are the result: its exponent all ones */
    *bad |= _mm512_fpclass_ps_mask(_mm512_castsi512_ps(r), FP_NONFINITE);
    return _mm512_srli_epi32(r, 16);
}

/* Two encoded vectors (32 lanes of 16 bits in the low halves) to 32 BF16. */
KERNEL static inline __attribute__((always_inline)) __m512i pack(__m512i lo, __m512i hi)
{
    const __m512i idx = _mm512_set_epi16(62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36,
                                         34, 32, 30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6,
                                         4, 2, 0);
    return _mm512_permutex2var_epi16(lo, idx, hi);
}

#ifndef ROWS_AHEAD
#define ROWS_AHEAD 1024
#endif
#define ROWS_STEP(q)                                                                               \
    a##q = _mm512_add_ps(a##q, _mm512_mul_ps(ct, _mm512_loadu_ps(vt + 16 * (q))));

KERNEL static unsigned block_bf16(const float *c, int tt, const float *v, size_t ldv,
                                  const unsigned char *base, unsigned char *dst, size_t len)
{
    __mmask16 bad = 0;
    size_t j = 0;
    for (; j + 64 <= len; j += 64) {
        __m512 c0 = _mm512_set1_ps(c[0]);
        __m512 a0 = _mm512_mul_ps(c0, _mm512_loadu_ps(v + j));
        __m512 a1 = _mm512_mul_ps(c0, _mm512_loadu_ps(v + j + 16));
        __m512 a2 = _mm512_mul_ps(c0, _mm512_loadu_ps(v + j + 32));
        __m512 a3 = _mm512_mul_ps(c0, _mm512_loadu_ps(v + j + 48));
        for (int t = 1; t < tt; t++) {
            const float *vt = v + (size_t)t * ldv + j;
            __m512 ct = _mm512_set1_ps(c[t]);
            ROWS_STEP(0) ROWS_STEP(1) ROWS_STEP(2) ROWS_STEP(3)
        }
        const unsigned char *b = base + 2 * j;
        _mm_prefetch((const char *)(b + ROWS_AHEAD), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + ROWS_AHEAD + 64), _MM_HINT_T0);
        __m512i e0 = encode(_mm512_add_ps(decode(_mm256_loadu_si256((const void *)b)), a0), &bad);
        __m512i e1 =
            encode(_mm512_add_ps(decode(_mm256_loadu_si256((const void *)(b + 32))), a1), &bad);
        __m512i e2 =
            encode(_mm512_add_ps(decode(_mm256_loadu_si256((const void *)(b + 64))), a2), &bad);
        __m512i e3 =
            encode(_mm512_add_ps(decode(_mm256_loadu_si256((const void *)(b + 96))), a3), &bad);
        _mm512_storeu_si512((void *)(dst + 2 * j), pack(e0, e1));
        _mm512_storeu_si512((void *)(dst + 2 * j + 64), pack(e2, e3));
    }
    /* the last len % 64 columns, 16 at a time under a mask */
    for (; j < len; j += 16) {
        size_t w = len - j < 16 ? len - j : 16;
        __mmask16 m = (__mmask16)((1u << w) - 1);
        __m512 a0 = _mm512_mul_ps(_mm512_set1_ps(c[0]), _mm512_maskz_loadu_ps(m, v + j));
        for (int t = 1; t < tt; t++) {
            __m512 ct = _mm512_set1_ps(c[t]);
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(ct, _mm512_maskz_loadu_ps(m, v + t * ldv + j)));
        }
        __m512 s = _mm512_add_ps(decode(_mm256_maskz_loadu_epi16(m, base + 2 * j)), a0);
        __mmask16 b1 = 0;
        __m512i e = encode(s, &b1);
        bad |= b1 & m;
        _mm256_mask_storeu_epi16(dst + 2 * j, m, _mm512_cvtepi32_epi16(e));
    }
    return bad != 0;
}

/* 16 BF16 bit patterns to f32, exactly, without bf16_decode's quieting of
 * signalling NaNs (a NaN difference is an error whatever its bits). */
KERNEL static inline __attribute__((always_inline)) __m512 widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* dst[j] = a[j] - b[j] for j < n, 32 at a time, the last n % 32 under masks;
 * nonzero when one is an Inf or a NaN. */
KERNEL static unsigned sub_bf16(const unsigned char *a, const unsigned char *b, float *dst,
                                size_t n)
{
    __mmask16 bad = 0;
    size_t j = 0;
    for (; j + 32 <= n; j += 32) {
        __m512 d0 = _mm512_sub_ps(widen(_mm256_loadu_si256((const void *)(a + 2 * j))),
                                  widen(_mm256_loadu_si256((const void *)(b + 2 * j))));
        __m512 d1 = _mm512_sub_ps(widen(_mm256_loadu_si256((const void *)(a + 2 * j + 32))),
                                  widen(_mm256_loadu_si256((const void *)(b + 2 * j + 32))));
        bad |= _mm512_fpclass_ps_mask(d0, FP_NONFINITE) | _mm512_fpclass_ps_mask(d1, FP_NONFINITE);
        _mm512_storeu_ps(dst + j, d0);
        _mm512_storeu_ps(dst + j + 16, d1);
    }
    for (; j < n; j += 16) {
        size_t w = n - j < 16 ? n - j : 16;
        __mmask16 m = (__mmask16)((1u << w) - 1);
        __m512 d = _mm512_sub_ps(widen(_mm256_maskz_loadu_epi16(m, a + 2 * j)),
                                 widen(_mm256_maskz_loadu_epi16(m, b + 2 * j)));
        bad |= _mm512_mask_fpclass_ps_mask(m, d, FP_NONFINITE);
        _mm512_mask_storeu_ps(dst + j, m, d);
    }
    return bad != 0;
}

static int cpu_has_kernel(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

#endif /* HAVE_BF16_KERNEL */

int lx_bf16_kernel_on(void)
{
#ifdef HAVE_BF16_KERNEL
    static int usable = -1;
    return lx_kernel_choice(&usable, "LOXSTREAM_BF16_KERNEL", "portable", cpu_has_kernel);
#else
    return 0;
#endif
}

unsigned lx_bf16_out_block(const float *c, int tt, const float *v, size_t ldv,
                           const unsigned char *base, unsigned char *dst, size_t len)
{
#ifdef HAVE_BF16_KERNEL
    return block_bf16(c, tt, v, ldv, base, dst, len);
#else
    (void)c, (void)tt, (void)v, (void)ldv, (void)base, (void)dst, (void)len;
    abort(); /* lx_bf16_kernel_on said no */
#endif
}

unsigned lx_bf16_sub(const void *a, const void *b, float *dst, size_t n)
{
#ifdef HAVE_BF16_KERNEL
    return sub_bf16(a, b, dst, n);
#else
    (void)a, (void)b, (void)dst, (void)n;
    abort(); /* lx_bf16_kernel_on said no */
#endif
}

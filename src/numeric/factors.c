/* factors.c - what is done with lx_factors (rsvd.h): their rows times
 * alpha (lx_factors_rows), the fused output rows in the stored dtype,
 * checked for overflow as they are rounded (lx_factors_add_rows, with the
 * element conversions of dtype_elem.h; BF16 blocks in AVX-512 registers
 * where the CPU has them, bf16_kernel.c), V transposed, the per-rank bounds'
 * arrays, and freeing them. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/dtype.h"
#include "loxstream/linalg.h"
#include "loxstream/simd.h"
#include "dtype_elem.h"
#include "rsvd_impl.h"
#include "bf16_kernel.h"

/* lx_factors_rows scales rows of U by S into a stack buffer of this many
 * floats (64 KiB), so that it needs no allocation and stays one GEMM for a
 * panel of LX_RSVD_PANEL_ROWS rows up to kk = 64. */
#define ROWS_SCRATCH 16384

void lx_factors_free(lx_factors *f)
{
    free(f->Vt);
    free(f->U);
    free(f->S);
    free(f->V);
    free(f->S_block);
    free(f->err_at); /* gap_at is in its block */
    memset(f, 0, sizeof *f);
}

/* Vt of f (k x n) from its V. */
lx_status lx_factors_fill_vt(lx_factors *f)
{
    size_t n = f->n, k = (size_t)f->k;
    if (k == 0)
        return LX_OK;
    f->Vt = malloc(n * k * sizeof(float));
    if (!f->Vt)
        return lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory", f->m, n);
    for (size_t t = 0; t < k; t++)
        for (size_t j = 0; j < n; j++)
            f->Vt[t * n + j] = f->V[j * k + t];
    return LX_OK;
}

lx_status lx_factors_alloc_at(lx_factors *f)
{
    size_t k = (size_t)f->k;
    free(f->err_at);
    f->err_at = f->gap_at = NULL;
    if (k == 0)
        return LX_OK;
    f->err_at = calloc(2 * (k + 1), sizeof(double));
    if (!f->err_at)
        return lx_fail(LX_EFAIL, "SVD of a %zu x %zu matrix: out of memory", f->m, f->n);
    f->gap_at = f->err_at + k + 1;
    return LX_OK;
}

void lx_factors_rows(const lx_factors *f, int kk, float alpha, size_t r0, size_t h,
                     float *dst, size_t ld)
{
    size_t n = f->n, k = (size_t)f->k;
    if (kk > f->k)
        kk = f->k;
    if (kk <= 0) {
        for (size_t i = 0; i < h; i++)
            memset(dst + i * ld, 0, n * sizeof(float));
        return;
    }
    /* (alpha U S) in chunks of the scratch, times V^T (V row-major read
     * transposed); one chunk unless h * kk > ROWS_SCRATCH */
    float us[ROWS_SCRATCH + LX_GEMM_PAD / sizeof(float)]; /* padded: see linalg.h */
    size_t kt = (size_t)kk < ROWS_SCRATCH ? (size_t)kk : ROWS_SCRATCH;
    size_t step = ROWS_SCRATCH / kt;
    for (size_t i0 = 0; i0 < h; i0 += step) {
        size_t hh = h - i0 < step ? h - i0 : step;
        for (size_t t0 = 0; t0 < (size_t)kk; t0 += kt) {
            size_t tt = (size_t)kk - t0 < kt ? (size_t)kk - t0 : kt;
            for (size_t i = 0; i < hh; i++) {
                const float *u = f->U + (r0 + i0 + i) * k + t0;
                for (size_t t = 0; t < tt; t++)
                    us[i * tt + t] = alpha * u[t] * f->S[t0 + t];
            }
            lx_sgemm_panel(hh, n, tt, 1.0f, us, (ptrdiff_t)tt, 1, f->V + t0, 1, (ptrdiff_t)k,
                     t0 ? 1.0f : 0.0f, dst + i0 * ld, (ptrdiff_t)ld, 1);
        }
    }
}

/* Columns per block of lx_factors_add_rows: the block of V^T (2 kk KiB)
 * stays in L1 while a group of ADD_ROWS rows is done, and each row's block
 * is made OUT_LANES columns at a time, its rank-kk sum in vector registers
 * (two AVX-512 registers, four AVX2 ones) from the first product to the
 * rounded, checked element: nothing f32 goes through memory.  Coefficients
 * are made ADD_MAX_K at a time; a rank above that sums its first triplets
 * into an f32 block (lowrank_block) and the last ADD_MAX_K in registers. */
#define ADD_BLOCK LX_DTYPE_BLOCK
#define ADD_ROWS 8
#define ADD_MAX_K 64
#define OUT_LANES 32

/* acc[j] (= or +=) sum_{t<tt} c[t] * v[t*ldv + j] for j < len, in order of t.
 * The full-block case has a constant trip count, so that GCC -O2 vectorises
 * it; both cases add in the same order, so the result does not depend on
 * where a block ends. */
LX_VECTOR_CLONES
static void lowrank_block(const float *restrict c, int tt, const float *restrict v, size_t ldv,
                          float *restrict acc, size_t len, int init)
{
    if (len == ADD_BLOCK) {
        if (init)
            for (size_t j = 0; j < ADD_BLOCK; j++)
                acc[j] = c[0] * v[j];
        for (int t = init ? 1 : 0; t < tt; t++) {
            const float *vt = v + (size_t)t * ldv;
            float ct = c[t];
            for (size_t j = 0; j < ADD_BLOCK; j++)
                acc[j] += ct * vt[j];
        }
        return;
    }
    if (init)
        for (size_t j = 0; j < len; j++)
            acc[j] = c[0] * v[j];
    for (int t = init ? 1 : 0; t < tt; t++) {
        const float *vt = v + (size_t)t * ldv;
        float ct = c[t];
        for (size_t j = 0; j < len; j++)
            acc[j] += ct * vt[j];
    }
}

/* dst[j] = round(base[j] + (acc[j] +) sum_{t<tt} c[t] * v[t*ldv + j]) for
 * j < len (<= OUT_LANES), the sum in order of t (from acc when it is not
 * NULL, else from c[0] * v[0]), as lowrank_block and then lx_add_f32 would
 * give; the top bit of bad16[j] (BF16, F16) or bad32[j] is set when dst[j]
 * rounded to an Inf or a NaN (flags per lane made without a compare, and
 * reduced once per block: not a horizontal OR per call).  Called
 * with len = OUT_LANES (a constant trip count: vectorised) and for the last
 * columns of a row.  The sums are staged in s, so dst may alias base. */
static LX_ALWAYS_INLINE void out_lanes(lx_dtype dt, const float *restrict c, int tt,
                                           const float *restrict v, size_t ldv,
                                           const float *restrict acc, const unsigned char *base,
                                           unsigned char *dst, size_t len, uint16_t *restrict bad16,
                                      uint32_t *restrict bad32)
{
    float a[OUT_LANES], s[OUT_LANES];
    double s64[OUT_LANES];
    int t = 0;
    if (acc) {
        for (size_t j = 0; j < len; j++)
            a[j] = acc[j];
    } else {
        for (size_t j = 0; j < len; j++)
            a[j] = c[0] * v[j];
        t = 1;
    }
    for (; t < tt; t++) {
        const float *vt = v + (size_t)t * ldv;
        float ct = c[t];
        for (size_t j = 0; j < len; j++)
            a[j] += ct * vt[j];
    }
    switch (dt) {
    case LX_DT_BF16:
        for (size_t j = 0; j < len; j++)
            s[j] = load_bf16(base, j) + a[j];
        for (size_t j = 0; j < len; j++) {
            uint16_t h = bf16_encode(s[j]);
            memcpy(dst + 2 * j, &h, 2);
            bad16[j] |= half_nonfinite_bit(h, 0x7f80u);
        }
        break;
    case LX_DT_F16:
        for (size_t j = 0; j < len; j++)
            s[j] = load_f16(base, j) + a[j];
        for (size_t j = 0; j < len; j++) {
            uint16_t h = f16_encode(s[j]);
            memcpy(dst + 2 * j, &h, 2);
            bad16[j] |= half_nonfinite_bit(h, 0x7c00u);
        }
        break;
    case LX_DT_F32:
        for (size_t j = 0; j < len; j++)
            s[j] = load_f32(base, j) + a[j];
        for (size_t j = 0; j < len; j++) {
            memcpy(dst + 4 * j, &s[j], 4);
            bad32[j] |= f32_nonfinite_bit(s[j]);
        }
        break;
    case LX_DT_F64:
        /* added in double, as lx_add_f32 does */
        for (size_t j = 0; j < len; j++)
            s64[j] = load_f64(base, j) + (double)a[j];
        for (size_t j = 0; j < len; j++) {
            store_f64(dst, j, s64[j]);
            bad32[j] |= f64_nonfinite_bit(s64[j]);
        }
        break;
    default:
        break;
    }
}

/* A row's block of len <= ADD_BLOCK columns: out_lanes over its columns;
 * nonzero when one rounded to an Inf or a NaN.  The switch on dt is outside
 * the loop (out_block), so each dtype gets its own loop. */
static LX_ALWAYS_INLINE unsigned out_block_dt(lx_dtype dt, const float *restrict c, int tt,
                                              const float *restrict v, size_t ldv,
                                              const float *restrict acc,
                                              const unsigned char *base, unsigned char *dst,
                                              size_t len, size_t es)
{
    uint16_t bad16[OUT_LANES] = {0};
    uint32_t bad32[OUT_LANES] = {0};
    size_t j = 0;
    for (; j + OUT_LANES <= len; j += OUT_LANES)
        out_lanes(dt, c, tt, v + j, ldv, acc ? acc + j : NULL, base + j * es, dst + j * es,
                  OUT_LANES, bad16, bad32);
    if (j < len)
        out_lanes(dt, c, tt, v + j, ldv, acc ? acc + j : NULL, base + j * es, dst + j * es,
                  len - j, bad16, bad32);
    uint32_t bad = 0;
    for (j = 0; j < OUT_LANES; j++)
        bad |= ((uint32_t)bad16[j] << 16) | bad32[j];
    return bad >> 31;
}

static LX_ALWAYS_INLINE unsigned out_block(lx_dtype dt, const float *restrict c, int tt,
                                           const float *restrict v, size_t ldv,
                                           const float *restrict acc, const unsigned char *base,
                                           unsigned char *dst, size_t len)
{
    switch (dt) {
    case LX_DT_BF16: return out_block_dt(LX_DT_BF16, c, tt, v, ldv, acc, base, dst, len, 2);
    case LX_DT_F16: return out_block_dt(LX_DT_F16, c, tt, v, ldv, acc, base, dst, len, 2);
    case LX_DT_F32: return out_block_dt(LX_DT_F32, c, tt, v, ldv, acc, base, dst, len, 4);
    case LX_DT_F64: return out_block_dt(LX_DT_F64, c, tt, v, ldv, acc, base, dst, len, 8);
    default: return 0;
    }
}

LX_VECTOR_CLONES
size_t lx_factors_add_rows(const lx_factors *f, int kk, float alpha, size_t r0, size_t h,
                           lx_dtype dt, const void *base, void *dst)
{
    size_t n = f->n, k = (size_t)f->k, es = lx_dtype_bits(dt) / 8, first = h * n;
    const unsigned char *b = base;
    unsigned char *d = dst;
    if (kk > f->k)
        kk = f->k;
    if (kk <= 0) {
        if (dst != base)
            memmove(dst, base, h * n * es);
        return lx_find_nonfinite(dt, dst, h * n);
    }
    float c[ADD_MAX_K];
    float acc[ADD_BLOCK];
    int kern = dt == LX_DT_BF16 && lx_bf16_kernel_on();
    for (size_t i0 = 0; i0 < h; i0 += ADD_ROWS) {
        size_t hh = h - i0 < ADD_ROWS ? h - i0 : ADD_ROWS;
        for (size_t j0 = 0; j0 < n; j0 += ADD_BLOCK) {
            size_t len = n - j0 < ADD_BLOCK ? n - j0 : ADD_BLOCK;
            for (size_t i = i0; i < i0 + hh; i++) {
                const float *u = f->U + (r0 + i) * k;
                size_t at = (i * n + j0) * es;
                for (int t0 = 0; t0 < kk; t0 += ADD_MAX_K) {
                    int tt = kk - t0 < ADD_MAX_K ? kk - t0 : ADD_MAX_K;
                    for (int t = 0; t < tt; t++)
                        c[t] = alpha * u[t0 + t] * f->S[t0 + t];
                    const float *v = f->Vt + (size_t)t0 * n + j0;
                    if (t0 + tt < kk) {
                        lowrank_block(c, tt, v, n, acc, len, t0 == 0);
                    } else if (kern && t0 == 0
                                   ? lx_bf16_out_block(c, tt, v, n, b + at, d + at, len)
                                   : out_block(dt, c, tt, v, n, t0 ? acc : NULL, b + at, d + at,
                                               len)) {
                        /* an overflow (rare): where, in row-major order */
                        size_t e = i * n + j0 + lx_find_nonfinite(dt, d + at, len);
                        first = e < first ? e : first;
                    }
                }
            }
        }
    }
    return first;
}

/* synth_values.c - the values of `loxstream synth`'s models: the random
 * streams, the planted low-rank factors, and the rows of base, aligned and
 * fine-tuned generated together and written into the open shards (the
 * shapes are synth_shapes.c's, the shard files synth.c's).
 *
 * THE MODEL (every constant below; the man page restates this block)
 *
 *   All matrices are [out, in] = [m, n], row-major.  Entries are generated
 *   in float32, then rounded once to the output dtype.
 *
 *   base       W_b[i,j] = 0.02 * g                     (g ~ N(0,1))
 *              norm weights: 1 + 0.01 * g
 *   aligned    W_a = W_b + D_a
 *              D_a = sum_{k=1..r_a} s_k u_k v_k^T + bulk_a
 *              r_a = 16, s_k = scale_a * k^-1.0 (power law, decay 1.0),
 *              u_k, v_k orthonormal columns (Gaussian, then Gram-Schmidt),
 *              bulk_a ~ N(0, sigma_a^2) per entry.
 *              Energy split: with rms = 1e-3 the target per-entry RMS of
 *              the delta, the planted part carries 70 % of ||D_a||_F^2 and
 *              the bulk 30 %:  sum s_k^2 = 0.7 * rms^2 * m * n,
 *              sigma_a = sqrt(0.3) * rms = 5.48e-4.  So every matrix, of
 *              any shape, has entries of D_a around 1e-3 (bf16 rounds a
 *              base entry of 0.02 by at most 6.1e-5).
 *   finetuned  W_f = W_a + D_f
 *              D_f = -0.6 * (the top 3 planted terms of D_a)
 *                    + sum_{k=1..r_f} t_k p_k q_k^T + bulk_f
 *              r_f = 8, t_k = scale_f * k^-1.0, p_k, q_k orthonormal and
 *              independent of u, v; same energy split and rms as D_a for
 *              the own part (its planted part: 0.7 * rms^2 * m * n,
 *              sigma_f = 5.48e-4).  The undo term removes 60 % of the
 *              alignment's three strongest directions, the effect LoX is
 *              meant to resist.
 *   1-D        aligned = base + 0.005 * g, finetuned = aligned + 0.005 * g
 *              (large enough to change most bf16 values near 1.0, whose
 *              spacing is 2^-8 below 1 and 2^-7 above).
 *   Ranks are capped at min(m, n); the undo at r_a directions.
 *
 * RANDOM STREAMS
 *   Every value comes from a stream keyed by (seed, stream, tensor name):
 *   key = XXH3_64(name, seed = XXH3_64(stream, seed)), with streams "base",
 *   "aligned", "finetuned" (one row each, keyed further by the row index)
 *   and "aligned.U", "aligned.V", "finetuned.U", "finetuned.V" (one
 *   factor column each).  A row's stream is 16 lanes of xoshiro128+ seeded
 *   by splitmix64; pairs of uniforms become Gaussians by Box-Muller, with
 *   polynomial log/sin/cos written here (accurate to ~1e-6, no libm) so
 *   the loop vectorises and the bytes do not depend on the C library, the
 *   vector width or the number of threads.  Hence: same options, same
 *   bytes; and a tensor's values depend only on its name and shape (a
 *   2-layer llama-7b shares its layers 0-1 with the 32-layer one).
 *
 * Rows of the three models are generated together (they share the base
 * row) by OpenMP threads, each converting a chunk of rows to the dtype
 * and writing it with pwrite; each chunk is handed to the disk at once
 * (lx_st_out_writeback), so that the disk works while rows are generated
 * and the final fdatasync has little left.  Memory: per thread 256 KiB per
 * model and a few rows of floats, plus the planted factors of the current
 * matrix, (m + n) x 24 floats (3.5 MB for a 32000 x 4096 embedding, 13 MB
 * for llama3-70b's 128256 x 8192): under 10 MB for llama-7b.  A fused
 * experts tensor is generated block by block, each block as the 2-D tensor
 * it stacks (lx_synth_tensor_write).
 */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/xxh.h"

#include "loxstream/dtype.h"
#include "loxstream/safetensors.h"
#include "synth_int.h"

/* ---- the model's constants (see the block above) ---------------------- */
#define INIT_STD 0.02f
#define NORM_STD 0.01f
#define NORM_DELTA_STD 0.005f
#define DELTA_RMS 1e-3
#define PLANTED_FRACTION 0.7       /* of the delta's energy; the bulk has the rest */
#define ALIGN_RANK 16
#define ALIGN_DECAY 1.0
#define FT_RANK 8
#define FT_DECAY 1.0
#define FT_UNDO 0.6f
#define FT_UNDONE 3

/* ---- how the work is cut ---------------------------------------------- */
#define CHUNK_BYTES (256u << 10)   /* bytes of one model per pwrite: small enough to stay in L2 */
#define TILE 512                   /* columns per low-rank accumulation tile */
#define LANES 16                   /* PRNG lanes: part of the streams' definition */


/* Clones for AVX-512 and AVX2 machines (the Gaussian kernel runs about 4x
 * and 2x faster than with the default SSE2).  They give the same bytes:
 * lane-wise IEEE arithmetic only, and no FMA contraction (GCC contracts
 * nothing in ISO C mode, -std=c11).  LX_NO_CLONES turns them off, as it
 * does simd.h's. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__) && \
    !defined(LX_NO_CLONES)
#define HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT_CLONES
#endif

/* ---- random streams ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t stream_key(uint64_t seed, const char *stream, const char *tensor)
{
    XXH64_hash_t s = XXH3_64bits_withSeed(stream, strlen(stream), seed);
    return XXH3_64bits_withSeed(tensor, strlen(tensor), s);
}

/* The stream of one row (or one factor column) of a keyed stream. */
static uint64_t row_key(uint64_t key, uint64_t row)
{
    uint64_t x = key ^ (row * 0xD1B54A32D192ED03ull);
    return splitmix64(&x);
}

static inline float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* n standard Gaussians of stream `key`.  Each step advances LANES
 * xoshiro128+ generators twice and turns the two uniforms of a lane into
 * two Gaussians (Box-Muller).  The loop body has no float comparisons and
 * no branches (selects on integers only), which GCC needs to vectorise it
 * without -fno-trapping-math. */
HOT_CLONES
static void gaussians(uint64_t key, float *out, size_t n)
{
    uint32_t s0[LANES], s1[LANES], s2[LANES], s3[LANES];
    for (int l = 0; l < LANES; l++) {
        uint64_t a = splitmix64(&key), b = splitmix64(&key);
        s0[l] = (uint32_t)a, s1[l] = (uint32_t)(a >> 32);
        s2[l] = (uint32_t)b, s3[l] = (uint32_t)(b >> 32) | 1u; /* never all zero */
    }
    float tail[2 * LANES];
    for (size_t i = 0; i < n; i += 2 * LANES) {
        float *o = n - i >= 2 * LANES ? out + i : tail;
#pragma omp simd
        for (int l = 0; l < LANES; l++) {
            uint32_t r1 = s0[l] + s3[l], t = s1[l] << 9;
            s2[l] ^= s0[l], s3[l] ^= s1[l], s1[l] ^= s2[l], s0[l] ^= s3[l], s2[l] ^= t;
            s3[l] = (s3[l] << 11) | (s3[l] >> 21);
            uint32_t r2 = s0[l] + s3[l];
            t = s1[l] << 9;
            s2[l] ^= s0[l], s3[l] ^= s1[l], s1[l] ^= s2[l], s0[l] ^= s3[l], s2[l] ^= t;
            s3[l] = (s3[l] << 11) | (s3[l] >> 21);

            /* radius sqrt(-2 ln u), u in (0, 1] from the top 24 bits */
            float u = (float)(int32_t)((r1 >> 8) + 1) * 0x1p-24f;
            uint32_t ub = float_to_bits(u);
            int32_t e = (int32_t)(ub >> 23) - 127;
            uint32_t mb = (ub & 0x007fffffu) | 0x3f800000u;  /* mantissa in [1, 2) */
            uint32_t big = mb > 0x3fb504f3u ? 1u : 0u;        /* > sqrt(2): halve it */
            float m = bits_to_float(mb - (big << 23));
            e += (int32_t)big;
            float z = (m - 1.0f) / (m + 1.0f), z2 = z * z;   /* ln m = 2 atanh z */
            float lnm = 2.0f * z * (1.0f + z2 * (1.0f / 3 + z2 * (1.0f / 5 + z2 * (1.0f / 7 + z2 * (1.0f / 9)))));
            float x = -2.0f * ((float)e * 0.693147181f + lnm);
            float y = bits_to_float(0x5f3759dfu - (float_to_bits(x) >> 1)); /* 1/sqrt(x), refined */
            y = y * (1.5f - 0.5f * x * y * y);
            y = y * (1.5f - 0.5f * x * y * y);
            y = y * (1.5f - 0.5f * x * y * y);
            float radius = x * y;

            /* angle: quadrant from the top 2 bits, phase in [-pi/4, pi/4) */
            uint32_t q = r2 >> 30;
            float ph = ((float)(int32_t)((r2 >> 6) & 0xffffffu) * 0x1p-24f - 0.5f) * 1.57079633f;
            float p2 = ph * ph;
            float sn = ph * (1.0f + p2 * (-1.0f / 6 + p2 * (1.0f / 120 + p2 * (-1.0f / 5040))));
            float cs = 1.0f + p2 * (-0.5f + p2 * (1.0f / 24 + p2 * (-1.0f / 720 + p2 * (1.0f / 40320))));
            float c = (q & 1) ? sn : cs, s = (q & 1) ? cs : sn;
            c = bits_to_float(float_to_bits(c) ^ (((q + 1) & 2) << 30));
            s = bits_to_float(float_to_bits(s) ^ ((q & 2) << 30));
            o[l] = radius * c;
            o[LANES + l] = radius * s;
        }
        if (o == tail)
            memcpy(out + i, tail, (n - i) * sizeof *out);
    }
}

/* ---- planted low-rank factors --------------------------------------------- */

_Static_assert(FT_RANK <= ALIGN_RANK, "lowrank.s holds both ranks");

typedef struct lowrank {
    unsigned r;
    float *U, *V;                  /* column-major: U[k*m + i], V[k*n + j] */
    float s[ALIGN_RANK];           /* planted singular values */
} lowrank;

/* Gram-Schmidt, twice (enough for float columns), sums in double. */
static void orthonormalize(float *Q, size_t len, unsigned r)
{
    for (unsigned k = 0; k < r; k++) {
        float *q = Q + (size_t)k * len;
        for (int pass = 0; pass < 2; pass++)
            for (unsigned j = 0; j < k; j++) {
                const float *p = Q + (size_t)j * len;
                double d = 0;
                for (size_t i = 0; i < len; i++)
                    d += (double)p[i] * q[i];
                for (size_t i = 0; i < len; i++)
                    q[i] = (float)(q[i] - d * p[i]);
            }
        double nn = 0;
        for (size_t i = 0; i < len; i++)
            nn += (double)q[i] * q[i];
        double inv = nn > 0 ? 1.0 / sqrt(nn) : 0;
        for (size_t i = 0; i < len; i++)
            q[i] = (float)(q[i] * inv);
    }
}

static lx_status lowrank_make(lowrank *L, uint64_t seed, const char *stream, const char *tensor,
                              uint64_t m, uint64_t n, unsigned rank, double decay)
{
    memset(L, 0, sizeof *L);
    L->r = rank;
    if ((uint64_t)L->r > m)
        L->r = (unsigned)m;
    if ((uint64_t)L->r > n)
        L->r = (unsigned)n;
    L->U = malloc((size_t)(m * L->r) * sizeof *L->U); /* r >= 1: m, n >= 1 */
    L->V = malloc((size_t)(n * L->r) * sizeof *L->V);
    if (!L->U || !L->V) {
        free(L->U);
        free(L->V);
        return lx_fail(LX_EFAIL, "out of memory (low-rank factors of '%s')", tensor);
    }
    char sname[32];
    snprintf(sname, sizeof sname, "%s.U", stream);
    uint64_t ku = stream_key(seed, sname, tensor);
    snprintf(sname, sizeof sname, "%s.V", stream);
    uint64_t kv = stream_key(seed, sname, tensor);
    for (unsigned k = 0; k < L->r; k++) {
        gaussians(row_key(ku, k), L->U + (size_t)k * m, (size_t)m);
        gaussians(row_key(kv, k), L->V + (size_t)k * n, (size_t)n);
    }
    orthonormalize(L->U, (size_t)m, L->r);
    orthonormalize(L->V, (size_t)n, L->r);

    double wsum = 0;
    for (unsigned k = 1; k <= L->r; k++)
        wsum += pow(k, -2 * decay);
    double energy = PLANTED_FRACTION * DELTA_RMS * DELTA_RMS * (double)m * (double)n;
    double scale = L->r ? sqrt(energy / wsum) : 0;
    for (unsigned k = 1; k <= L->r; k++)
        L->s[k - 1] = (float)(scale * pow(k, -decay));
    return LX_OK;
}

static void lowrank_free(lowrank *L)
{
    free(L->U);
    free(L->V);
    memset(L, 0, sizeof *L);
}

/* ---- generating rows ------------------------------------------------------- */

typedef struct tensor_gen {
    const synth_tensor *t;
    int nmodels;
    uint64_t key[NMODELS];         /* row streams: base values, aligned bulk, finetuned bulk */
    lowrank la, lf;
    unsigned undone;
} tensor_gen;

/* acc[j] += sum_{k0 <= k < k1} c[k] * V[k*n + j], adding in order of k.
 * Inlined so that it is compiled into each clone of gen_row. */
static inline __attribute__((always_inline)) void
accumulate(float *restrict acc, const float *V, size_t n, size_t len, const float *c, unsigned k0,
           unsigned k1)
{
    unsigned k = k0;
    for (; k + 4 <= k1; k += 4) {
        const float *v0 = V + (size_t)k * n, *v1 = v0 + n, *v2 = v1 + n, *v3 = v2 + n;
        float c0 = c[k], c1 = c[k + 1], c2 = c[k + 2], c3 = c[k + 3];
#pragma omp simd
        for (size_t j = 0; j < len; j++)
            acc[j] = (((acc[j] + c0 * v0[j]) + c1 * v1[j]) + c2 * v2[j]) + c3 * v3[j];
    }
    for (; k < k1; k++) {
        const float *v0 = V + (size_t)k * n;
        float c0 = c[k];
#pragma omp simd
        for (size_t j = 0; j < len; j++)
            acc[j] = acc[j] + c0 * v0[j];
    }
}

/* Row i of the models, in float32: wb (base), wa (aligned), wf (finetuned,
 * when g->nmodels == 3).  Each buffer holds n floats. */
HOT_CLONES
static void gen_row(const tensor_gen *g, uint64_t i, float *restrict wb, float *restrict wa,
                    float *restrict wf)
{
    const synth_tensor *t = g->t;
    size_t n = (size_t)t->cols;
    int ft = g->nmodels == NMODELS;
    gaussians(row_key(g->key[M_BASE], i), wb, n);
    gaussians(row_key(g->key[M_ALIGNED], i), wa, n);
    if (ft)
        gaussians(row_key(g->key[M_FINETUNED], i), wf, n);

    if (t->ndim == 1) {
#pragma omp simd
        for (size_t j = 0; j < n; j++) {
            float b = 1.0f + NORM_STD * wb[j];
            float a = b + NORM_DELTA_STD * wa[j];
            wb[j] = b;
            wa[j] = a;
        }
        if (ft) {
#pragma omp simd
            for (size_t j = 0; j < n; j++)
                wf[j] = wa[j] + NORM_DELTA_STD * wf[j];
        }
        return;
    }

    const lowrank *la = &g->la, *lf = &g->lf;
    size_t m = (size_t)t->rows;
    float ca[ALIGN_RANK], cf[FT_RANK];
    for (unsigned k = 0; k < la->r; k++)
        ca[k] = la->s[k] * la->U[(size_t)k * m + i];
    for (unsigned k = 0; k < lf->r; k++)
        cf[k] = lf->s[k] * lf->U[(size_t)k * m + i];
    const float bulk = (float)(sqrt(1 - PLANTED_FRACTION) * DELTA_RMS);

    for (size_t j0 = 0; j0 < n; j0 += TILE) {
        size_t len = n - j0 < TILE ? n - j0 : TILE;
        float top[TILE], acc[TILE];
        memset(top, 0, len * sizeof *top);
        accumulate(top, la->V + j0, n, len, ca, 0, g->undone);
        memcpy(acc, top, len * sizeof *acc);
        accumulate(acc, la->V + j0, n, len, ca, g->undone, la->r);
        float *b = wb + j0, *a = wa + j0;
#pragma omp simd
        for (size_t j = 0; j < len; j++) {
            float base = INIT_STD * b[j];
            b[j] = base;
            a[j] = base + (acc[j] + bulk * a[j]);
        }
        if (!ft)
            continue;
#pragma omp simd
        for (size_t j = 0; j < len; j++)
            acc[j] = -FT_UNDO * top[j];
        accumulate(acc, lf->V + j0, n, len, cf, 0, lf->r);
        float *f = wf + j0;
#pragma omp simd
        for (size_t j = 0; j < len; j++)
            f[j] = a[j] + (acc[j] + bulk * f[j]);
    }
}

/* The first failure of a parallel region, with its message (messages are
 * per thread: the region's caller records it again on its own thread). */
typedef struct region_status {
    int failed;
    lx_status st;
    char *msg;                     /* lx_err_save */
} region_status;

static void region_fail(region_status *rs, lx_status st)
{
#pragma omp critical(synth_region_fail)
    {
        if (!rs->failed) {
            rs->st = st;
            rs->msg = lx_err_save();
#pragma omp atomic write
            rs->failed = 1;
        }
    }
}

static int region_failed(region_status *rs)
{
    int f;
#pragma omp atomic read
    f = rs->failed;
    return f;
}

/* Generate tensor g->t and write it at row `first` of entry idx of the open
 * shards. */
static lx_status write_tensor(const tensor_gen *g, lx_dtype dt, lx_st_out *outs, size_t idx,
                              uint64_t first)
{
    const synth_tensor *t = g->t;
    size_t n = (size_t)t->cols, esize = lx_dtype_bits(dt) / 8;
    size_t row_bytes = n * esize;
    size_t rows_per_chunk = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;
    if (rows_per_chunk > t->rows)
        rows_per_chunk = (size_t)t->rows;
    uint64_t nchunks = (t->rows + rows_per_chunk - 1) / rows_per_chunk;
    region_status rs = {0};

#pragma omp parallel
    {
        float *w = malloc(3 * n * sizeof *w);
        unsigned char *chunk = malloc((size_t)g->nmodels * rows_per_chunk * row_bytes);
        if (!w || !chunk)
            region_fail(&rs, lx_fail(LX_EFAIL, "out of memory (row buffers of '%s')", t->name));
#pragma omp for schedule(dynamic, 1)
        for (uint64_t c = 0; c < nchunks; c++) {
            if (region_failed(&rs))
                continue;
            uint64_t r0 = c * rows_per_chunk;
            size_t nr = (size_t)(t->rows - r0 < rows_per_chunk ? t->rows - r0 : rows_per_chunk);
            size_t chunk_bytes = nr * row_bytes;
            for (size_t r = 0; r < nr; r++) {
                gen_row(g, r0 + r, w, w + n, w + 2 * n);
                for (int md = 0; md < g->nmodels; md++)
                    lx_from_f32(dt, w + md * n, chunk + md * chunk_bytes + r * row_bytes, n);
            }
            for (int md = 0; md < g->nmodels; md++) {
                uint64_t off = (first + r0) * row_bytes;
                lx_status st = lx_st_out_write(&outs[md], idx, off, chunk + md * chunk_bytes,
                                               chunk_bytes);
                if (st == LX_OK)
                    st = lx_st_out_writeback(&outs[md], idx, off, chunk_bytes);
                if (st != LX_OK) {
                    region_fail(&rs, st);
                    break;
                }
            }
        }
        free(w);
        free(chunk);
    }
    return rs.failed ? lx_err_restore(rs.st, rs.msg) : LX_OK;
}

static lx_status tensor_gen_init(tensor_gen *g, const synth_tensor *t, const lx_synth_opts *o)
{
    memset(g, 0, sizeof *g);
    g->t = t;
    g->nmodels = o->with_finetuned ? NMODELS : 2;
    for (int md = 0; md < NMODELS; md++)
        g->key[md] = stream_key(o->seed, lx_synth_model_dirs[md], t->name);
    if (t->ndim == 1)
        return LX_OK;
    lx_status st = lowrank_make(&g->la, o->seed, "aligned", t->name, t->rows, t->cols,
                                ALIGN_RANK, ALIGN_DECAY);
    if (st == LX_OK && o->with_finetuned)
        st = lowrank_make(&g->lf, o->seed, "finetuned", t->name, t->rows, t->cols, FT_RANK,
                          FT_DECAY);
    g->undone = g->la.r < FT_UNDONE ? g->la.r : FT_UNDONE;
    return st;
}

static void tensor_gen_free(tensor_gen *g)
{
    lowrank_free(&g->la);
    lowrank_free(&g->lf);
}


lx_status lx_synth_tensor_write(const synth_tensor *t, const lx_synth_opts *o, lx_st_out *outs,
                                size_t idx)
{
    /* a fused tensor's blocks are generated as the 2-D tensors they stack */
    synth_tensor part = *t;
    if (t->nparts > 1) {
        part.ndim = 2;
        part.rows = t->rows / t->nparts;
        part.nmat = part.nparts = 1;
        part.nbytes = t->nbytes / t->nparts;
    }
    lx_status st = LX_OK;
    for (unsigned i = 0; i < t->nparts && st == LX_OK; i++) {
        lx_synth_part_name(t, i, part.name, sizeof part.name);
        tensor_gen g;
        st = tensor_gen_init(&g, &part, o);
        if (st == LX_OK)
            st = write_tensor(&g, o->dtype, outs, idx, (uint64_t)i * part.rows);
        tensor_gen_free(&g);
    }
    return st;
}

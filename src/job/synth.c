/* synth.c - generate a Llama-shaped base / aligned / fine-tuned triplet
 * (see synth.h), streaming rows straight into the shards.
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
 * matrix, (m + n) x 24 floats (3.5 MB for a 32000 x 4096 embedding):
 * under 10 MB for llama-7b.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>

#include "config.h"
#include "loxstream/checkpoint.h"
#include "loxstream/progress.h"
#include "loxstream/safetensors.h"
#include "loxstream/outdir.h"
#include "loxstream/synth.h"
#include "loxstream/fs.h"
#include "loxstream/parse.h"

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

enum { M_BASE, M_ALIGNED, M_FINETUNED, NMODELS };
static const char *const model_dirs[NMODELS] = {"base", "aligned", "finetuned"};

/* Clones for AVX-512 and AVX2 machines (the Gaussian kernel runs about 4x
 * and 2x faster than with the default SSE2).  They give the same bytes:
 * lane-wise IEEE arithmetic only, and no FMA contraction (GCC contracts
 * nothing in ISO C mode, -std=c11). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__ELF__)
#define HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT_CLONES
#endif

/* ---- presets ------------------------------------------------------------ */

lx_status lx_synth_preset(const char *name, lx_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = LX_DT_BF16;
    o->seed = 1;
    o->with_finetuned = 1;
    if (!strcmp(name, "tiny")) {
        /* odd widths on purpose: vector tails and non-square factors */
        o->hidden = 64, o->intermediate = 172, o->layers = 2, o->vocab = 250;
        o->shard_size = 96 << 10;  /* 256 KiB per model in bf16: 4 shards */
    } else if (!strcmp(name, "small")) {
        o->hidden = 512, o->intermediate = 1376, o->layers = 4, o->vocab = 4000;
        o->shard_size = 16 << 20;  /* 32 MiB per model in bf16: 2 shards */
    } else if (!strcmp(name, "llama-7b")) {
        o->hidden = 4096, o->intermediate = 11008, o->layers = 32, o->vocab = 32000;
        o->shard_size = 2ull << 30; /* 12.55 GiB per model in bf16: 7 shards */
    } else {
        return lx_fail(LX_EUSAGE, "unknown preset '%s' (expected tiny, small or llama-7b)", name);
    }
    return LX_OK;
}

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

/* ---- the tensors --------------------------------------------------------- */

typedef struct synth_tensor {
    char name[80];
    int ndim;                      /* 1 (norms) or 2 */
    uint64_t rows, cols;           /* a 1-D tensor is one row */
    uint64_t nbytes;               /* in the output dtype */
} synth_tensor;

typedef struct synth_plan {
    size_t n;
    synth_tensor *t;
    size_t nshards;
    size_t *first;                 /* shard s holds tensors [first[s], first[s+1]) */
    char **shard_names;
    uint64_t model_bytes;          /* tensor bytes of one model */
} synth_plan;

static void plan_free(synth_plan *p)
{
    free(p->t);
    free(p->first);
    if (p->shard_names)
        for (size_t s = 0; s < p->nshards; s++)
            free(p->shard_names[s]);
    free(p->shard_names);
    memset(p, 0, sizeof *p);
}

static void add_tensor(synth_plan *p, size_t esize, const char *name, uint64_t rows, uint64_t cols,
                       int ndim)
{
    synth_tensor *t = &p->t[p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->rows = rows;
    t->cols = cols;
    t->nbytes = rows * cols * esize;
    p->model_bytes += t->nbytes;
}

/* The tensors in the order transformers lists them, then greedy shards:
 * a shard takes tensors while it stays within shard_size; a tensor larger
 * than shard_size gets a shard of its own. */
static lx_status plan_build(const lx_synth_opts *o, synth_plan *p)
{
    memset(p, 0, sizeof *p);
    size_t esize = lx_dtype_bits(o->dtype) / 8;
    uint64_t h = o->hidden, in = o->intermediate, v = o->vocab;
    size_t cap = 3 + 9 * (size_t)o->layers;
    p->t = calloc(cap, sizeof *p->t);
    p->first = calloc(cap + 1, sizeof *p->first);
    if (!p->t || !p->first) {
        plan_free(p);
        return lx_fail(LX_EFAIL, "out of memory (%zu tensors)", cap);
    }
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    char name[80];
    add_tensor(p, esize, "model.embed_tokens.weight", v, h, 2);
    for (uint64_t l = 0; l < o->layers; l++) {
        for (int a = 0; a < 4; a++) {
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".self_attn.%s.weight", l, attn[a]);
            add_tensor(p, esize, name, h, h, 2);
        }
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.gate_proj.weight", l);
        add_tensor(p, esize, name, in, h, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.up_proj.weight", l);
        add_tensor(p, esize, name, in, h, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.down_proj.weight", l);
        add_tensor(p, esize, name, h, in, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".input_layernorm.weight", l);
        add_tensor(p, esize, name, 1, h, 1);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".post_attention_layernorm.weight", l);
        add_tensor(p, esize, name, 1, h, 1);
    }
    add_tensor(p, esize, "model.norm.weight", 1, h, 1);
    add_tensor(p, esize, "lm_head.weight", v, h, 2);

    uint64_t used = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (i == 0 || used >= o->shard_size || p->t[i].nbytes > o->shard_size - used) {
            p->first[p->nshards++] = i;
            used = 0;
        }
        used += p->t[i].nbytes;
    }
    p->first[p->nshards] = p->n;

    p->shard_names = calloc(p->nshards, sizeof *p->shard_names);
    if (!p->shard_names) {
        plan_free(p);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (size_t s = 0; s < p->nshards; s++) {
        char buf[64];
        /* a single shard is model.safetensors without an index, as transformers writes it */
        if (p->nshards == 1)
            snprintf(buf, sizeof buf, "model.safetensors");
        else
            snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, p->nshards);
        if (!(p->shard_names[s] = strdup(buf))) {
            plan_free(p);
            return lx_fail(LX_EFAIL, "out of memory");
        }
    }
    return LX_OK;
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

/* Generate tensor g->t (entry idx of the open shards) and write it. */
static lx_status write_tensor(const tensor_gen *g, lx_dtype dt, lx_st_out *outs, size_t idx)
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
                lx_status st = lx_st_out_write(&outs[md], idx, r0 * row_bytes,
                                               chunk + md * chunk_bytes, chunk_bytes);
                if (st == LX_OK)
                    st = lx_st_out_writeback(&outs[md], idx, r0 * row_bytes, chunk_bytes);
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
        g->key[md] = stream_key(o->seed, model_dirs[md], t->name);
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

/* ---- the small files of a model directory ------------------------------------ */

static lx_status write_json(const char *dir, const char *name, json_t *root, size_t flags)
{
    if (!root)
        return lx_fail(LX_EFAIL, "out of memory (%s)", name);
    char *text = json_dumps(root, flags);
    json_decref(root);
    char *path = lx_path_join(dir, name);
    lx_status st = LX_OK;
    if (!text || !path) {
        st = lx_fail(LX_EFAIL, "out of memory (%s)", name);
    } else {
        size_t len = strlen(text);
        char *buf = realloc(text, len + 2);
        if (!buf) {
            st = lx_fail(LX_EFAIL, "out of memory (%s)", name);
        } else {
            text = buf;
            memcpy(text + len, "\n", 2);
            st = lx_write_file_atomic(path, text, len + 1);
        }
    }
    free(text);
    free(path);
    return st;
}

static const char *torch_dtype(lx_dtype dt)
{
    return dt == LX_DT_BF16 ? "bfloat16" : dt == LX_DT_F16 ? "float16" : "float32";
}

/* As transformers writes config files: sorted keys, two-space indent. */
#define CONFIG_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10))

static lx_status write_config(const char *dir, int model, const lx_synth_opts *o)
{
    uint64_t head_dim = 128;
    while (o->hidden % head_dim)
        head_dim /= 2;
    uint64_t heads = o->hidden / head_dim;
    json_t *seed = o->seed <= INT64_MAX ? json_integer((json_int_t)o->seed) : NULL;
    if (!seed) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, o->seed);
        seed = json_string(buf);
    }
    json_t *cfg = json_pack(
        "{s:[s], s:b, s:f, s:i, s:i, s:s, s:I, s:f, s:I, s:i, s:s, s:I, s:I, s:I, s:i, s:f,"
        " s:n, s:f, s:b, s:s, s:b, s:I,"
        " s:{s:s, s:s, s:o, s:s}}",
        "architectures", "LlamaForCausalLM",
        "attention_bias", 0,
        "attention_dropout", 0.0,
        "bos_token_id", 1,
        "eos_token_id", 2,
        "hidden_act", "silu",
        "hidden_size", (json_int_t)o->hidden,
        "initializer_range", 0.02,
        "intermediate_size", (json_int_t)o->intermediate,
        "max_position_embeddings", 4096,
        "model_type", "llama",
        "num_attention_heads", (json_int_t)heads,
        "num_hidden_layers", (json_int_t)o->layers,
        "num_key_value_heads", (json_int_t)heads,
        "pretraining_tp", 1,
        "rms_norm_eps", 1e-05,
        "rope_scaling",
        "rope_theta", 10000.0,
        "tie_word_embeddings", 0,
        "torch_dtype", torch_dtype(o->dtype),
        "use_cache", 1,
        "vocab_size", (json_int_t)o->vocab,
        "loxstream_synth",
        "generator", "loxstream " PACKAGE_VERSION " synth",
        "model", model_dirs[model],
        "seed", seed,
        "note", "synthetic weights for testing; not a trained model");
    return write_json(dir, "config.json", cfg, CONFIG_FLAGS);
}

static lx_status write_model_files(const char *dir, int model, const lx_synth_opts *o)
{
    lx_status st = write_config(dir, model, o);
    if (st != LX_OK)
        return st;
    json_t *gen = json_pack("{s:b, s:i, s:i}", "_from_model_config", 1, "bos_token_id", 1,
                            "eos_token_id", 2);
    if ((st = write_json(dir, "generation_config.json", gen, CONFIG_FLAGS)) != LX_OK)
        return st;

    static const char note[] =
        "placeholder written by loxstream synth: the weights are random, there is no real "
        "vocabulary; this three-token tokenizer only lets tools load the directory";
    json_t *tcfg = json_pack("{s:b, s:b, s:s, s:s, s:s, s:n, s:I, s:s, s:b, s:s}",
                             "add_bos_token", 1, "add_eos_token", 0, "bos_token", "<s>",
                             "eos_token", "</s>", "unk_token", "<unk>", "pad_token",
                             "model_max_length", (json_int_t)4096,
                             "tokenizer_class", "PreTrainedTokenizerFast",
                             "clean_up_tokenization_spaces", 0, "loxstream_placeholder", note);
    if ((st = write_json(dir, "tokenizer_config.json", tcfg, CONFIG_FLAGS)) != LX_OK)
        return st;

    /* A valid tokenizers file (WordLevel over the special tokens); the
     * library ignores the extra top-level key that says what it is. */
    const char *fmt = "{s:s, s:n, s:n, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b},"
                      " {s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b}],"
                      " s:n, s:{s:s}, s:n, s:n, s:{s:s, s:{s:i, s:i, s:i}, s:s}, s:s}";
    json_t *tok = json_pack(fmt, "version", "1.0", "truncation", "padding", "added_tokens",
                            "id", 0, "content", "<unk>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "id", 1, "content", "<s>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "id", 2, "content", "</s>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "normalizer", "pre_tokenizer", "type", "Whitespace", "post_processor",
                            "decoder", "model", "type", "WordLevel", "vocab", "<unk>", 0, "<s>", 1,
                            "</s>", 2, "unk_token", "<unk>", "loxstream_placeholder", note);
    return write_json(dir, "tokenizer.json", tok, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

/* ---- directories ------------------------------------------------------------ */

/* A model directory may be created, or be an existing empty directory. */
static lx_status check_model_dir(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return LX_OK;
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot check the output directory", path);
    }
    if (!S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: exists and is not a directory (synth never overwrites)", path);
    DIR *d = opendir(path);
    if (!d)
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot read the output directory", path);
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    if (!empty)
        return lx_fail(LX_EOUTPUT, "%s: exists and is not empty (synth never overwrites a model: "
                       "remove it or choose another OUTDIR)", path);
    return LX_OK;
}

/* ---- the job ------------------------------------------------------------------- */

typedef struct synth_run {
    const lx_synth_opts *o;
    synth_plan plan;
    int nmodels;
    char *dirs[NMODELS];
    lx_progress progress;
    uint64_t done_items, done_bytes;
} synth_run;

/* Shard s of every model: NAME.partial files filled, synced, then renamed. */
static lx_status write_shard(synth_run *run, size_t s)
{
    const synth_plan *p = &run->plan;
    size_t first = p->first[s], count = p->first[s + 1] - first;
    lx_st_entry *entries = calloc(count, sizeof *entries);
    if (!entries)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t k = 0; k < count; k++) {
        const synth_tensor *t = &p->t[first + k];
        entries[k].name = t->name;
        entries[k].dtype = run->o->dtype;
        entries[k].ndim = t->ndim;
        entries[k].shape[0] = t->ndim == 1 ? t->cols : t->rows;
        entries[k].shape[1] = t->cols;
    }
    static const char *const meta_keys[] = {"format"}, *const meta_values[] = {"pt"};
    lx_st_layout layout;
    lx_status st = lx_st_layout_build(&layout, entries, count, meta_keys, meta_values, 1);
    if (st != LX_OK) {
        free(entries);
        return st;
    }

    lx_st_out outs[NMODELS];
    char *partial[NMODELS] = {0}, *final[NMODELS] = {0};
    int opened = 0;
    for (int md = 0; md < run->nmodels && st == LX_OK; md++) {
        final[md] = lx_path_join(run->dirs[md], p->shard_names[s]);
        partial[md] = final[md] ? malloc(strlen(final[md]) + sizeof ".partial") : NULL;
        if (!partial[md]) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        sprintf(partial[md], "%s.partial", final[md]);
        if ((st = lx_st_out_open(&outs[md], partial[md], &layout, 0)) == LX_OK)
            opened++;
    }
    for (size_t k = 0; k < count && st == LX_OK; k++) {
        tensor_gen g;
        st = tensor_gen_init(&g, &p->t[first + k], run->o);
        if (st == LX_OK)
            st = write_tensor(&g, run->o->dtype, outs, k);
        tensor_gen_free(&g);
        run->done_items++;
        run->done_bytes += p->t[first + k].nbytes * (uint64_t)run->nmodels;
        lx_progress_update(&run->progress, run->done_items, run->done_bytes, p->t[first + k].name);
    }
    for (int md = 0; md < opened && st == LX_OK; md++)
        st = lx_st_out_sync(&outs[md]);
    for (int md = 0; md < opened; md++) {
        lx_status cst = lx_st_out_close(&outs[md]);
        if (st == LX_OK)
            st = cst;
    }
    for (int md = 0; md < opened && st == LX_OK; md++)
        if (rename(partial[md], final[md]) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", partial[md], final[md]);
    if (st != LX_OK)
        for (int md = 0; md < opened; md++)
            unlink(partial[md]); /* half-written: useless, and never mistaken for a shard */
    for (int md = 0; md < NMODELS; md++) {
        free(partial[md]);
        free(final[md]);
    }
    lx_st_layout_free(&layout);
    free(entries);
    return st;
}

static lx_status write_indexes(synth_run *run)
{
    const synth_plan *p = &run->plan;
    if (p->nshards == 1) {
        for (int md = 0; md < run->nmodels; md++) {
            lx_status st = lx_sync_dir(run->dirs[md]);
            if (st != LX_OK)
                return st;
        }
        return LX_OK;
    }
    const char **names = malloc(p->n * sizeof *names), **shards = malloc(p->n * sizeof *shards);
    lx_status st = LX_OK;
    if (!names || !shards)
        st = lx_fail(LX_EFAIL, "out of memory");
    for (size_t s = 0; s < p->nshards && st == LX_OK; s++)
        for (size_t i = p->first[s]; i < p->first[s + 1]; i++) {
            names[i] = p->t[i].name;
            shards[i] = p->shard_names[s];
        }
    for (int md = 0; md < run->nmodels && st == LX_OK; md++) {
        char *path = lx_path_join(run->dirs[md], "model.safetensors.index.json");
        if (!path) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        st = lx_index_write(path, p->model_bytes, p->n, names, shards);
        free(path);
    }
    free(names);
    free(shards);
    return st;
}

static lx_status check_opts(const lx_synth_opts *o)
{
    if (o->dtype != LX_DT_BF16 && o->dtype != LX_DT_F16 && o->dtype != LX_DT_F32)
        return lx_fail(LX_EUSAGE, "synth: dtype %s is not one of BF16, F16, F32", lx_dtype_name(o->dtype));
    /* bounds that keep names, shapes and JSON integers far from overflow */
    if (o->hidden < 1 || o->hidden > (1u << 20) || o->intermediate < 1 || o->intermediate > (1u << 22) ||
        o->vocab < 1 || o->vocab > (1u << 24) || o->layers < 1 || o->layers > 4096)
        return lx_fail(LX_EUSAGE, "synth: sizes out of range (hidden %" PRIu64 ", intermediate %" PRIu64
                       ", layers %" PRIu64 ", vocab %" PRIu64 ")", o->hidden, o->intermediate, o->layers, o->vocab);
    if (o->shard_size < 1)
        return lx_fail(LX_EUSAGE, "synth: the shard size must be at least 1 byte");
    return LX_OK;
}

lx_status lx_synth_write(const char *outdir, const lx_synth_opts *o)
{
    lx_status st = check_opts(o);
    if (st != LX_OK)
        return st;
    synth_run run = {.o = o, .nmodels = o->with_finetuned ? NMODELS : 2};

    struct stat sb;
    if (stat(outdir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: exists and is not a directory", outdir);
    for (int md = 0; md < run.nmodels; md++) {
        if (!(run.dirs[md] = lx_path_join(outdir, model_dirs[md]))) {
            st = lx_fail(LX_EFAIL, "out of memory");
            goto out;
        }
        if ((st = check_model_dir(run.dirs[md])) != LX_OK)
            goto out;
    }
    if ((st = plan_build(o, &run.plan)) != LX_OK)
        goto out;
    /* room for every model before the first byte (as apply checks) */
    char resolved[PATH_MAX];
    size_t existing;
    uint64_t need = (run.plan.model_bytes + (1u << 20) * (uint64_t)(run.plan.nshards + 1)) *
                    (uint64_t)run.nmodels;
    if ((st = lx_outdir_resolve(outdir, resolved, &existing)) != LX_OK ||
        (st = lx_outdir_check_space(outdir, resolved, existing, need, need)) != LX_OK)
        goto out;
    for (int md = 0; md < run.nmodels && st == LX_OK; md++)
        if ((st = lx_mkdir_p(run.dirs[md])) == LX_OK)
            st = write_model_files(run.dirs[md], md, o);
    if (st != LX_OK)
        goto out;

    lx_progress_begin(&run.progress, "synth", run.plan.n,
                      run.plan.model_bytes * (uint64_t)run.nmodels, o->quiet, &o->report);
    for (size_t s = 0; s < run.plan.nshards && st == LX_OK; s++)
        st = write_shard(&run, s);
    if (st == LX_OK)
        st = write_indexes(&run); /* last: a directory with an index is complete */
    if (st == LX_OK) {
        lx_progress_end(&run.progress);
        if (!o->quiet) {
            char size[32];
            lx_format_size(run.plan.model_bytes, size, sizeof size);
            for (int md = 0; md < run.nmodels; md++)
                lx_say(&o->report, "synth: %s: %zu tensors, %zu shard%s, %s (%s)", run.dirs[md],
                       run.plan.n, run.plan.nshards, run.plan.nshards == 1 ? "" : "s", size,
                       lx_dtype_name(o->dtype));
        }
    }
out:
    plan_free(&run.plan);
    for (int md = 0; md < NMODELS; md++)
        free(run.dirs[md]);
    return st;
}

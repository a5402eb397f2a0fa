/* engine.c - the streaming engine of apply, lora and analyze (see
 * engine.h): shared options, inputs and plan, memory budget, read-ahead,
 * the rows of dW = aligned - base (converted and subtracted on the fly,
 * checked finite) and the factorisation of one matrix.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/dtype.h"
#include "loxstream/engine.h"
#include "loxstream/factor.h"
#include "loxstream/parse.h"
#include "loxstream/linalg.h"
#include "loxstream/safetensors.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"

void lx_engine_opts_default(lx_engine_opts *e)
{
    memset(e, 0, sizeof *e);
    lx_rsvd_opts_default(&e->svd);
    e->max_memory = (uint64_t)1 << 30;
    e->threads = lx_online_cpus();
}

lx_status lx_engine_filter(lx_inputs *in, const lx_engine_opts *e)
{
    return lx_filter_init(&in->filter, e->include, e->exclude);
}

/* Open base, aligned and the nmore other models, then plan them. */
static lx_status open_and_plan(lx_inputs *in, const lx_engine_opts *e, int rank, int copy_unmatched,
                               size_t nmore, const char *const *paths, const char *const *roles,
                               lx_checkpoint **more, lx_plan *more_plans)
{
    /* apply --factors without --base: the plan pairs aligned with itself
     * (every matrix matched; dW is never formed, the factors give it) */
    lx_status st = lx_checkpoint_open(e->base_path ? e->base_path : e->aligned_path, &in->base);
    if (st == LX_OK)
        st = lx_checkpoint_open(e->aligned_path, &in->aligned);
    for (size_t j = 0; j < nmore && st == LX_OK; j++)
        st = lx_checkpoint_open(paths[j], &more[j]);
    if (st == LX_OK && e->factors)
        st = lx_factor_store_check(e->factors, e->base_path ? in->base : NULL, in->aligned);
    if (st == LX_OK)
        st = lx_plan_build(in->base, in->aligned, &in->filter, rank, copy_unmatched, &in->plan);
    for (size_t j = 0; j < nmore && st == LX_OK; j++)
        if ((st = lx_plan_build(in->base, more[j], &in->filter, rank, 1, &more_plans[j])) == LX_OK)
            for (size_t i = 0; i < more_plans[j].n; i++)
                more_plans[j].items[i].role = roles[j];
    return st;
}

lx_status lx_engine_open(lx_inputs *in, const lx_engine_opts *e, int rank, int copy_unmatched)
{
    return open_and_plan(in, e, rank, copy_unmatched, 0, NULL, NULL, NULL, NULL);
}

lx_status lx_engine_open_more(lx_inputs *in, const lx_engine_opts *e, int rank, size_t n,
                              const char *const *paths, const char *const *roles,
                              lx_checkpoint **more, lx_plan *more_plans)
{
    return open_and_plan(in, e, rank, 0, n, paths, roles, more, more_plans);
}

/* ---- memory --------------------------------------------------------------- */

uint64_t lx_engine_svd_bytes(const lx_engine_opts *e, const lx_plan_item *it, int rank)
{
    lx_rsvd_opts so = e->svd;
    so.rank = rank;
    so.threads = e->threads; /* a lane's panels, or one SVD's: before lx_linalg_init too */
    return lx_rsvd_workspace_bytes(it->m, it->n, &so);
}

/* Bytes of the inputs a transformed item reads (both tensors). */
static uint64_t item_input_bytes(const lx_plan_item *it)
{
    if (it->action == LX_ACT_COPY)
        return 0;
    return it->aligned->nbytes + (it->base ? it->base->nbytes : 0);
}

/* Without a memory limit, whether each tensor's pages are dropped once it
 * is done (as within a limit): when what the run reads and writes (every
 * item's inputs, and an output of the aligned model's size) exceeds the
 * RAM, the page cache cannot keep it to the end anyway.  Dropping the pages
 * early then only spares the kernel's reclaim, and it keeps the pages the
 * run cycles through few: on a virtual machine that returns free memory to
 * its host, every page it touches for the first time costs a host fault
 * (bench/RESULTS.md: a cold 7B run in 38.5-47.7 s of which 51-63 CPU-s this
 * way, against 51.5-52.4 s and 92-93 CPU-s). */
static int data_exceed_ram(const lx_plan *p)
{
    uint64_t data = 0;
    for (size_t i = 0; i < p->n; i++) {
        const lx_plan_item *it = &p->items[i];
        /* read (a copy reads its aligned tensor), then written */
        data += (it->action == LX_ACT_COPY ? it->aligned->nbytes : item_input_bytes(it)) +
                it->aligned->nbytes;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    lx_test_ram(&ram);
    return ram && data > ram;
}

lx_status lx_engine_check_memory(const lx_engine_opts *e, const lx_plan *p, uint64_t worst,
                                 const char *worst_name, lx_budget *b)
{
    char a[32], c[32], d[32], q[LX_NAME_QUOTE];
    memset(b, 0, sizeof *b);
    b->ahead = LX_PREFETCH_AHEAD;
    uint64_t need = worst + LX_FIXED_OVERHEAD;
    if (need > e->max_memory)
        return lx_fail(LX_EUSAGE, "--max-memory %s is too small: tensor '%s' needs %s of working "
                       "memory (with %s of fixed overhead)",
                       lx_format_size(e->max_memory, a, sizeof a),
                       lx_st_escape_name(worst_name ? worst_name : "", q, sizeof q),
                       lx_format_size(need, c, sizeof c),
                       lx_format_size(LX_FIXED_OVERHEAD, d, sizeof d));
    lx_memlimit_detect(&b->limit);
    uint64_t L = b->limit.bytes;
    if (!L) {
        b->evict = data_exceed_ram(p);
        return LX_OK;
    }
    if (need > L)
        return lx_fail(LX_EUSAGE, "the memory limit of this process's cgroup, %s (%s), is too "
                       "small: tensor '%s' needs %s of working memory (with %s of fixed "
                       "overhead); ask for more memory (sbatch --mem)",
                       lx_format_size(L, a, sizeof a), b->limit.file,
                       lx_st_escape_name(worst_name ? worst_name : "", q, sizeof q),
                       lx_format_size(need, c, sizeof c),
                       lx_format_size(LX_FIXED_OVERHEAD, d, sizeof d));
    const lx_plan_item *big = NULL;
    for (size_t i = 0; i < p->n; i++)
        if (!big || item_input_bytes(&p->items[i]) > item_input_bytes(big))
            big = &p->items[i];
    uint64_t item = big ? item_input_bytes(big) : 0, slack = L / 8;
    uint64_t first = need + 2 * item + slack;
    b->ahead = first < L ? (L - first) / 2 : 0;
    if (b->ahead > LX_PREFETCH_AHEAD)
        b->ahead = LX_PREFETCH_AHEAD;
    b->evict = 1;
    if (big && need + item + slack > L)
        lx_warn("tensor '%s': its inputs (%s) do not fit in the page cache that the memory "
                "limit %s (%s) leaves beside %s of working memory: they are read from storage "
                "again on every pass",
                lx_st_escape_name(big->aligned->name, q, sizeof q),
                lx_format_size(item, a, sizeof a), lx_format_size(L, c, sizeof c),
                b->limit.file, lx_format_size(need, d, sizeof d));
    return LX_OK;
}

void lx_budget_reserve_writes(lx_budget *b)
{
    if (!b->limit.bytes) {
        b->behind = LX_WRITE_BEHIND;
        return;
    }
    b->behind = b->ahead / 4 < LX_WRITE_BEHIND ? b->ahead / 4 : LX_WRITE_BEHIND;
    b->ahead -= b->behind;
}

void lx_budget_describe(const lx_budget *b, char *buf, size_t size)
{
    char a[32], r[32];
    lx_format_size(b->ahead, r, sizeof r);
    if (b->limit.bytes)
        snprintf(buf, size, "memory limit %s (cgroup v%d %s), read-ahead %s",
                 lx_format_size(b->limit.bytes, a, sizeof a), b->limit.version, b->limit.file, r);
    else
        snprintf(buf, size, "no memory limit found, read-ahead %s%s", r,
                 b->evict ? ", pages dropped after each tensor (the data exceed the RAM)"
                          : ", output pages dropped once on the disk");
}

/* ---- read-ahead ------------------------------------------------------------ */

void lx_read_ahead_start(lx_read_ahead *ra, const lx_budget *b)
{
    ra->ahead = b->ahead;
    ra->evict = b->evict;
    /* without a prefetcher the run goes on, only slower */
    if (lx_prefetch_start(&ra->pf) != LX_OK)
        ra->pf = NULL;
}

void lx_read_ahead_set(lx_read_ahead *ra, const lx_plan_item *const *items, size_t n)
{
    if (!ra->pf) {
        if (n > 1 && items[1] && ra->ahead)
            lx_plan_item_advise(items[1], MADV_WILLNEED);
        return;
    }
    lx_range r[LX_PREFETCH_MAX];
    lx_prefetch_set(ra->pf, r, lx_prefetch_item_ranges(items, n, ra->ahead, r));
}

void lx_read_ahead_done(const lx_read_ahead *ra, const lx_plan_item *it)
{
    /* a prefetcher behind the computation (the lanes can make it) would
     * read the dropped pages back from storage, and keep them */
    if (ra->evict)
        lx_prefetch_cancel(ra->pf);
    lx_plan_item_release(it, ra->evict);
}

void lx_read_ahead_stop(lx_read_ahead *ra)
{
    lx_prefetch_stop(ra->pf);
    ra->pf = NULL;
}

/* ---- the rows of dW ---------------------------------------------------------- */

static int in_parallel(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

/* One element of a transformable dtype as a double (exact). */
static double elem_f64(lx_dtype dt, const unsigned char *p)
{
    if (dt == LX_DT_F64) {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
    }
    float f;
    lx_to_f32(dt, p, &f, 1);
    return f;
}

/* Row a - b of n elements, a of dtype da and b of dtype db (mixed: a base
 * in F32, the aligned model in BF16), as lx_sub_to_f32 computes it for
 * one dtype: both converted exactly, subtracted in f32 (in double when
 * either is F64, then rounded to f32). */
#define MIXED_BLOCK 256
static void sub_mixed_to_f32(lx_dtype da, const unsigned char *a, lx_dtype db,
                             const unsigned char *b, float *dst, size_t n)
{
    size_t ea = lx_dtype_bits(da) / 8, eb = lx_dtype_bits(db) / 8;
    if (da == LX_DT_F64 || db == LX_DT_F64) {
        for (size_t j = 0; j < n; j++)
            dst[j] = (float)(elem_f64(da, a + j * ea) - elem_f64(db, b + j * eb));
        return;
    }
    float fb[MIXED_BLOCK];
    for (size_t j = 0; j < n; j += MIXED_BLOCK) {
        size_t c = n - j < MIXED_BLOCK ? n - j : MIXED_BLOCK;
        lx_to_f32(da, a + j * ea, dst + j, c);
        lx_to_f32(db, b + j * eb, fb, c);
        for (size_t q = 0; q < c; q++)
            dst[j + q] -= fb[q];
    }
}

/* Convert and subtract rows [r0, r0+h) of one matrix; reject NaN/Inf. */
static lx_status delta_rows(const lx_plan_item *it, const unsigned char *al,
                            const unsigned char *ba, uint64_t batch_index, size_t r0, size_t h,
                            float *dst, size_t ld)
{
    size_t n = it->n;
    lx_dtype da = it->aligned->dtype, db = it->base->dtype;
    size_t ea = lx_dtype_bits(da) / 8, eb = lx_dtype_bits(db) / 8;
    size_t bad = SIZE_MAX; /* the first non-finite difference, i * n + column */
    /* serial when called by one of the threads of a pass (rsvd.c) */
#pragma omp parallel for schedule(static) num_threads(lx_linalg_threads()) if (h * n >= (1u << 16) && !in_parallel())
    for (size_t i = 0; i < h; i++) {
        size_t off = (r0 + i) * n;
        float *row = dst + i * ld;
        size_t c;
        if (da == db) {
            c = lx_sub_to_f32(da, al + off * ea, ba + off * eb, row, n);
        } else {
            sub_mixed_to_f32(da, al + off * ea, db, ba + off * eb, row, n);
            c = lx_find_nonfinite(LX_DT_F32, row, n); /* one dtype: in the loop */
        }
        if (c != n) {
#pragma omp critical
            if (i * n + c < bad)
                bad = i * n + c;
        }
    }
    if (bad != SIZE_MAX) {
        size_t r = r0 + bad / n, c = bad % n;
        double a = elem_f64(da, al + (r * n + c) * ea), b = elem_f64(db, ba + (r * n + c) * eb);
        char where[64] = "";
        if (it->batch > 1)
            snprintf(where, sizeof where, "matrix %" PRIu64 ", ", batch_index);
        return lx_fail(LX_EINPUT,
                       "tensor '%s': %srow %zu, column %zu: %s %g, base %g: the difference "
                       "is not finite (NaN or Inf in an input)",
                       it->aligned->name, where, r, c, it->role ? it->role : "aligned", a, b);
    }
    return LX_OK;
}

lx_status lx_delta_rows(const lx_plan_item *it, uint64_t b, size_t r0, size_t h, float *dst,
                        size_t ld)
{
    uint64_t mn = it->m * it->n;
    uint64_t abytes = mn * (lx_dtype_bits(it->aligned->dtype) / 8);
    uint64_t bbytes = mn * (lx_dtype_bits(it->base->dtype) / 8);
    return delta_rows(it, it->aligned->data + b * abytes, it->base->data + b * bbytes, b, r0, h,
                      dst, ld);
}

/* The row source of the randomized SVD: called by several threads at once
 * (rsvd.h), so it does not hash; finish_item hashes the inputs afterwards. */
static lx_status delta_src_rows(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    const lx_delta_src *d = ctx;
    return lx_delta_rows(d->item, d->b, r0, h, dst, ld);
}

lx_rowsrc lx_delta_rowsrc(lx_delta_src *ctx, const lx_plan_item *it, uint64_t b)
{
    ctx->item = it;
    ctx->b = b;
    lx_rowsrc src = {(size_t)it->m, (size_t)it->n, delta_src_rows, ctx};
    return src;
}

/* ---- factoring one matrix ------------------------------------------------------ */

int lx_engine_rank(const lx_plan_item *it, int rank)
{
    uint64_t mn = it->m < it->n ? it->m : it->n;
    return (uint64_t)rank > mn ? (int)mn : rank;
}

lx_status lx_engine_factor(const lx_engine_opts *e, const lx_plan_item *it, uint64_t b, int rank,
                           lx_factors *f, lx_factor_stats *s)
{
    lx_rsvd_opts so = e->svd;
    so.rank = rank;
    so.seed = lx_matrix_seed(e->svd.seed, it->aligned->name, b);
    int *all = NULL;
    if (e->certify_all && !e->factors && rank > 1) {
        if (!(all = malloc((size_t)(rank - 1) * sizeof *all)))
            return lx_fail(LX_EFAIL, "out of memory");
        for (int r = 1; r < rank; r++)
            all[r - 1] = r;
        so.ranks = all;
        so.nranks = (size_t)(rank - 1);
    }
    lx_delta_src ds;
    lx_rowsrc src = lx_delta_rowsrc(&ds, it, b);
    double s0 = lx_now();
    lx_status st = e->factors ? lx_factor_store_load(e->factors, it, b, rank, so.tol, f)
                              : lx_rsvd_topk(&src, &so, f);
    s->seconds += lx_now() - s0;
    free(all);
    if (st != LX_OK)
        return st;
    lx_engine_count(s, f->converged, f->gap);
    if (e->factors)
        return LX_OK; /* read, not computed */
    s->flops += 4.0 * (double)f->passes * (double)it->m * (double)it->n * (double)f->l;
    return LX_OK;
}

void lx_engine_count(lx_factor_stats *s, int converged, double gap)
{
    s->matrices++;
    if (!converged) {
        s->unconverged++;
        s->ungapped += gap < LX_RSVD_GAP_MIN;
    }
}

/* The top r of the rank-k result B = U_k S_k V_k^T, against A_r: the
 * solver's own bound at r (f->err_at, rsvd.h) when it has one.  Otherwise
 * (factors that carry none) by perturbation from err_est: B is
 * within eps = err_est ||S_k|| / (1 - err_est) of A_k (err_est is relative
 * to ||A_k|| <= ||S_k|| + eps), so sigma_j(A) lies within eps of s_j for
 * j <= k (Weyl).  With Q the projector on B's top-r left vectors,
 * B_r - A_r = Q (B - A_k) - (I - Q) A_r + Q (A_k - A_r): the first term is
 * at most eps, the others at most (sigma_1 + sigma_r+1) ||sin Theta||_F,
 * and Wedin's theorem (residuals of B's top-r triplets against A_k at most
 * eps each side) gives ||sin Theta||_F <= sqrt(2) eps / delta, delta =
 * s_r - sigma_r+1 >= s_r - s_r+1 - eps.  Relative to ||A_r|| >= the norm
 * of (s_j - eps)_+, j < r.  No gap (delta <= 0), or err_est >= 1: 1. */
void lx_engine_prefix(const lx_factors *f, int r, double tol, double *err, double *gap,
                      int *converged)
{
    if (r >= f->k) {
        *err = f->err_est;
        *gap = f->gap;
        *converged = f->converged;
        return;
    }
    if (r >= 1 && f->err_at) {
        *err = f->err_at[r];
        *gap = f->gap_at[r];
        *converged = *err <= tol;
        return;
    }
    double s2 = 0, e = f->err_est;
    for (int j = 0; j < f->k; j++)
        s2 += (double)f->S[j] * f->S[j];
    double eps = e < 1 ? e * sqrt(s2) / (1 - e) : INFINITY;
    double s1 = f->S[0], sr = r > 0 ? f->S[r - 1] : 0, sr1 = f->S[r];
    *gap = sr > 0 ? (sr - sr1 - eps) / sr : 0;
    if (*gap < -1 || !(*gap == *gap))
        *gap = -1;
    double delta = sr - sr1 - eps, nr = 0;
    for (int j = 0; j < r; j++) {
        double d = f->S[j] - eps;
        nr += d > 0 ? d * d : 0;
    }
    if (r <= 0 || eps == 0)
        *err = 0;
    else if (!(delta > 0) || !(nr > 0))
        *err = 1;
    else
        *err = eps * (1 + sqrt(2.0) * (s1 + sr1 + 2 * eps) / delta) / sqrt(nr);
    *converged = *err <= tol;
}

void lx_engine_warn_unconverged(const lx_engine_opts *e, const char *job,
                                const lx_factor_stats *s)
{
    lx_rsvd_warn_unconverged(job, s->unconverged, s->ungapped, s->matrices, &e->svd);
}

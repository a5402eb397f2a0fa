/* engine.c - the streaming engine of apply, lora and analyze (see
 * engine.h): shared options, inputs and plan, memory budget, read-ahead,
 * the rows of dW = aligned - base (converted and subtracted on the fly,
 * checked finite) and the factorisation of one matrix.
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/dtype.h"
#include "loxstream/engine.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"
#include "loxstream/sys.h"

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

/* Open base, aligned and (path set) a third model, then plan them. */
static lx_status open_and_plan(lx_inputs *in, const lx_engine_opts *e, int rank, int copy_unmatched,
                               const char *path, const char *role, lx_checkpoint **third,
                               lx_plan *third_plan)
{
    lx_status st = lx_checkpoint_open(e->base_path, &in->base);
    if (st == LX_OK)
        st = lx_checkpoint_open(e->aligned_path, &in->aligned);
    if (st == LX_OK && path)
        st = lx_checkpoint_open(path, third);
    if (st == LX_OK)
        st = lx_plan_build(in->base, in->aligned, &in->filter, rank, copy_unmatched, &in->plan);
    if (st != LX_OK || !path)
        return st;
    if ((st = lx_plan_build(in->base, *third, &in->filter, rank, 1, third_plan)) == LX_OK)
        for (size_t i = 0; i < third_plan->n; i++)
            third_plan->items[i].role = role;
    return st;
}

lx_status lx_engine_open(lx_inputs *in, const lx_engine_opts *e, int rank, int copy_unmatched)
{
    return open_and_plan(in, e, rank, copy_unmatched, NULL, NULL, NULL, NULL);
}

lx_status lx_engine_open_third(lx_inputs *in, const lx_engine_opts *e, int rank, const char *path,
                               const char *role, lx_checkpoint **third, lx_plan *third_plan)
{
    return open_and_plan(in, e, rank, 0, path, role, third, third_plan);
}

/* ---- memory --------------------------------------------------------------- */

uint64_t lx_engine_svd_bytes(const lx_engine_opts *e, const lx_plan_item *it, int rank)
{
    lx_rsvd_opts so = e->svd;
    so.rank = rank;
    return lx_rsvd_workspace_bytes(it->m, it->n, &so);
}

lx_status lx_engine_check_memory(const lx_engine_opts *e, uint64_t worst, const char *worst_name)
{
    if (worst + LX_FIXED_OVERHEAD <= e->max_memory)
        return LX_OK;
    char a[32], b[32], c[32], q[LX_NAME_QUOTE];
    return lx_fail(LX_EUSAGE, "--max-memory %s is too small: tensor '%s' needs %s of working "
                   "memory (with %s of fixed overhead)",
                   lx_format_size(e->max_memory, a, sizeof a),
                   lx_st_escape_name(worst_name ? worst_name : "", q, sizeof q),
                   lx_format_size(worst + LX_FIXED_OVERHEAD, b, sizeof b),
                   lx_format_size(LX_FIXED_OVERHEAD, c, sizeof c));
}

/* ---- read-ahead ------------------------------------------------------------ */

void lx_read_ahead_start(lx_read_ahead *ra)
{
    /* without a prefetcher the run goes on, only slower */
    if (lx_prefetch_start(&ra->pf) != LX_OK)
        ra->pf = NULL;
}

void lx_read_ahead_set(lx_read_ahead *ra, const lx_plan_item *const *items, size_t n)
{
    if (!ra->pf) {
        if (n > 1 && items[1])
            lx_plan_item_advise(items[1], MADV_WILLNEED);
        return;
    }
    lx_range r[LX_PREFETCH_MAX];
    lx_prefetch_set(ra->pf, r, lx_prefetch_item_ranges(items, n, LX_PREFETCH_AHEAD, r));
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

/* Convert and subtract rows [r0, r0+h) of one matrix; reject NaN/Inf. */
static lx_status delta_rows(const lx_plan_item *it, const unsigned char *al,
                            const unsigned char *ba, size_t esize, uint64_t batch_index,
                            size_t r0, size_t h, float *dst, size_t ld)
{
    size_t n = it->n;
    size_t bad = SIZE_MAX; /* the first non-finite difference, i * n + column */
    /* serial when called by one of the threads of a pass (rsvd.c) */
#pragma omp parallel for schedule(static) if (h * n >= (1u << 16) && !in_parallel())
    for (size_t i = 0; i < h; i++) {
        size_t off = (r0 + i) * n * esize;
        size_t c = lx_sub_to_f32(it->aligned->dtype, al + off, ba + off, dst + i * ld, n);
        if (c != n) {
#pragma omp critical
            if (i * n + c < bad)
                bad = i * n + c;
        }
    }
    if (bad != SIZE_MAX) {
        size_t r = r0 + bad / n, c = bad % n;
        float a, b;
        lx_to_f32(it->aligned->dtype, al + (r * n + c) * esize, &a, 1);
        lx_to_f32(it->aligned->dtype, ba + (r * n + c) * esize, &b, 1);
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
    size_t esize = lx_dtype_bits(it->aligned->dtype) / 8;
    uint64_t mat_bytes = it->m * it->n * esize;
    return delta_rows(it, it->aligned->data + b * mat_bytes, it->base->data + b * mat_bytes,
                      esize, b, r0, h, dst, ld);
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
    lx_delta_src ds;
    lx_rowsrc src = lx_delta_rowsrc(&ds, it, b);
    double s0 = lx_now();
    lx_status st = lx_rsvd_topk(&src, &so, f);
    s->seconds += lx_now() - s0;
    if (st != LX_OK)
        return st;
    lx_engine_count(s, f->converged, f->gap);
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

/* The top r of the rank-k result B = U_k S_k V_k^T, against A_r.  B is
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

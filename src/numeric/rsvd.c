/* rsvd.c - the SVD engine's entry points (see rsvd.h): options, the choice
 * between the randomized solver (krylov.c) and the dense path
 * (rsvd_dense.c), the deflation of a steep spectrum's leading directions
 * (a second randomized run on A - U_t S_t V_t^T, see rsvd_bound.c), the
 * workspace the memory checks count, seeds and the run's warning. */
#include "config.h"
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "loxstream/xxh.h"

#include "loxstream/linalg.h"
#include "loxstream/simd.h"
#include "rsvd_impl.h"

void lx_rsvd_opts_default(lx_rsvd_opts *o)
{
    o->rank = 6;
    o->oversample = 10;
    o->passes = 0;
    o->tol = 3e-4;
    o->max_passes = 12;
    o->seed = 0;
    o->exact = 0;
    o->ranks = NULL;
    o->nranks = 0;
    o->threads = 0;
}

/* ---- small helpers ------------------------------------------------------ */

void *lx_rsvd_alloc(size_t count, lx_status *st, size_t m, size_t n)
{
    if (*st != LX_OK)
        return NULL;
    /* lx_falloc: padded for BLIS's small-matrix over-reads (linalg.h) */
    void *p = lx_falloc(count ? count : 1);
    if (!p)
        *st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory "
                      "(%zu floats)", m, n, count);
    return p;
}


/* Sum of squares in double: 16 partial sums (x[i] into sum i mod 16), so
 * that the first pass (||A||_F^2 of every panel) does not wait on add
 * latency, added up in a fixed tree; each clone of simd.h vectorises the
 * same sums in the same order, so all give the same bits. */
LX_VECTOR_CLONES double lx_rsvd_norm2(const float *x, size_t rows)
{
    double s[16] = {0};
    size_t i = 0;
    for (; i + 16 <= rows; i += 16)
        for (int j = 0; j < 16; j++)
            s[j] += (double)x[i + j] * (double)x[i + j];
    double t = 0;
    for (; i < rows; i++)
        t += (double)x[i] * (double)x[i];
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++)
            s[j] += s[j + w];
    return s[0] + t;
}

size_t lx_rsvd_block_width(size_t m, size_t n, size_t k, int p)
{
    size_t mn = m < n ? m : n;
    size_t l = k + (size_t)(p > 0 ? p : 0);
    return l < mn ? l : mn;
}

size_t lx_rsvd_clamp_rank(size_t m, size_t n, int k)
{
    size_t mn = m < n ? m : n;
    return (size_t)k < mn ? (size_t)k : mn;
}

int lx_rsvd_pass_cap(const lx_rsvd_opts *o)
{
    if (o->passes > 0)
        return o->passes;
    return o->max_passes > 2 ? o->max_passes : 2;
}

/* Factored densely: on request, or when fewer than LX_RSVD_KRYLOV_BLOCKS
 * blocks fit in the smaller side (min(m, n) < 4 l): the Krylov space would
 * be cut short (below 2 l to plain subspace iteration), and a dense SVD in
 * double of so thin a matrix (O(m n min(m, n)): under a millisecond at
 * 8 x 768, a few at 60 x 172) costs less than the passes, whose small SVDs
 * and QRs alone take ~1 ms each. */
static int use_exact(size_t m, size_t n, const lx_rsvd_opts *o)
{
    size_t k = lx_rsvd_clamp_rank(m, n, o->rank);
    size_t mn = m < n ? m : n;
    return o->exact || mn < LX_RSVD_KRYLOV_BLOCKS * lx_rsvd_block_width(m, n, k, o->oversample);
}

/* ---- deflation of a steep spectrum's leading directions ------------------ */

/* The float rounding of the merged factors, in units of FLT_EPSILON of the
 * norm the bound at a rank below k is relative to. */
#define MERGE_ROUNDING 4.0

/* count doubles (malloc), as lx_rsvd_alloc. */
static double *alloc_doubles(size_t count, lx_status *st, size_t m, size_t n)
{
    if (*st != LX_OK)
        return NULL;
    double *p = malloc((count ? count : 1) * sizeof *p);
    if (!p)
        *st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory", m, n);
    return p;
}

typedef struct deflated_src {
    const lx_rowsrc *A;
    const lx_factors *lead;
    size_t t;
} deflated_src;

/* Rows of A - U_t S_t V_t^T. */
static lx_status deflated_rows(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    const deflated_src *D = ctx;
    lx_status st = D->A->rows(D->A->ctx, r0, h, dst, ld);
    if (st != LX_OK)
        return st;
    const lx_factors *f = D->lead;
    size_t n = f->n, k = (size_t)f->k;
    for (size_t i = 0; i < h; i++)
        for (size_t t = 0; t < D->t; t++) {
            float c = f->U[(r0 + i) * k + t] * f->S[t];
            const float *v = f->Vt + t * n;
            float *row = dst + i * ld;
            for (size_t j = 0; j < n; j++)
                row[j] -= c * v[j];
        }
    return LX_OK;
}

/* Q (rows x k, column-major, double): columns [0, t) of the row-major X
 * (rows x kx) then [0, k - t) of Y (rows x ky), made orthonormal (Gram-
 * Schmidt twice, in double, so that Q Q^T reproduces their span to double
 * precision: the lead's float vectors are orthonormal only to float
 * precision, which moved the merged result by 1e-6).  A column with nothing
 * left outside the earlier ones (the second run's vectors of a
 * rank-deficient A are noise, and may lie in the lead's span) is replaced
 * by the first unit vector that has. */
static void orth_join(const float *X, size_t kx, size_t t, const float *Y, size_t ky, size_t k,
                      size_t rows, double *Q)
{
    for (size_t i = 0; i < rows; i++) {
        for (size_t j = 0; j < t; j++)
            Q[i + j * rows] = X[i * kx + j];
        for (size_t j = t; j < k; j++)
            Q[i + j * rows] = Y[i * ky + j - t];
    }
    size_t unit = 0;
    for (size_t j = 0; j < k; j++) {
        double *q = Q + j * rows, n0 = 0, n1 = 0;
        for (size_t i = 0; i < rows; i++)
            n0 += q[i] * q[i];
        /* kept if more than 1e-6 of its norm is outside, half for a unit vector */
        double floor2 = 1e-12 * n0;
        for (;;) {
            for (int round = 0; round < 2; round++)
                for (size_t a = 0; a < j; a++) {
                    const double *qa = Q + a * rows;
                    double dot = 0;
                    for (size_t i = 0; i < rows; i++)
                        dot += qa[i] * q[i];
                    for (size_t i = 0; i < rows; i++)
                        q[i] -= dot * qa[i];
                }
            n1 = 0;
            for (size_t i = 0; i < rows; i++)
                n1 += q[i] * q[i];
            if (n1 > floor2 && n1 > 0)
                break;
            memset(q, 0, rows * sizeof *q);
            q[unit++ % rows] = 1;
            floor2 = 0.25;
        }
        double r = 1 / sqrt(n1);
        for (size_t i = 0; i < rows; i++)
            q[i] *= r;
    }
}

/* P = Q^T [X_t Y_(k-t)] (k x k, column-major) for Q and the columns of
 * orth_join. */
static void coords(const double *Q, const float *X, size_t kx, size_t t, const float *Y,
                   size_t ky, size_t k, size_t rows, double *P)
{
    memset(P, 0, k * k * sizeof *P);
    for (size_t i = 0; i < rows; i++)
        for (size_t b = 0; b < k; b++) {
            double x = b < t ? X[i * kx + b] : Y[i * ky + b - t];
            for (size_t a = 0; a < k; a++)
                P[a + b * k] += Q[i + a * rows] * x;
        }
}

/* out (row-major rows x k, float) = Q (rows x k) times the column-major
 * k x k G, or G^T when trans. */
static void basis_times(const double *Q, const double *G, int trans, size_t k, size_t rows,
                        float *out)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t c = 0; c < k; c++) {
            double x = 0;
            for (size_t a = 0; a < k; a++)
                x += Q[i + a * rows] * (trans ? G[c + a * k] : G[a + c * k]);
            out[i * k + c] = (float)x;
        }
}

/* The lead (out's first t triplets) and the second run's k - t triplets
 * (f2) as one rank-k estimate with orthonormal factors: the two runs'
 * vectors are orthonormal within each run only, so
 * B = U_t S_t V_t^T + U_2 S_2 V_2^T is written in orthonormal bases
 * Qu = orth[U_t U_2], Qv = orth[V_t V_2] as Qu C Qv^T (C = Qu^T B Qv, k x k)
 * and C's SVD X diag(S) Y^T gives U = Qu X, V = Qv Y: the same B (to
 * rounding), with the factors analyze's projections need.  U, V (m x k,
 * n x k row-major) and S (k) are written, and mix[r] (r = 1 .. k - 1) =
 * ||Qu (X_r S_r Y_r^T - Pu_r S'_r Pv_r^T) Qv^T||_F: how far the top r of
 * the merged result is from the first r of the runs' triplets joined (S'
 * their values, lead first), computed in the k x k coordinates. */
static lx_status merge_runs(const lx_factors *out, const lx_factors *f2, size_t t, float *U,
                            float *V, float *S, double *mix)
{
    size_t m = out->m, n = out->n, k = (size_t)out->k, k2 = (size_t)f2->k;
    double *Qu = malloc(m * k * sizeof *Qu), *Qv = malloc(n * k * sizeof *Qv);
    double *Pu = malloc((6 * k * k + k) * sizeof *Pu);
    lx_status st = LX_OK;
    if (!Qu || !Qv || !Pu) {
        st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory", m, n);
        goto done;
    }
    double *Pv = Pu + k * k, *C = Pv + k * k, *X = C + k * k, *YT = X + k * k, *sig = YT + k * k;
    orth_join(out->U, k, t, f2->U, k2, k, m, Qu);
    orth_join(out->V, k, t, f2->V, k2, k, n, Qv);
    coords(Qu, out->U, k, t, f2->U, k2, k, m, Pu);
    coords(Qv, out->V, k, t, f2->V, k2, k, n, Pv);
    /* C = Pu diag(S_t, S_2) Pv^T */
    for (size_t a = 0; a < k; a++)
        for (size_t b = 0; b < k; b++) {
            double x = 0;
            for (size_t j = 0; j < k; j++)
                x += Pu[a + j * k] * (j < t ? out->S[j] : f2->S[j - t]) * Pv[b + j * k];
            C[a + b * k] = x;
        }
    st = lx_dsvd_thin(C, k, k, k, X, k, sig, YT, k);
    if (st != LX_OK)
        goto done;
    basis_times(Qu, X, 0, k, m, U);
    basis_times(Qv, YT, 1, k, n, V);
    for (size_t j = 0; j < k; j++)
        S[j] = (float)sig[j];
    /* Dm = sum_{j<r} (x_j sig_j y_j^T - pu_j s'_j pv_j^T), one rank at a time */
    double *Dm = sig + k;
    memset(Dm, 0, k * k * sizeof *Dm);
    for (size_t r = 1; r < k; r++) {
        size_t j = r - 1;
        double sj = j < t ? out->S[j] : f2->S[j - t], d2 = 0;
        for (size_t b = 0; b < k; b++)
            for (size_t a = 0; a < k; a++) {
                double *x = &Dm[a + b * k];
                *x += X[a + j * k] * sig[j] * YT[j + b * k] - Pu[a + j * k] * sj * Pv[b + j * k];
                d2 += *x * *x;
            }
        mix[r] = sqrt(d2);
    }
done:
    free(Qu);
    free(Qv);
    free(Pu);
    return st;
}

/* A steep spectrum: the leading t triplets of the first run (certified to
 * ld->et), then the top k - t of A - U_t S_t V_t^T, whose float32 products
 * keep its small directions, from a second run with the passes that are
 * left (at least 2: lx_krylov_topk stops for a lead only then, so that the
 * total stays within the pass cap), merged into orthonormal factors
 * (merge_runs).  The result is within ld->et * lx_rsvd_deflation_gain + the
 * second run's (absolute) error of the exact rank-k truncation.  The
 * second run stops on that merged bound (budget: tol ||A_k|| less what the
 * lead's error takes), not on tol relative to its own, far smaller norm
 * (which made a cliff spectrum take 10-11 passes at tol 3e-4, now 4-6). */
static lx_status deflated(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out,
                          const lead *ld, const double *abs1)
{
    lx_factors f2;
    memset(&f2, 0, sizeof f2);
    deflated_src D = {.A = A, .lead = out, .t = ld->t};
    lx_rowsrc src = {.m = A->m, .n = A->n, .rows = deflated_rows, .ctx = &D};
    lx_rsvd_opts o2 = *o;
    size_t k = (size_t)out->k, t = ld->t, k2 = k - t, m = A->m, n = A->n;
    o2.rank = (int)k2;
    o2.seed = o->seed ^ 0xdef1a7edULL;
    o2.max_passes = lx_rsvd_pass_cap(o) - out->passes;
    /* the listed ranks above the lead, as ranks of the second run */
    int *r2 = o->nranks ? malloc(o->nranks * sizeof *r2) : NULL;
    double *abs2 = malloc(2 * (k + 1) * sizeof *abs2), *mix = abs2 + k + 1;
    lx_status st = LX_OK;
    if (!abs2 || (o->nranks && !r2))
        st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory", m, n);
    o2.ranks = r2;
    o2.nranks = 0;
    for (size_t i = 0; st == LX_OK && i < o->nranks; i++)
        if (o->ranks[i] > (int)t && o->ranks[i] < (int)k)
            r2[o2.nranks++] = o->ranks[i] - (int)t;
    budget bud = {.et = ld->et, .s_t = out->S[t - 1], .nt = 0};
    for (size_t j = 0; j < t; j++)
        bud.nt += (double)out->S[j] * out->S[j];
    if (st == LX_OK)
        st = lx_factors_fill_vt(out);
    if (st == LX_OK)
        st = lx_krylov_topk(&src, &o2, &f2, NULL, &bud, abs2, out->passes);
    free(r2);
    float *U = lx_rsvd_alloc(m * k, &st, m, n), *V = lx_rsvd_alloc(n * k, &st, m, n);
    float *S = lx_rsvd_alloc(k, &st, m, n), *Sb = lx_rsvd_alloc((size_t)out->l, &st, m, n);
    if (st == LX_OK)
        st = merge_runs(out, &f2, t, U, V, S, mix);
    if (st != LX_OK) {
        free(U);
        free(V);
        free(S);
        free(Sb);
        free(abs2);
        lx_factors_free(&f2);
        return st;
    }
    /* the spectrum estimate: the merged values, then the second run's rest */
    memcpy(Sb, S, k * sizeof *Sb);
    memcpy(Sb + k, f2.S_block + k2, ((size_t)out->l - k) * sizeof *Sb);
    double nk = 0, nr = 0;
    for (size_t j = 0; j < k; j++)
        nk += (double)S[j] * S[j];
    double e = lx_rsvd_merged_bound(&bud, f2.S[0], f2.S[k2 - 1] * f2.gap, abs2[k2]);
    /* rank r < k: the top r of the merged result is within mix[r] of the
     * first r triplets of the runs joined: for r <= t the lead's top r
     * (the first run's bound at r, e1), above it the lead and the second
     * run's top r - t (as at k); plus the float rounding of the merged
     * factors (MERGE_ROUNDING) */
    for (size_t r = 1; r < k; r++) {
        nr += (double)S[r - 1] * S[r - 1];
        double a = r <= t ? abs1[r]
                          : lx_rsvd_merged_bound(&bud, f2.S[0], f2.S[r - t - 1] * f2.gap_at[r - t],
                                                 abs2[r - t]);
        out->err_at[r] = nr > 0 ? (a + mix[r]) / sqrt(nr) + MERGE_ROUNDING * FLT_EPSILON : 0;
        if (r > t)
            out->gap_at[r] = f2.gap_at[r - t];
    }
    free(abs2);
    free(out->U);
    free(out->V);
    free(out->S);
    free(out->Vt);
    free(out->S_block);
    out->Vt = NULL;
    out->U = U;
    out->V = V;
    out->S = S;
    out->S_block = Sb;
    out->passes += f2.passes;
    out->gap = f2.gap;
    out->err_est = nk > 0 ? e / sqrt(nk) : 0;
    out->converged = out->err_est <= o->tol;
    out->err_at[k] = out->err_est;
    out->gap_at[k] = out->gap;
    lx_factors_free(&f2);
    return LX_OK;
}

lx_status lx_rsvd_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out)
{
    memset(out, 0, sizeof *out);
    out->m = A->m;
    out->n = A->n;
    /* rank < 1: nothing is computed, nothing claimed (converged 0) */
    if (o->rank < 1)
        return lx_fail(LX_EUSAGE, "randomized SVD: rank must be >= 1 (got %d)", o->rank);
    /* an empty matrix: its (empty) truncation is exact */
    out->converged = 1;
    if (A->m == 0 || A->n == 0)
        return LX_OK;
    lead ld = {0};
    lx_status st = LX_OK;
    double *abs1 = NULL;
    if (use_exact(A->m, A->n, o)) {
        st = lx_dense_topk(A, o, out);
    } else {
        abs1 = alloc_doubles(lx_rsvd_clamp_rank(A->m, A->n, o->rank) + 1, &st, A->m, A->n);
        if (st == LX_OK)
            st = lx_krylov_topk(A, o, out, &ld, NULL, abs1, 0);
    }
    if (st == LX_OK && ld.t > 0)
        st = deflated(A, o, out, &ld, abs1);
    free(abs1);
    if (st == LX_OK && !out->Vt)
        st = lx_factors_fill_vt(out);
    if (st != LX_OK) {
        lx_factors_free(out);
        out->m = A->m;
        out->n = A->n;
    }
    return st;
}

size_t lx_rsvd_workspace_bytes(size_t m, size_t n, const lx_rsvd_opts *o)
{
    if (m == 0 || n == 0 || o->rank < 1)
        return 0;
    size_t p = m < n ? m : n;
    size_t k = lx_rsvd_clamp_rank(m, n, o->rank);
    size_t l = lx_rsvd_block_width(m, n, k, o->oversample);
    size_t floats;
    if (use_exact(m, n, o)) {
        /* in double: A, both factor sets of the full SVD, the singular values,
         * dgesvd's work array (its workspace query, for A^T: n x m) and the
         * per-rank bounds (err_at, gap_at); in float: a panel, the results
         * (with Vt) */
        size_t dbl = m * n + n * p + p * m + 3 * p + 1 + lx_dsvd_work(n, m) + 2 * (k + 1);
        floats = LX_RSVD_PANEL_ROWS * n + (m + 2 * n + 1) * k + l;
        /* lx_falloc's padding of the five float buffers */
        return dbl * sizeof(double) + floats * sizeof(float) + 5 * (LX_GEMM_PAD + 64);
    }
    return lx_krylov_workspace_bytes(m, n, o);
}

uint64_t lx_matrix_seed(uint64_t seed, const char *tensor, uint64_t batch_index)
{
    /* XXH3 of the name under the global seed, then of the little-endian
     * batch index under that: stable across platforms and runs. */
    uint64_t h = XXH3_64bits_withSeed(tensor, strlen(tensor), seed);
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(batch_index >> (8 * i));
    return XXH3_64bits_withSeed(b, sizeof b, h);
}

void lx_rsvd_warn_unconverged(const char *job, size_t unconverged, size_t ungapped,
                              size_t matrices, const lx_rsvd_opts *o)
{
    if (unconverged == 0)
        return;
    char why[160] = "";
    if (ungapped)
        snprintf(why, sizeof why, "; %zu of them with no gap between sigma_k and sigma_k+1 "
                 "(their rank-k truncation is ill-posed)", ungapped);
    lx_warn("%s: %zu of %zu matrices did not reach --tol %g within %d passes%s; their err_est "
            "is in the report", job, unconverged, matrices, o->tol,
            o->passes > 0 ? o->passes : o->max_passes, why);
}


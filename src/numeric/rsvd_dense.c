/* rsvd_dense.c - the dense path of rsvd.h: the matrix materialised and
 * factored by libFLAME's dgesvd in double (thin matrices, where fewer than
 * LX_RSVD_KRYLOV_BLOCKS blocks fit, and --exact), with the error bound of
 * rsvd_bound.c on the backward error of a double SVD. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/linalg.h"
#include "rsvd_impl.h"

/* The exact path's error estimate: residuals of EXACT_RESIDUAL * DBL_EPSILON
 * * s_1 (dgesvd is backward stable), plus EXACT_ROUNDING * FLT_EPSILON for
 * the factors rounded to float. */
#define EXACT_RESIDUAL 64.0
#define EXACT_ROUNDING 4.0

lx_status lx_dense_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out)
{
    size_t m = A->m, n = A->n, p = m < n ? m : n;
    size_t k = lx_rsvd_clamp_rank(m, n, o->rank);
    size_t l = lx_rsvd_block_width(m, n, k, o->oversample);
    lx_status st = LX_OK;
    float *row = lx_rsvd_alloc(LX_RSVD_PANEL_ROWS * n, &st, m, n);
    float *U = lx_rsvd_alloc(m * k, &st, m, n);
    float *S = lx_rsvd_alloc(k, &st, m, n);
    float *V = lx_rsvd_alloc(n * k, &st, m, n);
    float *sb = lx_rsvd_alloc(l, &st, m, n);
    /* A^T column-major (= A row-major), its left vectors (V of A), its
     * right vectors (U^T of A), the singular values and the bound's scratch */
    double *a = NULL, *ua = NULL, *vta = NULL, *s = NULL;
    if (st == LX_OK) {
        a = malloc(m * n * sizeof *a);
        ua = malloc(n * p * sizeof *ua);
        vta = malloc(p * m * sizeof *vta);
        s = malloc((3 * p + 1) * sizeof *s);
        if (!a || !ua || !vta || !s)
            st = lx_fail(LX_EFAIL, "SVD of a %zu x %zu matrix: out of memory", m, n);
    }
    if (st != LX_OK)
        goto done;

    double f2 = 0;
    for (size_t r0 = 0; r0 < m; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        st = A->rows(A->ctx, r0, h, row, n);
        if (st != LX_OK)
            goto done;
        f2 += lx_rsvd_norm2(row, h * n);
        for (size_t i = 0; i < h * n; i++) {
            /* libFLAME's dgesvd aborts the process on a NaN or an Inf */
            if (!isfinite(row[i])) {
                st = lx_fail(LX_EFAIL, "SVD of a %zu x %zu matrix: non-finite value %g at row "
                             "%zu, column %zu", m, n, (double)row[i], r0 + i / n, i % n);
                goto done;
            }
            a[r0 * n + i] = row[i];
        }
    }
    st = lx_dsvd_thin(a, n, m, n, ua, n, s, vta, p);
    if (st != LX_OK)
        goto done;
    for (size_t j = 0; j < p; j++) {
        if (!isfinite(s[j])) {
            st = lx_fail(LX_EFAIL, "SVD of a %zu x %zu matrix: non-finite singular values "
                         "(non-finite input?)", m, n);
            goto done;
        }
    }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < k; j++)
            U[i * k + j] = (float)vta[j + i * p];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < k; j++)
            V[i * k + j] = (float)ua[i + j * n];
    for (size_t j = 0; j < k; j++)
        S[j] = (float)s[j];
    for (size_t j = 0; j < l; j++)
        sb[j] = (float)s[j];
    /* the bound with the backward error of a double SVD as residuals, plus
     * the rounding of the factors to float */
    double *rg = s + p, gap;
    for (size_t j = 0; j < p; j++)
        rg[j] = 0;
    double nu = EXACT_RESIDUAL * DBL_EPSILON * s[0];
    /* each s_j^2 within 2 s_1 nu + nu^2 of its exact value, at most p of
     * them, and every partial sum at least s_1^2 */
    double rel = EXACT_RESIDUAL * DBL_EPSILON, nuF = (double)p * (2 * rel + rel * rel);
    out->err_est = lx_rsvd_ritz_bound(s, rg, nu * s[0], nu, nuF, k, p, f2, &gap, rg + p) +
                   EXACT_ROUNDING * FLT_EPSILON;
    out->gap = gap;
    out->k = (int)k;
    if ((st = lx_factors_alloc_at(out)) != LX_OK)
        goto done;
    /* the same bound for the top r < k (a sweep's ranks) */
    for (size_t r = 1; r < k; r++)
        out->err_at[r] = lx_rsvd_ritz_bound(s, rg, nu * s[0], nu, nuF, r, p, f2,
                                            &out->gap_at[r], rg + p) +
                         EXACT_ROUNDING * FLT_EPSILON;
    out->err_at[k] = out->err_est;
    out->gap_at[k] = gap;
    out->l = (int)l;
    out->U = U;
    out->S = S;
    out->V = V;
    out->S_block = sb;
    U = S = V = sb = NULL;
    out->passes = 1;
    out->converged = out->err_est <= o->tol;
    out->exact = 1;
    out->frob2 = f2;

done:
    free(row);
    free(a);
    free(ua);
    free(vta);
    free(s);
    free(U);
    free(S);
    free(V);
    free(sb);
    return st;
}


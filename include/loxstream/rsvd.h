/* rsvd.h - top-k singular triplets of a matrix that is only ever seen as a
 * stream of row panels (randomized subspace iteration, Halko-Martinsson-
 * Tropp 2011, with the fused pass of LOX.md), and the exact reference.
 *
 * The matrix A (m x n) is never materialised: each pass asks the row source
 * for consecutive panels of at most LX_RSVD_PANEL_ROWS rows, in order, and
 * feeds them to BLIS.  One pass computes, panel by panel, Y_b = A_b V and
 * Z += A_b^T Y_b, i.e. Y = A V and Z = A^T A V from one read of the data.
 * Between passes V <- orth(Z) (libFLAME QR).  After each pass the
 * Rayleigh-Ritz step (small SVD of Y) gives the current rank-k estimate
 * A_k = U_k S_k V_k^T; the run stops when the relative Frobenius change of
 * A_k between two passes is <= tol (adaptive), or after a fixed number of
 * passes.  Panel boundaries and the per-matrix seed are fixed by the matrix
 * shape and the options only, so results are bit-identical whatever the
 * memory limit, the thread count or the order in which matrices are done.
 *
 * The factors are what every later subcommand reuses: several ranks (any
 * k' <= k is a prefix), several alphas, LoRA export (A = sqrt(S) V^T,
 * B = U sqrt(S)), projections for R_align/R_ft.
 */
#ifndef LOXSTREAM_RSVD_H
#define LOXSTREAM_RSVD_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

/* Fixed panel height of every pass (rows). */
#define LX_RSVD_PANEL_ROWS 256

/* A matrix delivered as rows. */
typedef struct lx_rowsrc {
    size_t m, n;
    /* Write rows [r0, r0+h) of A, as f32, row-major into dst with leading
     * dimension ld >= n.  Must return LX_OK or an lx_fail() status (e.g. a
     * NaN/Inf found in an input, naming the tensor and row). */
    lx_status (*rows)(void *ctx, size_t r0, size_t h, float *dst, size_t ld);
    void *ctx;
} lx_rowsrc;

typedef struct lx_rsvd_opts {
    int rank;            /* k >= 1; clamped to min(m, n) by the caller */
    int oversample;      /* p: the block has l = min(k + p, min(m,n)) columns */
    int passes;          /* > 0: exactly this many passes; 0: adaptive */
    double tol;          /* adaptive: stop when rel. change of A_k <= tol */
    int max_passes;      /* adaptive cap (>= 2) */
    uint64_t seed;       /* seed of the Gaussian test matrix */
    int exact;           /* full SVD of the materialised matrix (validation) */
} lx_rsvd_opts;

/* Defaults: k 6, p 10, adaptive, tol 1e-4 (see lx_rsvd_opts_default), cap 12. */
void lx_rsvd_opts_default(lx_rsvd_opts *o);

typedef struct lx_factors {
    size_t m, n;
    int k;               /* number of triplets kept (<= requested rank) */
    float *U;            /* m x k, row-major (U[i*k + j]) */
    float *S;            /* k singular values, descending */
    float *V;            /* n x k, row-major (V[i*k + j]) */
    int l;               /* block width used */
    float *S_block;      /* l Ritz values of the last pass (spectrum estimate) */
    int passes;          /* passes over A made */
    int converged;       /* adaptive: tol reached (1) or cap hit (0); fixed: 1 */
    double change;       /* rel. change of A_k at the last pass (error estimate) */
    double frob2;        /* ||A||_F^2, accumulated in double during the first pass */
} lx_factors;

/* Top-k factors of A.  Memory: O((m + n) * l + PANEL_ROWS * n) floats, plus
 * m * n for exact mode.  A matrix with m or n == 0, or A == 0, gives k = 0
 * or zero singular values without error. */
lx_status lx_rsvd_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out);
void lx_factors_free(lx_factors *f);

/* Bytes of working memory lx_rsvd_topk needs for this shape and options. */
size_t lx_rsvd_workspace_bytes(size_t m, size_t n, const lx_rsvd_opts *o);

/* dst[i][j] = alpha * sum_{t<k} U[r0+i][t] S[t] V[j][t] for rows r0..r0+h-1
 * of the rank-k' part (k' = kk <= f->k), row-major, leading dimension ld.
 * One GEMM of h x n x kk. */
void lx_factors_rows(const lx_factors *f, int kk, float alpha, size_t r0, size_t h,
                     float *dst, size_t ld);

/* Seed of one matrix: a hash of the global seed, the tensor name and the
 * matrix's index within a stacked (N-D) tensor. */
uint64_t lx_matrix_seed(uint64_t seed, const char *tensor, uint64_t batch_index);

#endif

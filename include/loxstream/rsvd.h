/* rsvd.h - top-k singular triplets of a matrix that is only ever seen as a
 * stream of row panels (randomized block Krylov iteration with the fused
 * pass of LOX.md), and the exact reference.
 *
 * The matrix A (m x n) is never materialised: each pass asks the row source
 * for consecutive panels of at most LX_RSVD_PANEL_ROWS rows (in order within
 * each of its row chunks; every other pass takes the chunks last first, so
 * that it starts on the rows the previous pass read last) and feeds them to
 * BLIS.  One pass applies A and A^T to one block V_i of
 * l = k + p orthonormal columns: panel by panel, Y_b = A_b V_i and
 * Z_i += A_b^T Y_b, so one read of the data gives A V_i and A^T A V_i.  The
 * next block is orth(Z_i) against all earlier blocks (block Krylov: the
 * blocks span V, (A^T A) V, (A^T A)^2 V, ...).  After each pass a
 * Rayleigh-Ritz step on the whole space (small SVDs only) gives the rank-k
 * estimate A_k = U_k S_k V_k^T from U U^T A, U an orthonormal basis of
 * A [V_1 .. V_i], which the Z_i give without another read.  At most
 * LX_RSVD_KRYLOV_BLOCKS blocks (and about 128 columns, at least 2 blocks)
 * are kept; then the iteration restarts from the best l right Ritz vectors
 * (thick restart, no extra pass), so memory stays O((m + n) l).
 *
 * After every pass an upper estimate of the error of the rank-k result
 * (from the residuals of the Ritz pairs and the gap to sigma_k+1, see
 * rsvd_bound.c) is compared with tol: converged means err_est <= tol, never a
 * guess from the change between passes; the same bound is kept for every
 * rank r < k (err_at), and listed ranks (opts.ranks) must meet tol too
 * before the passes stop.  Spectra with s_k ~ s_k+1 (no gap)
 * end at max_passes with converged = 0.  Matrices with min(m, n) < 4 l are
 * factored densely in double instead (exact = 1): LoRA factors, small heads.
 *
 * Panel boundaries, the test matrix and all reductions are fixed by the
 * matrix shape and the options only, so results are bit-identical whatever
 * the memory limit, the BLIS thread count or the order of the matrices.
 *
 * The factors are what every later subcommand reuses: several ranks (any
 * k' <= k is a prefix), several alphas, LoRA export (A = sqrt(S) V^T,
 * B = U sqrt(S)), projections for R_align/R_ft.
 */
#ifndef LOXSTREAM_RSVD_H
#define LOXSTREAM_RSVD_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/dtype.h"
#include "loxstream/error.h"

/* Panel height of the output pass and of the exact mode (rows). */
#define LX_RSVD_PANEL_ROWS 256
/* A pass splits the rows into at most this many chunks (fixed by the shape),
 * shared out among the threads; each adds into its own partial of A^T Y. */
#define LX_RSVD_MAX_CHUNKS 16
/* Krylov blocks kept before a restart (fewer for l > 32, see krylov.c). */
#define LX_RSVD_KRYLOV_BLOCKS 4

/* A matrix delivered as rows. */
typedef struct lx_rowsrc {
    size_t m, n;
    /* Write rows [r0, r0+h) of A, as f32, row-major into dst with leading
     * dimension ld >= n.  Must return LX_OK or an lx_fail() status (e.g. a
     * NaN/Inf found in an input, naming the tensor and row).  Called from
     * several threads at once, for disjoint row ranges in any order: it must
     * be thread-safe. */
    lx_status (*rows)(void *ctx, size_t r0, size_t h, float *dst, size_t ld);
    void *ctx;
} lx_rowsrc;

typedef struct lx_rsvd_opts {
    int rank;            /* k >= 1; larger than min(m, n): clamped to it */
    int oversample;      /* p: the block has l = min(k + p, min(m,n)) columns */
    int passes;          /* > 0: exactly this many passes; 0: adaptive */
    double tol;          /* stop when err_est <= tol; a result is reported
                          * converged only when err_est <= tol */
    int max_passes;      /* adaptive cap (>= 2) */
    uint64_t seed;       /* seed of the Gaussian test matrix */
    int exact;           /* full SVD of the materialised matrix (validation) */
    const int *ranks;    /* nranks ranks that must meet tol too (a sweep's): the
                          * adaptive passes go on until the top r triplets of
                          * the result are certified for every listed r < rank
                          * as well as for rank (or the cap is reached); NULL,
                          * 0 or ranks >= rank: rank alone, as without them */
    size_t nranks;
    int threads;         /* lx_rsvd_workspace_bytes: sized for this many threads'
                          * panels; 0: the calling thread's lx_linalg_most_threads(),
                          * as a factorisation allocates them */
} lx_rsvd_opts;

/* Defaults: k 6, p 10, adaptive, tol 3e-4, cap 12, seed 0, no other ranks.  With tol 3e-4 the
 * rank-6 error stayed below 2.6e-4 of ||A_6|| (target 1e-3) on all measured
 * spectra with s_6 / s_7 >= 1.05, after 3-6 passes. */
void lx_rsvd_opts_default(lx_rsvd_opts *o);

typedef struct lx_factors {
    size_t m, n;
    int k;               /* number of triplets kept (<= requested rank) */
    float *U;            /* m x k, row-major (U[i*k + j]) */
    float *S;            /* k singular values, descending */
    float *V;            /* n x k, row-major (V[i*k + j]) */
    float *Vt;           /* k x n, row-major: V transposed (lx_factors_add_rows) */
    int l;               /* block width used */
    float *S_block;      /* l Ritz values of the last pass (spectrum estimate) */
    int passes;          /* passes over A made (1 for a dense SVD) */
    int exact;           /* factored by a dense SVD in double (method "exact"):
                          * on request, or min(m, n) < 4 l; 0: randomized */
    int converged;       /* err_est <= tol */
    double err_est;      /* upper estimate of ||U_k S_k V_k^T - exact A_k||_F /
                          * ||exact A_k||_F, A_k the rank-k truncation of the
                          * f32 matrix the row source gives: from the residual
                          * norms of the Ritz pairs and the gap to sigma_k+1
                          * (see rsvd_bound.c); infinite-like (>= 1)
                          * when no gap is seen */
    double gap;          /* (s_k - hi) / s_k, hi an upper estimate of sigma_k+1:
                          * the relative gap the bound rests on; <= 0: none was
                          * seen (ill-posed: sigma_k ~ sigma_k+1, or the passes
                          * did not resolve it); 0 when s_k = 0 */
    double frob2;        /* ||A||_F^2, accumulated in double during the first pass */
    double *err_at;      /* k + 1 entries (NULL when k = 0): err_at[r] the same
                          * bound as err_est for the top r triplets against the
                          * exact rank-r truncation, relative to the norm of
                          * their r values, r = 1 .. k (err_at[k] == err_est,
                          * err_at[0] = 0), from the last pass */
    double *gap_at;      /* k + 1 entries: gap_at[r] the gap the bound at r rests
                          * on, as gap (gap_at[k] == gap); in err_at's block */
} lx_factors;

/* Top-k factors of A.  Memory: O((m + n) * l * KRYLOV_BLOCKS + PANEL_ROWS * n)
 * floats (exactly: lx_rsvd_workspace_bytes), m * n + (m + n) * min(m, n) in
 * exact mode.  m or n == 0 gives k = 0, err_est 0, converged 1 (the empty
 * truncation is exact); A == 0 gives S = 0 (U, V still orthonormal); a
 * rank-r A gives S[r..k-1] ~ 0; none of them an error.  rank < 1 is
 * LX_EUSAGE.  A NaN or Inf is LX_EFAIL (on the dense path: naming its row
 * and column).  On failure (a status from the row source is returned as
 * is, with its message) *out is left empty (k 0, converged 0);
 * lx_factors_free on it is harmless. */
lx_status lx_rsvd_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out);
void lx_factors_free(lx_factors *f);

/* Bytes lx_rsvd_topk allocates for this shape and options (its buffers, the
 * returned factors, and an allowance for libFLAME's work arrays). */
size_t lx_rsvd_workspace_bytes(size_t m, size_t n, const lx_rsvd_opts *o);

/* dst[i][j] = alpha * sum_{t<kk} U[r0+i][t] S[t] V[j][t] for rows r0..r0+h-1
 * of the rank-kk part (kk > f->k: f->k; kk <= 0: zeros), row-major, leading
 * dimension ld.  One GEMM of h x n x kk (more only when h * kk > 16384); no
 * allocation, thread-safe. */
void lx_factors_rows(const lx_factors *f, int kk, float alpha, size_t r0, size_t h,
                     float *dst, size_t ld);

/* The fused output rows: dst row i = round_dt(base row i + alpha * sum_{t<kk}
 * U[r0+i][t] S[t] V[:, t]^T) for i < h, base and dst holding h contiguous
 * rows of n elements of dtype dt (dt transformable; dst may alias base).
 * The rank-kk sum is formed in f32, in order t = 0, 1, ..., in registers a
 * few columns at a time, and added, rounded and checked at once: no f32
 * copy of the rows is made.  (A BLIS GEMM with k = 6 ran at 3-4 GFLOP/s
 * here and wrote the f32 rows out to memory; see bench/RESULTS.md.)
 * kk > f->k: f->k; kk <= 0: dst = base.  Returns the index (i * n + j) of
 * the first element of dst, in row-major order, that rounded to an Inf or
 * a NaN (an overflow of dt), or h * n: what lx_find_nonfinite on dst would
 * return.  No allocation, thread-safe. */
size_t lx_factors_add_rows(const lx_factors *f, int kk, float alpha, size_t r0, size_t h,
                         lx_dtype dt, const void *base, void *dst);

/* A gap estimate below this (lx_factors.gap) counts as none: the report
 * calls such a matrix ill-posed at rank k. */
#define LX_RSVD_GAP_MIN 1e-2

/* One warning (lx_warn) for a run of `job` in which `unconverged` of
 * `matrices` matrices missed tol, `ungapped` of them with gap <
 * LX_RSVD_GAP_MIN; nothing when all converged. */
void lx_rsvd_warn_unconverged(const char *job, size_t unconverged, size_t ungapped,
                              size_t matrices, const lx_rsvd_opts *o);

/* Seed of one matrix: XXH3_64bits_withSeed(le64(batch_index),
 * XXH3_64bits_withSeed(tensor, strlen(tensor), seed)), i.e. a hash of the
 * global seed, the tensor name and the matrix's index within a stacked (N-D)
 * tensor; XXH3 is specified bit-exactly, so the seed is the same on every
 * platform and in every run. */
uint64_t lx_matrix_seed(uint64_t seed, const char *tensor, uint64_t batch_index);

#endif

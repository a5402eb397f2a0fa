/* rsvd_impl.h - what the files of the SVD engine share (private to
 * src/numeric/): rsvd.c (options, dispatch, deflation, sizes), krylov.c
 * (the randomized solver), rsvd_bound.c (the error bound), rsvd_dense.c
 * (the dense SVD in double), factors.c (what is done with lx_factors). */
#ifndef LOXSTREAM_RSVD_IMPL_H
#define LOXSTREAM_RSVD_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/rsvd.h"

/* count floats from lx_falloc (padded for BLIS's over-reads, linalg.h);
 * NULL and *st set to an lx_fail() naming the m x n matrix when out of
 * memory, or when *st is already an error. */
void *lx_rsvd_alloc(size_t count, lx_status *st, size_t m, size_t n);
/* Sum of squares of x[0 .. rows), in double. */
double lx_rsvd_norm2(const float *x, size_t rows);
/* k clamped to min(m, n); the block width l = min(k + p, min(m, n)). */
size_t lx_rsvd_clamp_rank(size_t m, size_t n, int k);
size_t lx_rsvd_block_width(size_t m, size_t n, size_t k, int p);
/* The pass cap of the options (>= 2 when adaptive). */
int lx_rsvd_pass_cap(const lx_rsvd_opts *o);

/* rsvd_bound.c */
double lx_rsvd_ritz_bound(const double *s, const double *rg, double nuG, double nuA,
                          double nuF, size_t k, size_t d, double frob2, double *gap, double *lh);
double lx_rsvd_deflation_gain(double et, double s_t, double s_t1, double gk);

/* A steep spectrum's leading directions, certified on their own: the
 * first t triplets of lx_krylov_topk's result are within et (absolute,
 * Frobenius) of the exact rank-t truncation (t = 0: no deflation). */
typedef struct lead {
    size_t t;
    double et;
} lead;

/* The second run of a deflation (rsvd.c's deflated) stops on the bound of
 * the merged rank-k result, not on its own relative error: its tolerance is
 * what the lead leaves of tol ||A_k||.  et, s_t: the lead's absolute error
 * and smallest value, nt: the sum of its t values' squares. */
typedef struct budget {
    double et, s_t, nt;
} budget;

/* The absolute bound of a merged rank t + r result for the second run's
 * top r: the lead's error moved by lx_rsvd_deflation_gain (s1: the second
 * run's largest value, gr: its absolute gap at r) plus the second run's
 * absolute error e2 at r. */
double lx_rsvd_merged_bound(const budget *b, double s1, double gr, double e2);

/* krylov.c: the randomized solver (ld: where to report a lead worth
 * deflating, NULL: never stop for one; bud: the budget of a deflation's
 * second run, NULL: tol relative to its own result; abs_at, unless NULL,
 * k + 1 doubles: abs_at[r] the bound err_at[r] times the norm it is
 * relative to, i.e. absolute, Frobenius; pass0: passes over A made
 * before, which set the direction of each pass); its bytes for this shape.
 * out gets err_at and gap_at. */
lx_status lx_krylov_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out, lead *ld,
                         const budget *bud, double *abs_at, int pass0);
size_t lx_krylov_workspace_bytes(size_t m, size_t n, const lx_rsvd_opts *o);

/* rsvd_dense.c: the dense SVD in double. */
lx_status lx_dense_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out);

/* factors.c: f->Vt (k x n) from f->V; f->err_at and f->gap_at (k + 1
 * each, zeros) for f->k. */
lx_status lx_factors_fill_vt(lx_factors *f);
lx_status lx_factors_alloc_at(lx_factors *f);

#endif

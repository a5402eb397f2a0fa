/* krylov_int.h - private to the block Krylov solver (krylov.c, and
 * krylov_certify.c, which certifies its estimates after every pass): the
 * solver's state, its buffers, and the certification entry points.
 */
#ifndef LOXSTREAM_KRYLOV_INT_H
#define LOXSTREAM_KRYLOV_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rsvd_impl.h"

/* The solver's state. */

typedef struct rsvd_work {
    const lx_rowsrc *src;
    uint64_t seed;
    uint64_t fresh;      /* refill columns drawn so far */
    size_t m, n, ph;     /* shape, panel height of the passes */
    size_t pld;          /* panel row stride: n, or with kern n padded (krylov.c's pass_ld) */
    size_t nch, chunk;   /* row chunks of a pass and their height */
    int nthr;            /* most threads of a pass (<= nch), one panel each */
    size_t k, l;         /* rank, block width */
    size_t maxblk, dmax; /* Krylov blocks kept before a restart; maxblk * l */
    size_t nblk;         /* blocks applied since the (re)start; d = nblk * l */
    size_t dext;         /* valid columns of Vb: d + width of the next block */
    float *panels;       /* nthr panels of ph x n, row-major (ld pld) */
    int kern;            /* passes through pass_kernel.h (else BLIS) */
    float *Zc;           /* Z partials: (nch - 1) x n x l of chunks 1.., column-major;
                          * with kern, nch x n x l of every chunk, row-major */
    double f2c[LX_RSVD_MAX_CHUNKS]; /* ||A||_F^2 partials */
    float *Vb;           /* n x (dmax + l): orthonormal basis [V_1 .. V_nblk, V_next] */
    float *Zb;           /* n x dmax: Z_i = A^T A V_i */
    float *QY;           /* m x dmax: orthonormal basis of [A V_1 .. A V_nblk] */
    float *Yp;           /* m x l: A V_i of the current pass */
    float *Vr;           /* n x l: V_i row-major, the layout the fast GEMM path reads safely */
    float *Tn;           /* n x l: scratch of the restart */
    float *R;            /* dmax x dmax: [A V_1 ..] = QY R */
    float *H;            /* (dmax + l) x dmax: Vb^T Zb */
    float *C;            /* (dmax + l) x l: projection coefficients */
    float *Rt, *UR, *SR, *WT, *WS; /* SVD of R = UR diag(SR) W^T, W rescaled */
    float *Gs, *Up, *Sig, *XT;     /* SVD of Vb^T A^T QY UR = Up diag(Sig) X^T */
    float *M;            /* dmax x k */
    float *U, *S, *Vk;   /* the estimate of the last pass, row-major */
    double *gv;          /* 4 (dmax + l) + 1: scratch of the error bound */
    double *pr;          /* 4 (k + 1), after gv: the bounds at every rank r <= k of
                          * the last certify() (eR, eL, gap, ||D_r||_F^2) */
    double *pden;        /* k + 1, after pr: the norms they are relative to */
    double frob2;        /* ||A||_F^2 (from the first pass) */
    double den;          /* the norm certify's bounds are relative to */
} rsvd_work;


/* Every buffer of the randomized solver, in one place so that
 * lx_rsvd_workspace_bytes counts exactly what lx_krylov_topk() allocates. */
enum {
    B_PANEL, B_ZC, B_VB, B_ZB, B_QY, B_YP, B_TN, B_R, B_H, B_C, B_RT, B_UR, B_SR, B_WT, B_WS,
    B_GS, B_UP, B_SIG, B_XT, B_M, B_U, B_S, B_V, B_VR, NBUF
};


/* Error bounds after a pass (see krylov_certify.c). */
void kr_certify(rsvd_work *w, double *eL, double *eR, double *gap);
/* Whether the last kr_certify() meets the target (rank k and the listed
 * ranks; a deflation's second run: the merged bound, bud). */
int kr_met(const rsvd_work *w, const lx_rsvd_opts *o, const budget *bud, const double *e,
           int right);
/* Whether the leading directions are certified well enough to deflate. */
int kr_leading_certified(rsvd_work *w, const lx_rsvd_opts *o, lead *ld);
/* The uncertainty a measured residual gains past STEEP_RATIO. */
double kr_steep_noise(double nuG, double s1, double sj);

#endif

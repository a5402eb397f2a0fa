/* krylov.c - the randomized solver of rsvd.h: block Krylov passes over a
 * row-streamed matrix, the Rayleigh-Ritz estimates, restarts, and the
 * certification of each estimate (rsvd_bound.c) after every pass.
 *
 * Layouts.  Panels come row-major (h x n, ld n).  Every basis and block is
 * column-major (rs 1, cs = rows) because that is what the libFLAME QR and
 * SVD take; BLIS reads a row-major panel transposed just by swapping its
 * strides, so a pass makes no copies beyond the panel itself.
 *
 * Bases.  Vb = [V_1 .. V_d/l, V_next] is orthonormal (n x (d + l)); the
 * passes give A V_i (m x l) and Z_i = A^T A V_i.  Each A V_i is folded into an
 * orthonormal QY with [A V_1 ..] = QY R, and each Z_i, which lies in
 * span(V_1 .. V_i+1) because V_i+1 is made from it, is kept as the small
 * H = Vb^T Z.  So the Rayleigh-Ritz step never touches an m x d or n x d
 * SVD: with R = UR diag(s) W^T, the left basis is U_Y = QY UR and
 * A^T U_Y = Z W diag(1/s) = Vb (H W diag(1/s)), whose SVD is a small
 * (d + l) x d one.  That is the projection U_Y U_Y^T A: one more half power
 * step than A Vb Vb^T, and no extra read of A.
 *
 * Dividing by s_j amplifies the float rounding of Z by s_1 / s_j, so
 * directions with s_j <= LEFT_MIN_RATIO * s_1 use the A V V^T estimate
 * u_j^T A V V^T = s_j (V w_j)^T instead, which needs no division.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/linalg.h"
#include "rsvd_impl.h"
#include "krylov_int.h"
#include "pass_kernel.h"

/* Directions whose Ritz value s_j of A Vb is below this fraction of s_1 use
 * the division-free estimate (see the file comment). */
#define LEFT_MIN_RATIO 1e-2

/* ---- counter-based Gaussian test matrix --------------------------------- */

/* splitmix64's finaliser: a bijective 64-bit mix. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

/* Uniform in (0, 1), never 0 so that log() is finite. */
static double unit_open(uint64_t h)
{
    return ((double)(h >> 11) + 0.5) * 0x1p-53;
}

/* Column j of the n x l Gaussian matrix, a pure function of (seed, i, j):
 * the same whatever the block width, the thread count or the call order. */
static void gaussian_column(uint64_t seed, uint64_t j, float *col, size_t n)
{
    uint64_t key = mix64(seed ^ mix64((j + 1) * GOLDEN));
    for (size_t i = 0; i < n; i++) {
        double u1 = unit_open(mix64(key + (2 * (uint64_t)i + 1) * GOLDEN));
        double u2 = unit_open(mix64(key + (2 * (uint64_t)i + 2) * GOLDEN));
        col[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
}

/* ---- passes, bases and estimates ----------------------------------------- */

/* C = B^T W (d x b) for the column-major rows x d basis B and rows x b block W. */
static void project_coeffs(const float *B, size_t rows, size_t d, const float *W, size_t b,
                           float *C)
{
    lx_sgemm(d, b, rows, 1.0f, B, (ptrdiff_t)rows, 1, W, 1, (ptrdiff_t)rows, 0.0f, C, 1,
             (ptrdiff_t)d);
}

/* W -= B (B^T W). */
static void project_out(const float *B, size_t rows, size_t d, float *W, size_t b, float *C)
{
    if (d == 0)
        return;
    project_coeffs(B, rows, d, W, b, C);
    lx_sgemm(rows, b, d, -1.0f, B, 1, (ptrdiff_t)rows, C, 1, (ptrdiff_t)d, 1.0f, W, 1,
             (ptrdiff_t)rows);
}

/* A block whose every coefficient against B is below this after the first
 * round is orthogonal to B to float precision: the second round (one more
 * projection and QR, 2-3 ms on 11008 rows) is skipped.  Measured after the
 * first round: 8e-8 .. 3e-6 on 4096 x 11008 matrices. */
#define ORTH_SKIP 1e-5f

/* Make W (rows x b) orthonormal and orthogonal to the orthonormal B (rows x d),
 * keeping span(B, W) >= span(B, W_in).  Gram-Schmidt twice, then Householder
 * QR; a second round only if the result is not orthogonal to B to float
 * precision (ORTH_SKIP).  A column with nothing left outside span(B) (a
 * rank-deficient or zero A, an exhausted Krylov space) is replaced by a fresh random one, and a second
 * round catches QR columns that came out of rounding noise only (less than
 * half of their norm outside span(B)): the basis stays orthonormal to working
 * precision whatever A is.  For unit columns with at least half their norm
 * outside span(B), one projection is enough. */
static lx_status orth_block(rsvd_work *w, const float *B, size_t rows, size_t d, float *W,
                            size_t b)
{
    double ref = 0;
    for (size_t j = 0; j < b; j++) {
        double c = lx_rsvd_norm2(W + j * rows, rows);
        if (c > ref)
            ref = c;
    }
    for (int round = 0; round < 3; round++) {
        if (round == 0) {
            project_out(B, rows, d, W, b, w->C);
            project_out(B, rows, d, W, b, w->C);
        } else {
            /* with no B, the first QR left W orthonormal */
            if (d == 0)
                break;
            project_coeffs(B, rows, d, W, b, w->C);
            float mx = 0;
            for (size_t i = 0; i < d * b; i++)
                mx = fabsf(w->C[i]) > mx ? fabsf(w->C[i]) : mx;
            if (mx <= ORTH_SKIP)
                break;
            lx_sgemm(rows, b, d, -1.0f, B, 1, (ptrdiff_t)rows, w->C, 1, (ptrdiff_t)d, 1.0f, W, 1,
                     (ptrdiff_t)rows);
        }
        /* round 0: relative to the input; later: W has unit columns */
        double floor2 = round == 0 ? 1e-12 * ref : 0.25;
        int refilled = 0;
        for (size_t j = 0; j < b; j++) {
            if (!(lx_rsvd_norm2(W + j * rows, rows) > floor2)) {
                gaussian_column(w->seed ^ 0x5eedf111ULL, w->fresh++, W + j * rows, rows);
                refilled = 1;
            }
        }
        if (refilled) {
            project_out(B, rows, d, W, b, w->C);
            project_out(B, rows, d, W, b, w->C);
        }
        lx_status st = lx_qr_orthonormalize(W, rows, b, rows);
        if (st != LX_OK)
            return st;
        if (round > 0 && !refilled)
            break;
    }
    return LX_OK;
}

/* Rows [c0, c1) of chunk c: panels of ph rows from the chunk's start, so
 * that every boundary depends on the shape only.  Y_b = A_b V goes into rows
 * of Yp, Z_c += A_b^T Y_b into the chunk's partial Zp (Z itself for chunk
 * 0).  Runs on one thread, in its own panel buffer. */
static lx_status stream_chunk(rsvd_work *w, size_t c, float *panel, float *Zp, double *frob2)
{
    size_t m = w->m, n = w->n, l = w->l;
    size_t c0 = c * w->chunk, c1 = c0 + w->chunk < m ? c0 + w->chunk : m;
    double f2 = 0;
    for (size_t r0 = c0; r0 < c1; r0 += w->ph) {
        size_t h = c1 - r0 < w->ph ? c1 - r0 : w->ph;
        lx_status st = w->src->rows(w->src->ctx, r0, h, panel, w->pld);
        if (st != LX_OK)
            return st;
        /* rows back to back: one sum over the panel (the BLIS path's bits);
         * the kernel's padded rows one by one */
        if (frob2 && w->pld == n)
            f2 += lx_rsvd_norm2(panel, h * n);
        else if (frob2)
            for (size_t i = 0; i < h; i++)
                f2 += lx_rsvd_norm2(panel + i * w->pld, n);
        if (w->kern) {
            /* both products in registers; Zp row-major */
            lx_pass_panel(panel, w->pld, h, n, w->Vr, l, w->Yp + r0, m, Zp, r0 != c0);
            continue;
        }
        /* Y_b = A_b V, written straight into rows r0.. of column-major Yp;
         * BLIS's small-matrix kernels over-read a column-major V by up to a
         * column but a row-major one by 16 bytes at most (linalg.h), so V is
         * read from its row-major copy Vr */
        lx_sgemm_panel(h, l, n, 1.0f, panel, (ptrdiff_t)n, 1, w->Vr, (ptrdiff_t)l, 1, 0.0f,
                       w->Yp + r0, 1, (ptrdiff_t)m);
        /* Z_c += A_b^T Y_b: the panel read with swapped strides (panel, Yp
         * and the partials come from lx_falloc); one call on this thread
         * where that gives the same bits */
        (h <= LX_GEMM_SERIAL_MAX_K ? lx_sgemm_panel_serial : lx_sgemm_panel)(
            n, l, h, 1.0f, panel, 1, (ptrdiff_t)n, w->Yp + r0, 1, (ptrdiff_t)m,
            r0 == c0 ? 0.0f : 1.0f, Zp, 1, (ptrdiff_t)n);
    }
    if (frob2)
        *frob2 = f2;
    return LX_OK;
}

#define ZSUM_SLICE 2048
/* z[i] += x[i], separate arrays; a full slice in a loop of constant trip
 * count, which GCC -O2 vectorises. */
static void add_into(float *restrict z, const float *restrict x, size_t len)
{
    size_t i = 0;
    if (len == ZSUM_SLICE)
        for (; i < ZSUM_SLICE; i++)
            z[i] += x[i];
    for (; i < len; i++)
        z[i] += x[i];
}

/* One read of A for the newest block V_i: Y = A V_i into Yp, Z_i = A^T Y
 * into Zb; ||A||_F^2 on request.  The chunks are shared out among the
 * threads (each a single-threaded BLIS caller with its own panel of a few
 * rows, which stays in its L2 cache from the conversion to the second
 * product); Z_i = sum of the chunk partials in chunk order and ||A||_F^2
 * likewise, so the bits do not depend on which thread took which chunk, nor
 * on how many there are, nor on the order the chunks are handed out in.
 * With `reverse` they are handed out last chunk first: alternate passes
 * then start where the previous one ended, on the rows it left in the page
 * cache, so a matrix whose inputs do not fit in the cache (a memory
 * cgroup) is read from storage only in part on each later pass.  A failure
 * is reported for the first failing chunk, with the message its thread
 * set. */
static lx_status stream_pass(rsvd_work *w, double *frob2, int reverse)
{
    size_t n = w->n, l = w->l, nch = w->nch;
    const float *V = w->Vb + w->nblk * l * n;
    float *Z = w->Zb + w->nblk * l * n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < l; j++)
            w->Vr[i * l + j] = V[j * n + i];
    /* the threads of this pass: the count may change between passes (a
     * lane widened while the other waits, lanes.c), within the panels' */
    int nthr = lx_linalg_threads();
    if (nthr > w->nthr)
        nthr = w->nthr;
    long failed = -1;
    lx_status fst = LX_OK;
    char *fmsg = NULL;
#pragma omp parallel num_threads(nthr) if (nthr > 1)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *panel = w->panels + (size_t)t * w->ph * w->pld;
#pragma omp for schedule(dynamic, 1)
        for (long q = 0; q < (long)nch; q++) {
            long c = reverse ? (long)nch - 1 - q : q;
            float *Zp = w->kern ? w->Zc + (size_t)c * n * l
                        : c == 0 ? Z : w->Zc + (size_t)(c - 1) * n * l;
            lx_status st = stream_chunk(w, (size_t)c, panel, Zp, frob2 ? &w->f2c[c] : NULL);
            if (st != LX_OK) {
#pragma omp critical(lx_rsvd_fail)
                if (failed < 0 || c < failed) {
                    failed = c;
                    fst = st;
                    free(fmsg);
                    fmsg = lx_err_save();
                }
            }
        }
    }
    if (failed >= 0)
        return lx_err_restore(fst, fmsg);
    /* Z_i = ((Z_0 + Z_1) + Z_2) + ..., element by element; in slices of
     * ZSUM_SLICE elements that stay in L1 while every partial is added */
    /* (with kern: into chunk 0's row-major partial, then Z from it) */
    float *Z0 = w->kern ? w->Zc : Z;
    const float *Zc1 = w->kern ? w->Zc + n * l : w->Zc;
    if (nch > 1) {
        size_t len = n * l;
        long slices = (long)((len + ZSUM_SLICE - 1) / ZSUM_SLICE);
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && len >= 65536)
        for (long q = 0; q < slices; q++) {
            size_t i0 = (size_t)q * ZSUM_SLICE;
            size_t cnt = len - i0 < ZSUM_SLICE ? len - i0 : ZSUM_SLICE;
            for (size_t c = 1; c < nch; c++)
                add_into(Z0 + i0, Zc1 + (c - 1) * len + i0, cnt);
        }
    }
    if (w->kern)
        for (size_t j = 0; j < l; j++)
            for (size_t i = 0; i < n; i++)
                Z[j * n + i] = Z0[i * l + j];
    if (frob2) {
        double f2 = 0;
        for (size_t c = 0; c < nch; c++)
            f2 += w->f2c[c];
        *frob2 = f2;
    }
    return LX_OK;
}

/* Append the next block orth(Z_i) to Vb (Z_i: the newest of the nblk
 * blocks) and the column block Vb^T Z_i to H.  Z_i lies in span(V_1 .. V_i+1)
 * by construction, so H holds all of A^T A on the Krylov space; older
 * columns of H have zeros in the new rows. */
static lx_status extend_right(rsvd_work *w)
{
    size_t n = w->n, l = w->l, ldh = w->dmax + l;
    size_t d = w->nblk * l, d0 = d - l;
    const float *Z = w->Zb + d0 * n;
    size_t next = n - d < l ? n - d : l;
    if (next > 0) {
        float *W = w->Vb + d * n;
        memcpy(W, Z, n * next * sizeof(float));
        lx_status st = orth_block(w, w->Vb, n, d, W, next);
        if (st != LX_OK)
            return st;
    }
    w->dext = d + next;
    lx_sgemm(w->dext, l, n, 1.0f, w->Vb, (ptrdiff_t)n, 1, Z, 1, (ptrdiff_t)n, 0.0f,
             w->H + d0 * ldh, 1, (ptrdiff_t)ldh);
    for (size_t j = 0; j < d0; j++)
        memset(w->H + j * ldh + d, 0, next * sizeof(float));
    return LX_OK;
}

/* After a pass: fold A V_i (in Yp) into QY and R, then extend Vb and H. */
static lx_status extend_bases(rsvd_work *w)
{
    size_t m = w->m, l = w->l, dmax = w->dmax;
    size_t d0 = w->nblk * l, d = d0 + l;
    float *Q = w->QY + d0 * m;
    memcpy(Q, w->Yp, m * l * sizeof(float));
    lx_status st = orth_block(w, w->QY, m, d0, Q, l);
    if (st != LX_OK)
        return st;
    /* R[:d, d0:d] = QY^T Yp; the rows below the new diagonal block stay 0 */
    lx_sgemm(d, l, m, 1.0f, w->QY, (ptrdiff_t)m, 1, w->Yp, 1, (ptrdiff_t)m, 0.0f,
             w->R + d0 * dmax, 1, (ptrdiff_t)dmax);
    w->nblk++;
    return extend_right(w);
}

/* Rayleigh-Ritz on the Krylov space (see the file comment): the small
 * factors UR, SR, WT, Up, Sig and M, from which use_left_estimate() makes
 * U, S, Vk; all SVDs are of d x d or (d + l) x d matrices. */
static lx_status estimate(rsvd_work *w)
{
    size_t k = w->k, d = w->nblk * w->l, de = w->dext;
    size_t dmax = w->dmax, ldh = dmax + w->l;
    for (size_t j = 0; j < d; j++)
        memcpy(w->Rt + j * d, w->R + j * dmax, d * sizeof(float));
    lx_status st = lx_svd_thin(w->Rt, d, d, d, w->UR, d, w->SR, w->WT, d);
    if (st != LX_OK)
        return st;

    /* WS(a, b) = W(a, b) / s_b for the directions estimated through Z,
     * W(a, b) * s_b for the rest; W(a, b) = WT[b + a*d]. */
    float s1 = w->SR[0];
    size_t r = 0;
    while (r < d && s1 > 0 && w->SR[r] > (float)LEFT_MIN_RATIO * s1)
        r++;
    for (size_t b = 0; b < d; b++) {
        float f = b < r ? 1.0f / w->SR[b] : w->SR[b];
        for (size_t a = 0; a < d; a++)
            w->WS[a + b * d] = w->WT[b + a * d] * f;
    }
    /* Gs = Vb^T G: H WS for the first r columns, [WS; 0] for the others */
    if (r > 0)
        lx_sgemm(de, r, d, 1.0f, w->H, 1, (ptrdiff_t)ldh, w->WS, 1, (ptrdiff_t)d, 0.0f,
                 w->Gs, 1, (ptrdiff_t)de);
    for (size_t b = r; b < d; b++) {
        memcpy(w->Gs + b * de, w->WS + b * d, d * sizeof(float));
        memset(w->Gs + b * de + d, 0, (de - d) * sizeof(float));
    }
    st = lx_svd_thin(w->Gs, de, d, de, w->Up, de, w->Sig, w->XT, d);
    if (st != LX_OK)
        return st;

    /* M = UR X[:, :k] (X(a, b) = XT[b + a*d]): U = QY M, V = Vb Up[:, :k] */
    lx_sgemm(d, k, d, 1.0f, w->UR, 1, (ptrdiff_t)d, w->XT, (ptrdiff_t)d, 1, 0.0f, w->M, 1,
             (ptrdiff_t)d);
    return LX_OK;
}

/* The m x k and n x k factors of the last estimate() into w->U, S, Vk:
 * made once, after the last pass (certify needs only the small matrices),
 * from QY and Vb as that estimate saw them. */
static void use_left_estimate(rsvd_work *w)
{
    size_t m = w->m, n = w->n, k = w->k, d = w->nblk * w->l, de = w->dext;
    lx_sgemm(m, k, d, 1.0f, w->QY, 1, (ptrdiff_t)m, w->M, 1, (ptrdiff_t)d, 0.0f, w->U,
             (ptrdiff_t)k, 1);
    lx_sgemm(n, k, de, 1.0f, w->Vb, 1, (ptrdiff_t)n, w->Up, 1, (ptrdiff_t)de, 0.0f,
             w->Vk, (ptrdiff_t)k, 1);
    memcpy(w->S, w->Sig, k * sizeof(float));
}

/* The right Rayleigh-Ritz estimate in place of the last one: the triplets
 * (QY UR_j, SR_j, Vd W_j) of A Vd Vd^T, j < k. */
static void use_right_ritz(rsvd_work *w)
{
    size_t m = w->m, n = w->n, k = w->k, d = w->nblk * w->l;
    lx_sgemm(m, k, d, 1.0f, w->QY, 1, (ptrdiff_t)m, w->UR, 1, (ptrdiff_t)d, 0.0f, w->U,
             (ptrdiff_t)k, 1);
    lx_sgemm(n, k, d, 1.0f, w->Vb, 1, (ptrdiff_t)n, w->WT, (ptrdiff_t)d, 1, 0.0f, w->Vk,
             (ptrdiff_t)k, 1);
    memcpy(w->S, w->SR, k * sizeof(float));
}

/* Restart when the kept blocks are full (bounded memory).  Thick restart:
 * the new first block is X = Vb W[:, :l], the top l Ritz vectors of A on
 * span(V_1 .. V_d/l), whose products are known without a pass
 * (A X = QY UR[:, :l] diag(s), A^T A X = Z W[:, :l]); the next pass goes on
 * from orth(A^T A X).  When only one block fits (l > min(m, n) / 2) the next
 * pass starts from orth(Z_1) instead: plain subspace iteration (not from the
 * Ritz vectors of the estimate, whose division-free directions would never
 * get a power step). */
static lx_status restart(rsvd_work *w)
{
    size_t m = w->m, n = w->n, l = w->l, d = w->nblk * l, dmax = w->dmax;
    if (w->maxblk < 2) {
        memcpy(w->Vb, w->Zb, n * l * sizeof(float));
        w->nblk = 0;
        return orth_block(w, NULL, n, 0, w->Vb, l);
    }
    /* W[:, :l] as a d x l matrix: W(a, b) = WT[b + a*d] */
    float *X = w->Vb + d * n; /* the free slot of the next block */
    lx_sgemm(n, l, d, 1.0f, w->Vb, 1, (ptrdiff_t)n, w->WT, (ptrdiff_t)d, 1, 0.0f, X, 1,
             (ptrdiff_t)n);
    lx_sgemm(n, l, d, 1.0f, w->Zb, 1, (ptrdiff_t)n, w->WT, (ptrdiff_t)d, 1, 0.0f, w->Tn, 1,
             (ptrdiff_t)n);
    lx_sgemm(m, l, d, 1.0f, w->QY, 1, (ptrdiff_t)m, w->UR, 1, (ptrdiff_t)d, 0.0f, w->Yp, 1,
             (ptrdiff_t)m);
    memcpy(w->Vb, X, n * l * sizeof(float));
    memcpy(w->Zb, w->Tn, n * l * sizeof(float));
    memcpy(w->QY, w->Yp, m * l * sizeof(float));
    memset(w->R, 0, dmax * dmax * sizeof(float));
    for (size_t j = 0; j < l; j++)
        w->R[j * dmax + j] = w->SR[j];
    w->nblk = 1;
    return extend_right(w);
}

/* Krylov blocks kept before a restart: LX_RSVD_KRYLOV_BLOCKS, but no more
 * than about KRYLOV_MAX_COLS columns (at least 2 blocks), since the
 * orthogonalisation and the small SVDs grow with d l and d^3 (libFLAME's
 * sgesvd takes ~3 ms at 64 x 64, ~6 ms at 96 x 96; at k = 64, six blocks of
 * 74 made the later passes 2-3x slower than the read of A).  With thick
 * restarts, 4 blocks needed as few passes as 6 on every measured spectrum.
 * Never more than fit in min(m, n); 1 block means subspace iteration. */
#define KRYLOV_MAX_COLS 128

static size_t krylov_blocks(size_t m, size_t n, size_t l)
{
    size_t mn = m < n ? m : n;
    size_t b = KRYLOV_MAX_COLS / l;
    if (b < 2)
        b = 2;
    if (b > LX_RSVD_KRYLOV_BLOCKS)
        b = LX_RSVD_KRYLOV_BLOCKS;
    if (b > mn / l)
        b = mn / l;
    return b ? b : 1;
}

/* Panel height of the passes: about PASS_PANEL_BYTES of f32 rows (so that a
 * panel stays in the L2 cache from its conversion to the second product),
 * a multiple of 8 in [8, 256], at most m. */
#define PASS_PANEL_BYTES (1u << 20)
#define CHUNK_MIN_ROWS 256
#define CHUNK_PARTIALS_MAX (64u << 20) /* bytes of Z partials */

/* The panel's row stride for pass_kernel.c: n rounded up to 16 floats, and
 * an odd number of 64-byte lines, so that the 16 rows of a group fall in
 * 16 different sets of the L1 cache (rows 4 KiB apart, n = 4096, all fall
 * in one and ran at half the rate). */
static size_t pass_ld(size_t n)
{
    size_t ld = (n + 15) / 16 * 16;
    return (ld / 16) % 2 ? ld : ld + 16;
}

static size_t pass_panel_rows(size_t m, size_t n)
{
    size_t ph = PASS_PANEL_BYTES / (n * sizeof(float));
    ph &= ~(size_t)7;
    if (ph < 8)
        ph = 8;
    if (ph > 256)
        ph = 256;
    return ph < m ? ph : m;
}

/* Row chunks of a pass, from the shape and block width only: at least
 * CHUNK_MIN_ROWS rows each, at most LX_RSVD_MAX_CHUNKS of them, no more than
 * CHUNK_PARTIALS_MAX bytes of partials, heights multiples of the panel
 * height; and the threads that share them out. */
static void pass_chunks(size_t m, size_t n, size_t l, int threads, rsvd_work *w)
{
    size_t nch = (m + CHUNK_MIN_ROWS - 1) / CHUNK_MIN_ROWS;
    if (nch > LX_RSVD_MAX_CHUNKS)
        nch = LX_RSVD_MAX_CHUNKS;
    while (nch > 1 && (nch - 1) * n * l * sizeof(float) > CHUNK_PARTIALS_MAX)
        nch--;
    if (nch < 1)
        nch = 1;
    size_t chunk = (m + nch - 1) / nch;
    chunk = (chunk + w->ph - 1) / w->ph * w->ph;
    w->chunk = chunk;
    w->nch = (m + chunk - 1) / chunk;
    int t = threads > 0 ? threads : lx_linalg_most_threads();
    w->nthr = (size_t)t < w->nch ? t : (int)w->nch;
    if (w->nthr < 1)
        w->nthr = 1;
}

/* Shape of the run (k, l, blocks, panel height) and the float count of each
 * buffer. */
static void plan(size_t m, size_t n, const lx_rsvd_opts *o, rsvd_work *w, size_t sz[NBUF])
{
    w->m = m;
    w->n = n;
    w->ph = pass_panel_rows(m, n);
    w->k = lx_rsvd_clamp_rank(m, n, o->rank);
    w->l = lx_rsvd_block_width(m, n, w->k, o->oversample);
    w->maxblk = krylov_blocks(m, n, w->l);
    w->dmax = w->maxblk * w->l;
    size_t l = w->l, k = w->k, dmax = w->dmax, dx = dmax + l;
    pass_chunks(m, n, l, o->threads, w);
    w->kern = lx_pass_kernel_ok(l, m);
    w->pld = w->kern ? pass_ld(n) : n;
    sz[B_PANEL] = (size_t)w->nthr * w->ph * w->pld;
    sz[B_ZC] = (w->nch - (w->kern ? 0 : 1)) * n * l;
    sz[B_VB] = n * dx;
    sz[B_ZB] = n * dmax;
    sz[B_QY] = m * dmax;
    sz[B_YP] = m * l;
    sz[B_TN] = n * l;
    sz[B_R] = sz[B_RT] = sz[B_UR] = sz[B_WT] = sz[B_WS] = sz[B_XT] = dmax * dmax;
    sz[B_H] = sz[B_GS] = sz[B_UP] = dx * dmax;
    sz[B_C] = dx * l;
    sz[B_SR] = sz[B_SIG] = dmax;
    sz[B_M] = dmax * k;
    sz[B_U] = m * k;
    sz[B_S] = k;
    sz[B_V] = n * k;
    sz[B_VR] = n * l;
}

/* Doubles of rsvd_work.gv, pr and pden (one block). */
static size_t gv_count(const rsvd_work *w)
{
    return 4 * (w->dmax + w->l) + 1 + 5 * (w->k + 1);
}


lx_status lx_krylov_topk(const lx_rowsrc *A, const lx_rsvd_opts *o, lx_factors *out, lead *ld,
                         const budget *bud, double *abs_at, int pass0)
{
    rsvd_work w = {0};
    size_t sz[NBUF];
    plan(A->m, A->n, o, &w, sz);
    w.src = A;
    w.seed = o->seed;
    size_t m = w.m, n = w.n, l = w.l, k = w.k, dmax = w.dmax, dx = dmax + l;
    int fixed = o->passes > 0, cap = lx_rsvd_pass_cap(o);

    float **buf[NBUF] = {
        [B_PANEL] = &w.panels, [B_ZC] = &w.Zc, [B_VB] = &w.Vb, [B_ZB] = &w.Zb, [B_QY] = &w.QY,
        [B_YP] = &w.Yp, [B_TN] = &w.Tn, [B_R] = &w.R, [B_H] = &w.H, [B_C] = &w.C,
        [B_RT] = &w.Rt, [B_UR] = &w.UR, [B_SR] = &w.SR, [B_WT] = &w.WT, [B_WS] = &w.WS,
        [B_GS] = &w.Gs, [B_UP] = &w.Up, [B_SIG] = &w.Sig, [B_XT] = &w.XT, [B_M] = &w.M,
        [B_U] = &w.U, [B_S] = &w.S, [B_V] = &w.Vk, [B_VR] = &w.Vr,
    };
    lx_status st = LX_OK;
    for (int i = 0; i < NBUF; i++)
        *buf[i] = lx_rsvd_alloc(sz[i], &st, m, n);
    w.gv = st == LX_OK ? calloc(gv_count(&w), sizeof(double)) : NULL;
    if (st == LX_OK && !w.gv)
        st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: out of memory", m, n);
    if (st != LX_OK)
        goto done;
    w.pr = w.gv + 4 * dx + 1;
    w.pden = w.pr + 4 * (k + 1);
    /* R and H are block triangular / Hessenberg: what is never written is zero */
    memset(w.R, 0, dmax * dmax * sizeof(float));
    memset(w.H, 0, dx * dmax * sizeof(float));

    /* each column a pure function of (seed, j): shared out, the same bits
     * (about 20 ns an element: worth two threads from a few thousand) */
    int gt = lx_linalg_threads();
#pragma omp parallel for schedule(static) num_threads(gt) if (gt > 1 && n * l >= 8192)
    for (size_t j = 0; j < l; j++)
        gaussian_column(o->seed, j, w.Vb + j * n, n);
    st = orth_block(&w, NULL, n, 0, w.Vb, l);
    if (st != LX_OK)
        goto done;

    int pass = 0, right = 0;
    double err_est = INFINITY, gap = 0;
    double *peR = w.pr, *peL = peR + k + 1, *pgap = peL + k + 1;
    while (pass < cap) {
        /* the first pass of a matrix backwards: its inputs were just read
         * forwards (hashed, apply_writer.c), then every other one */
        st = stream_pass(&w, pass == 0 ? &w.frob2 : NULL, (pass0 + pass) % 2 == 0);
        if (st == LX_OK)
            st = extend_bases(&w);
        if (st == LX_OK)
            st = estimate(&w);
        if (st != LX_OK)
            goto done;
        pass++;
        double eL, eR;
        kr_certify(&w, &eL, &eR, &gap);
        right = eR < eL;
        err_est = right ? eR : eL;
        if ((!fixed && kr_met(&w, o, bud, right ? peR : peL, right)) || pass == cap)
            break;
        /* a lead is taken out only with the 2 passes a second run needs left */
        if (ld && !fixed && cap - pass >= 2 && kr_leading_certified(&w, o, ld)) {
            right = 1; /* the triplets the lead's bound is for */
            break;
        }
        if (w.nblk == w.maxblk) {
            st = restart(&w);
            if (st != LX_OK)
                goto done;
        }
    }
    if (right)
        use_right_ritz(&w);
    else
        use_left_estimate(&w);
    for (size_t j = 0; j < l; j++) {
        if (!isfinite(w.Sig[j])) {
            st = lx_fail(LX_EFAIL, "randomized SVD of a %zu x %zu matrix: non-finite "
                         "singular values (non-finite input?)", m, n);
            goto done;
        }
    }

    out->k = (int)k;
    out->l = (int)l;
    out->U = w.U;
    out->S = w.S;
    out->V = w.Vk;
    w.U = w.S = w.Vk = NULL;
    out->S_block = right ? w.SR : w.Sig; /* the first l of d Ritz values */
    *(right ? &w.SR : &w.Sig) = NULL;
    out->passes = pass;
    out->frob2 = w.frob2;
    out->err_est = err_est;
    out->gap = gap;
    out->converged = err_est <= o->tol;
    st = lx_factors_alloc_at(out);
    if (st != LX_OK)
        goto done;
    for (size_t r = 1; r <= k; r++) {
        out->err_at[r] = r == k ? err_est : (right ? peR : peL)[r];
        out->gap_at[r] = pgap[r];
        if (abs_at)
            abs_at[r] = out->err_at[r] * w.pden[r];
    }
    if (abs_at)
        abs_at[0] = 0;

done:
    for (int i = 0; i < NBUF; i++)
        free(*buf[i]);
    free(w.gv);
    return st;
}

/* Bytes of one lx_krylov_topk() at rank `rank`: its buffers (the returned
 * factors among them), the bound's scratch, and an allowance for the work
 * arrays libFLAME's QRs and small SVDs allocate (BLIS's packing buffers are
 * a process-wide pool, not counted). */
static size_t run_bytes(size_t m, size_t n, const lx_rsvd_opts *o, int rank, size_t *l)
{
    lx_rsvd_opts r = *o;
    r.rank = rank;
    rsvd_work w;
    size_t sz[NBUF], floats = 0;
    plan(m, n, &r, &w, sz);
    for (int i = 0; i < NBUF; i++)
        floats += sz[i];
    size_t dx = w.dmax + w.l;
    floats += 64 * dx + 8 * dx * dx;
    *l = w.l;
    /* + lx_falloc's padding of each buffer; the doubles: the bound's
     * scratch, the returned err_at / gap_at and the caller's abs_at */
    return floats * sizeof(float) + NBUF * (LX_GEMM_PAD + 64) +
           (gv_count(&w) + 3 * (w.k + 1)) * sizeof(double);
}

size_t lx_krylov_workspace_bytes(size_t m, size_t n, const lx_rsvd_opts *o)
{
    size_t k = lx_rsvd_clamp_rank(m, n, o->rank), l, l2;
    /* the first run, then Vt (k x n) */
    size_t peak = run_bytes(m, n, o, (int)k, &l) + n * k * sizeof(float);
    /* a steep spectrum's second run at rank k - t (deflated, rsvd.c) beside
     * the first run's factors (U, V, Vt, S, S_block): at a smaller rank
     * krylov_blocks may keep more blocks, so every t counts; then the merge
     * (merge_runs): both runs' factors, the merged ones and, in double, the
     * two bases and six k x k matrices; beside the first run's factors,
     * its err_at, gap_at and abs_at, the second run's abs_at and mix */
    size_t first = ((m + 2 * n) * k + k + l) * sizeof(float) + 5 * (k + 1) * sizeof(double);
    for (size_t t = 1; t < k; t++) {
        size_t k2 = k - t, second = run_bytes(m, n, o, (int)k2, &l2) + first;
        size_t merge = first + ((m + n) * k2 + k2 + l2 + (m + n) * k + k + l) * sizeof(float) +
                       ((m + n) * k + 6 * k * k + k + 2 * (k2 + 1)) * sizeof(double);
        if (second > peak)
            peak = second;
        if (merge > peak)
            peak = merge;
    }
    return peak;
}

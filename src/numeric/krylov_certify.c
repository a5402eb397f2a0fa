/* krylov_certify.c - the certification of the block Krylov solver's
 * estimates (krylov.c) after every pass: the residuals of the Ritz pairs
 * and their rounding allowances turned into bounds at rank k and every rank
 * below it (rsvd_bound.c), the stopping test, and the test for deflating
 * the leading directions of a steep spectrum.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "krylov_int.h"

/* The rounding behind the measured residuals (H = Vb^T A^T A V in float),
 * in units of FLT_EPSILON s_1^2, and behind the right Ritz triplets (the SVD
 * of R = QY^T A Vd, from float products of A), in units of FLT_EPSILON s_1.
 * Calibrated by tests/unit/test_calibrate: R_NOISE on near-degenerate gaps,
 * H_NOISE on power laws (0.25 let one held-out matrix, power(2.4) at tol
 * 1e-5, report 5.5e-6 for a true 1.5e-5; 1 keeps every true error below
 * 0.73 err_est on both sets). */
#define H_NOISE 1.0
#define R_NOISE 4.0
/* The rounding of sum_j s_j^2 (the s_j from float products and the float
 * SVD of R) against the squares of the singular values of A they stand for,
 * in units of FLT_EPSILON sum_j s_j^2 (rsvd_bound.c's nuF): measured up to
 * 7.9 over test_calibrate's matrices (on lora(3000) 256 x 600, exactly of
 * rank 8, so all of it rounding); twice that. */
#define F_NOISE 16.0
/* The float rounding of the products A V behind the left vectors: s_j u_j
 * = (A V) w_j is off by up to Y_NOISE FLT_EPSILON ||A||_F per direction
 * (measured on test_calibrate's matrices: up to 7.8 at ranks below k, where
 * a wide gap leaves this the largest term).  Counted in the
 * bounds below rank k only: at k, err_est is as it was calibrated (there
 * the gap terms have covered it on every measured matrix). */
#define Y_NOISE 8.0
/* Beyond s_1 / s_k = STEEP_RATIO, float32 products of A^T A keep less and
 * less of direction k (its share s_k^2 / s_1^2 nears FLT_EPSILON): the
 * uncertainty of the measured residuals grows with s_1 / s_k. */
#define STEEP_RATIO 100.0

/* The uncertainty a measured residual gains past STEEP_RATIO: nuG (s_1 /
 * (s_j STEEP_RATIO) - 1), 0 for s_j >= s_1 / STEEP_RATIO. */
double kr_steep_noise(double nuG, double s1, double sj)
{
    return sj * STEEP_RATIO < s1 ? nuG * (s1 / (sj * STEEP_RATIO) - 1) : 0;
}

/* Error bounds after a pass, for the left-projection estimate in w->U, S,
 * Vk (*eL) and for the right Ritz estimate (*eR), both relative to the
 * larger of their ||S_k||_F (<= ||A_k||_F); *gap as lx_rsvd_ritz_bound's.  The
 * right Ritz pairs v_j = Vd W_j, u_j = QY UR_j have A v_j = s_j u_j
 * exactly and A^T A v_j - s_j^2 v_j = Vb (H W_j - s_j^2 [W_j; 0]), so their
 * residuals are small products.  The left estimate differs from the right
 * one by D (in the orthonormal coordinates of QY and Vb), so its error is
 * at most eR + ||D||_F. */
void kr_certify(rsvd_work *w, double *eL, double *eR, double *gap)
{
    size_t k = w->k, d = w->nblk * w->l, de = w->dext, ldh = w->dmax + w->l;
    double *g = w->gv, *s = g + ldh, *rg = s + ldh, *lh = rg + ldh;
    double s1 = w->SR[0];
    for (size_t j = 0; j < d; j++) {
        s[j] = w->SR[j];
        /* W(a, j) = WT[j + a*d] */
        for (size_t a = 0; a < de; a++) {
            double acc = 0;
            for (size_t b = 0; b < d; b++)
                acc += (double)w->H[a + b * ldh] * w->WT[j + b * d];
            g[a] = a < d ? acc - s[j] * s[j] * w->WT[j + a * d] : acc;
        }
        double r2 = 0;
        for (size_t a = 0; a < de; a++)
            r2 += g[a] * g[a];
        rg[j] = sqrt(r2);
    }
    double nuG = H_NOISE * FLT_EPSILON * s1 * s1;
    for (size_t j = 0; j < k; j++)
        rg[j] += kr_steep_noise(nuG, s1, s[j]);
    double eRr = lx_rsvd_ritz_bound(s, rg, nuG, R_NOISE * FLT_EPSILON * s1, F_NOISE * FLT_EPSILON,
                                    k, d, w->frob2, gap, lh);
    double nR = 0, nL = 0, dd = 0;
    double *peR = w->pr, *peL = peR + k + 1, *pgap = peL + k + 1, *pdd = pgap + k + 1;
    memset(pdd, 0, (k + 1) * sizeof *pdd);
    for (size_t t = 0; t < k; t++) {
        nR += (double)w->SR[t] * w->SR[t];
        nL += (double)w->Sig[t] * w->Sig[t];
    }
    /* D = M diag(Sig) Up_k^T - UR_k diag(SR) [W_k; 0]^T, d x de; pdd[r]:
     * ||D_r||_F^2 of its first r terms (the top r triplets of both) */
    for (size_t a = 0; a < d; a++)
        for (size_t b = 0; b < de; b++) {
            double x = 0;
            for (size_t t = 0; t < k; t++) {
                x += (double)w->M[a + t * d] * w->Sig[t] * w->Up[b + t * de];
                if (b < d)
                    x -= (double)w->UR[a + t * d] * w->SR[t] * w->WT[t + b * d];
                if (t + 1 < k)
                    pdd[t + 1] += x * x;
            }
            dd += x * x;
        }
    double den = sqrt(nL > nR ? nL : nR);
    w->den = den;
    pdd[k] = dd;
    peR[0] = peL[0] = pgap[0] = 0;
    if (den <= 0) {
        *eL = *eR = 0;
        for (size_t r = 1; r <= k; r++)
            peR[r] = peL[r] = pgap[r] = w->pden[r] = 0;
        return;
    }
    *eR = eRr * sqrt(nR) / den;
    *eL = *eR + sqrt(dd) / den;
    /* the same bounds for the top r < k triplets of either estimate,
     * relative to their own r values (a sweep's ranks) */
    double nRr = 0, nLr = 0;
    for (size_t r = 1; r < k; r++) {
        nRr += (double)w->SR[r - 1] * w->SR[r - 1];
        nLr += (double)w->Sig[r - 1] * w->Sig[r - 1];
        double dr = sqrt(nLr > nRr ? nLr : nRr);
        double b = lx_rsvd_ritz_bound(s, rg, nuG, R_NOISE * FLT_EPSILON * s1,
                                      F_NOISE * FLT_EPSILON, r, d, w->frob2, &pgap[r], lh);
        peR[r] = dr > 0 ? (b * sqrt(nRr) + Y_NOISE * FLT_EPSILON * sqrt(w->frob2 * (double)r)) / dr
                        : 0;
        peL[r] = dr > 0 ? peR[r] + sqrt(pdd[r]) / dr : 0;
        w->pden[r] = dr;
    }
    peR[k] = *eR;
    peL[k] = *eL;
    pgap[k] = *gap;
    w->pden[k] = den;
}

/* After a pass that did not converge: if s_1 / s_k > STEEP_RATIO, the
 * directions j with s_j > STEEP_RATIO s_k, once certified accurately enough
 * that removing them perturbs the rest by less than tol / 4 (see deflated),
 * are worth taking out of A, so that float32 products of A^T A see the rest
 * (deflated()).  Uses the bound's data of the last certify(). */
int kr_leading_certified(rsvd_work *w, const lx_rsvd_opts *o, lead *ld)
{
    size_t k = w->k, d = w->nblk * w->l, ldh = w->dmax + w->l, t = 0;
    double *g = w->gv, *s = g + ldh, *rg = s + ldh, *lh = rg + ldh;
    if (k < 2 || d <= k || s[k - 1] <= 0 || s[0] <= STEEP_RATIO * s[k - 1])
        return 0;
    while (t < k - 1 && s[t] > STEEP_RATIO * s[k - 1])
        t++;
    double gt, s1 = s[0], nk = 0, nt = 0;
    double nuG = H_NOISE * FLT_EPSILON * s1 * s1, nuA = R_NOISE * FLT_EPSILON * s1;
    double nuF = F_NOISE * FLT_EPSILON;
    /* not while the plain passes can still get there: the bound with no
     * measured residual at all (the rounding terms only) is below tol */
    for (size_t j = 0; j < d; j++)
        g[j] = j < k ? kr_steep_noise(nuG, s1, s[j]) : 0;
    if (lx_rsvd_ritz_bound(s, g, nuG, nuA, nuF, k, d, w->frob2, &gt, lh) <= o->tol / 2)
        return 0;
    double et = lx_rsvd_ritz_bound(s, rg, nuG, nuA, nuF, t, d, w->frob2, &gt, lh);
    for (size_t j = 0; j < k; j++) {
        nk += s[j] * s[j];
        nt += j < t ? s[j] * s[j] : 0;
    }
    et *= sqrt(nt);
    /* the gap at k as the Ritz values show it: only to decide; the result's
     * bound uses the one the second run certifies */
    if (!(et * lx_rsvd_deflation_gain(et, s[t - 1], s[t], s[k - 1] - s[k]) < o->tol * sqrt(nk)))
        return 0;
    ld->t = t;
    ld->et = et;
    return 1;
}

/* Whether the last certify() meets the target: e[r] <= tol (e: the bounds
 * of the estimate that would be returned) at rank k and at every listed
 * rank below it; for a deflation's second run (bud), the merged result's
 * bound at t + r within tol of its norm, with a margin for the merge. */
#define BUDGET_MARGIN 0.99

/* Whether the bound at rank r < k with no measured residual at all (the
 * rounding terms only) is above tol: more passes cannot certify r, so the
 * run does not wait for it.  Uses the last certify()'s data. */
static int floor_above(const rsvd_work *w, size_t r, double tol)
{
    size_t d = w->nblk * w->l, ldh = w->dmax + w->l;
    double *g = w->gv, *s = g + ldh, *lh = s + 2 * ldh, gt;
    double s1 = s[0], nuG = H_NOISE * FLT_EPSILON * s1 * s1, nr = 0;
    for (size_t j = 0; j < d; j++)
        g[j] = j < w->k ? kr_steep_noise(nuG, s1, s[j]) : 0;
    for (size_t j = 0; j < r; j++)
        nr += s[j] * s[j];
    double b = lx_rsvd_ritz_bound(s, g, nuG, R_NOISE * FLT_EPSILON * s1, F_NOISE * FLT_EPSILON, r,
                                  d, w->frob2, &gt, lh);
    return nr > 0 && b + Y_NOISE * FLT_EPSILON * sqrt(w->frob2 * (double)r / nr) > tol;
}

int kr_met(const rsvd_work *w, const lx_rsvd_opts *o, const budget *bud, const double *e,
               int right)
{
    size_t k = w->k;
    const float *S = right ? w->SR : w->Sig;
    for (size_t i = 0; i <= o->nranks; i++) {
        size_t r = i < o->nranks ? (size_t)(o->ranks[i] > 0 ? o->ranks[i] : 0) : k;
        if (r < 1 || r > k)
            continue;
        if (!bud) {
            if (!(e[r] <= o->tol) && (r == k || !floor_above(w, r, o->tol)))
                return 0;
            continue;
        }
        const double *pgap = w->pr + 2 * (k + 1);
        double a = lx_rsvd_merged_bound(bud, S[0], S[r - 1] * pgap[r], e[r] * w->pden[r]);
        if (!(a <= BUDGET_MARGIN * o->tol * sqrt(bud->nt + w->pden[r] * w->pden[r])))
            return 0;
    }
    return 1;
}


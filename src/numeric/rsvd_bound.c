/* rsvd_bound.c - the error bound of a rank-k estimate from its Ritz
 * triplets (err_est, rsvd.h), shared by the randomized and the dense paths.
 *
 * The bound (err_est; tests/unit/test_calibrate holds it to the truth).  The
 * right Ritz triplets of A Vd Vd^T (Vd: the blocks applied so far), from
 * R = UR diag(s) W^T, have A v_j = s_j u_j exactly, and their residuals
 * r_j = A^T A v_j - s_j^2 v_j = Vb (H w_j - s_j^2 [w_j; 0]) are small
 * products.  For the exact top-k right subspace, Davis-Kahan on A^T A gives
 * sin(v_j, V*) <= ||r_j|| / (s_j^2 - sigma_k+1^2); the left vectors are then
 * off by at most sigma_k+1 / s_j times that, and the error of the rank-k
 * sum is that of its directions, weighted by s_j, in quadrature.  Two
 * refinements make it tight: the Ritz vectors k+1 .. q-1, themselves
 * accurate to sin(Phi) <= ||R_cluster|| / separation, shield v_j from
 * sigma_k+1 .. sigma_q (r_j is orthogonal to them, so only sin(Phi) of it
 * can lie along their exact vectors), and the best q is taken.  sigma_k+1
 * and sigma_q+1 are bounded by s_i^2 + ||r_i|| (the Ritz values approximate
 * the top singular values: an eigenvalue of A^T A lies within ||r_i|| of
 * s_i^2) and by ||A||_F^2 - sum s_j^2 (always, once sum s_j^2 is given an
 * allowance nuF for the rounding of the computed s_j: without it, a tail
 * below the rounding of s_1^2 made the difference negative, gap 1 and a
 * false "converged").  Float rounding enters as an
 * uncertainty of the measured residuals (H_NOISE, larger past STEEP_RATIO,
 * where A^T A in float keeps little of direction j) and as a turn of the
 * Ritz vectors by the rounding of R (R_NOISE), which nothing shields.  The
 * left-projection estimate that the passes otherwise return differs from
 * the right Ritz one by a small matrix D, so its error is at most the bound
 * plus ||D||_F; whichever of the two has the smaller bound is returned.
 * Without a gap (sigma_k ~ sigma_k+1) the bound stays large and the matrix
 * is reported not converged, with the gap estimate.
 *
 * Steep spectra (s_1 / s_k > STEEP_RATIO: LoRA-trained updates, exactly
 * low-rank ones).  In float32, A^T A keeps little of the small directions
 * (s_k^2 / s_1^2 nears FLT_EPSILON), so neither the passes nor the bound get
 * below a floor.  When the bound from the rounding terms alone stays above
 * tol, the leading directions (s_j > STEEP_RATIO s_k), certified on their own
 * (their gap is large), are taken out: a second run factors A - U_t S_t V_t^T
 * for rank k - t with the passes that are left (deflated), and the result's
 * bound adds the lead's error times lx_rsvd_deflation_gain.
 *
 * Every rank below k (lx_factors.err_at: a sweep keeps the top r of the
 * rank-k factors) gets the same bound with k = r from the same residuals,
 * on all three paths; after a deflation, for r above the lead, the lead's
 * error moved by the gain at r plus the second run's bound at r - t, and
 * for every r < k how far the merged factors' top r is from those runs'
 * triplets joined (rsvd.c).
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rsvd_impl.h"

/* Upper estimate of ||A||_F^2 minus the exact squares that the computed
 * partial sum hd of s_j^2 stands for: frob2 - hd + nuF hd, >= 0. */
static double tail2(double frob2, double hd, double nuF)
{
    double v = frob2 - hd * (1 - nuF);
    return v > 0 ? v : 0;
}

/* Upper estimate of the relative error ||B - A_k||_F / ||A_k||_F of the
 * rank-k estimate B = sum_{j<k} s_j u_j v_j^T made of the first k of d Ritz
 * triplets (s_j descending, u_j = A v_j / s_j), from the measured residual
 * norms rg_j of A^T A v_j - s_j^2 v_j (j < d), their uncertainty nuG, the
 * rounding nuA of the small problem the triplets come from (in units of A)
 * and frob2 = ||A||_F^2; see the file comment, "The bound".  nuF: the
 * relative rounding of a computed sum of s_j^2 against the exact squares
 * it stands for (the s_j may exceed them by that much); every difference
 * with ||A||_F^2 below is of frob2 + nuF sum_j s_j^2, an upper bound.
 * *gap = (s_k - hi) / s_k, hi the upper estimate of sigma_k+1.  lh: d - k + 1
 * doubles of scratch. */
double lx_rsvd_ritz_bound(const double *s, const double *rg, double nuG, double nuA,
                          double nuF, size_t k, size_t d, double frob2, double *gap, double *lh)
{
    if (k == 0 || s[0] <= 0) {
        *gap = 0;
        return 0;
    }
    /* lh[i - k] >= sigma_i+1^2, i = k .. d: the smaller of s_i^2 + r_i (an
     * eigenvalue of A^T A lies within r_i of s_i^2, and the Ritz values
     * approximate the top ones) and ||A||_F^2 - sum_{j<=i} s_j^2 (always,
     * as s_j <= sigma_j up to the rounding nuF), non-increasing in i */
    double hd = 0;
    for (size_t j = 0; j < k; j++)
        hd += s[j] * s[j];
    for (size_t i = k; i <= d; i++) {
        double v = tail2(frob2, hd, nuF);
        if (i < d) {
            double r = s[i] * s[i] + rg[i] + nuG;
            if (r < v)
                v = r;
            hd += s[i] * s[i];
        }
        if (i > k && lh[i - k - 1] < v)
            v = lh[i - k - 1];
        lh[i - k] = v;
    }
    double lk = lh[0], hk = sqrt(lk);
    *gap = (s[k - 1] - hk) / s[k - 1];
    if (!(*gap > -1))
        *gap = -1;
    /* q = k: v_j against sigma_k+1 alone (Davis-Kahan); q > k: the Ritz
     * vectors k .. q-1 shield v_j from sigma_k+1 .. sigma_q: only a part
     * sin(Phi) of r_j can lie along their exact vectors, the rest is
     * divided by the gap to sigma_q+1.  The rounding of the small problem
     * turns v_j by up to nuA / (s_j - sigma_k+1), which nothing shields. */
    double best = INFINITY, rc2 = 0;
    for (size_t q = k; q <= d; q++) {
        double sphi = 1, lq = lk;
        if (q > k) {
            rc2 += (rg[q - 1] + nuG) * (rg[q - 1] + nuG);
            lq = lh[q - k];
            double sa = s[k - 1] * s[k - 1] - s[k] * s[k];
            double sb = s[q - 1] * s[q - 1] - lq;
            double sep = sa < sb ? sa : sb;
            sphi = sep > 0 && sqrt(rc2) < sep ? sqrt(rc2) / sep : 1;
        }
        double num = 0, den = 0, hdj = 0;
        for (size_t j = 0; j < k; j++) {
            double th = s[j] * s[j], d1 = th - lk, d2 = th - lq, r = rg[j] + nuG;
            double tail = sqrt(tail2(frob2, hdj, nuF));
            hdj += th;
            /* sin^2 of v_j against the exact top-k right subspace, in two
             * parts: along the exact vectors k+1 .. q (singular values up to
             * sigma_k+1) and beyond (up to sigma_q+1); the left vector u_j =
             * A v_j / s_j is off by those singular values / s_j times each */
            /* a direction is no further off than s_j + sigma_j, with
             * sigma_j^2 <= ||A||_F^2 - sum_{i<j} s_i^2 (interlacing; not
             * s_j^2 + r_j: an eigenvalue lies within r_j of s_j^2, but
             * before the Ritz values settle it need not be the j-th) */
            double cap = s[j] + tail, c = cap;
            if (d1 > 0 && d2 > 0) {
                double turn = nuA / (s[j] - hk);
                double near = (q == k ? r * r / (d1 * d1) : r * r * sphi * sphi / (d1 * d1)) +
                              turn * turn;
                double far = q == k ? 0 : r * r / (d2 * d2);
                /* no gap seen or no bound on the turn: the cap alone (the
                 * Davis-Kahan form with sin = 1 assumed s_j near sigma_j,
                 * and after one pass gave half the true error) */
                if (near + far <= 1 && th > 0) {
                    double dk = s[j] * sqrt(near * (1 + lk / th) + far * (1 + lq / th));
                    c = dk < cap ? dk : cap;
                }
            }
            num += c * c;
            den += th;
        }
        double e = den > 0 ? sqrt(num / den) : 0;
        if (e < best)
            best = e;
    }
    return best;
}

/* How much an error E (||E||_F <= et) of the leading rank-t part (smallest
 * singular value s_t) can move the result.  In the bases of the leading and
 * the other directions, E has a leading block (moving the leading part by
 * ||E||), blocks coupling the leading directions to the others (turning the
 * others' singular vectors towards directions that A - B_t has all but
 * removed: a change of the rank-(k-t) truncation of at most ||E|| again),
 * and a block among the others of second order, ||E||^2 / s_t, which moves
 * their truncation by at most that times 1 + 2 s_t1 / gk (Wedin: s_t1 their
 * largest singular value, gk their gap at k).  So ||E|| times the gain. */
double lx_rsvd_deflation_gain(double et, double s_t, double s_t1, double gk)
{
    if (!(gk > 0) || !(s_t > 0))
        return INFINITY;
    return 2 + et / s_t * (1 + 2 * s_t1 / gk);
}


double lx_rsvd_merged_bound(const budget *b, double s1, double gr, double e2)
{
    return b->et * lx_rsvd_deflation_gain(b->et, b->s_t, s1, gr) + e2;
}

/* passes.c - what one pass fewer would cost in accuracy: for every matrix of
 * a base/aligned pair that apply factors, the randomized SVD with exactly
 * 2 .. P passes (lx_engine_factor, apply's seed, rank and block), its err_est
 * and its true error against a reference factorisation of the same matrix,
 * so that the passes the adaptive run takes can be judged against --tol.
 *
 *   bench/passes BASE ALIGNED [P [OVERSAMPLE [THREADS]]]
 *
 * P default 4, OVERSAMPLE default 10 (apply's).  The reference is the same
 * solver run to tol 1e-9 with oversample 20 (its own certified bound, about
 * 5e-6 on the llama-7b preset, is printed: errors well above it are
 * measured to a few percent).  The true error is ||B - R||_F / ||R||_F for
 * the rank-k products B = U S V^T and R of the reference, summed in double
 * over every element (a Gram-matrix shortcut loses everything below ~3e-4
 * to float rounding).  One line per matrix and pass count:
 *   NAME passes P err_est E true T ratio E/T
 * then the adaptive run's passes at the default tol.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/engine.h"
#include "loxstream/linalg.h"

/* ||A - B||_F / ||B||_F for A = Ua Sa Va^T, B = Ub Sb Vb^T (row-major m x k
 * and n x k factors), element by element in double. */
static double rel_diff(const lx_factors *a, const lx_factors *b)
{
    int k = a->k < b->k ? a->k : b->k;
    size_t m = a->m, n = a->n;
    double num = 0, den = 0;
    double *ua = malloc((size_t)k * sizeof(double)), *ub = malloc((size_t)k * sizeof(double));
    if (!ua || !ub) {
        free(ua);
        free(ub);
        return NAN;
    }
    for (size_t i = 0; i < m; i++) {
        for (int p = 0; p < k; p++) {
            ua[p] = (double)a->U[i * (size_t)a->k + p] * a->S[p];
            ub[p] = (double)b->U[i * (size_t)b->k + p] * b->S[p];
        }
        for (size_t j = 0; j < n; j++) {
            double x = 0, y = 0;
            for (int p = 0; p < k; p++) {
                x += ua[p] * a->V[j * (size_t)a->k + p];
                y += ub[p] * b->V[j * (size_t)b->k + p];
            }
            num += (x - y) * (x - y);
            den += y * y;
        }
    }
    free(ua);
    free(ub);
    return den > 0 ? sqrt(num / den) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: passes BASE ALIGNED [P [OVERSAMPLE [THREADS]]]\n");
        return 2;
    }
    int P = argc > 3 ? atoi(argv[3]) : 4, os = argc > 4 ? atoi(argv[4]) : 10;
    int threads = argc > 5 ? atoi(argv[5]) : 2;
    if (P < 2)
        P = 2;
    lx_engine_opts e;
    lx_engine_opts_default(&e);
    e.base_path = argv[1];
    e.aligned_path = argv[2];
    e.threads = threads;
    e.svd.oversample = os;
    lx_inputs in = {0};
    lx_status st = lx_linalg_init(threads);
    if (st == LX_OK)
        st = lx_engine_filter(&in, &e);
    if (st == LX_OK)
        st = lx_engine_open(&in, &e, e.svd.rank, 0);
    if (st != LX_OK) {
        fprintf(stderr, "passes: %s\n", lx_errmsg());
        return 1;
    }
    printf("oversample %d, rank %d, tol %g\n", os, e.svd.rank, e.svd.tol);
    for (size_t i = 0; i < in.plan.n && st == LX_OK; i++) {
        const lx_plan_item *it = &in.plan.items[i];
        if (it->action != LX_ACT_LOWRANK)
            continue;
        int rank = lx_engine_rank(it, e.svd.rank);
        lx_factor_stats s = {0};
        lx_factors ref = {0}, f = {0};
        lx_engine_opts er = e;
        er.svd.tol = 1e-9;
        er.svd.max_passes = 16;
        er.svd.oversample = 20;
        st = lx_engine_factor(&er, it, 0, rank, &ref, &s);
        if (st == LX_OK && ref.exact) { /* factored exactly: nothing to compare */
            lx_factors_free(&ref);
            continue;
        }
        for (int p = 2; p <= P && st == LX_OK; p++) {
            lx_engine_opts ef = e;
            ef.svd.passes = p;
            st = lx_engine_factor(&ef, it, 0, rank, &f, &s);
            if (st != LX_OK)
                break;
            double tr = rel_diff(&f, &ref);
            printf("%-40s passes %d err_est %-9.3g true %-9.3g ratio %.2f%s\n",
                   it->aligned->name, p, f.err_est, tr, tr > 0 ? f.err_est / tr : 0.0,
                   tr > e.svd.tol ? "  (true > tol)" : "");
            lx_factors_free(&f);
        }
        if (st == LX_OK && (st = lx_engine_factor(&e, it, 0, rank, &f, &s)) == LX_OK) {
            printf("%-40s adaptive: %d passes, err_est %.3g, true %.3g (reference err_est %.2g)\n",
                   it->aligned->name, f.passes, f.err_est, rel_diff(&f, &ref), ref.err_est);
            lx_factors_free(&f);
        }
        lx_factors_free(&ref);
    }
    if (st != LX_OK)
        fprintf(stderr, "passes: %s\n", lx_errmsg());
    lx_inputs_free(&in);
    return st == LX_OK ? 0 : 1;
}

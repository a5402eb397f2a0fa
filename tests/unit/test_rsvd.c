/* test_rsvd.c - the randomized SVD against matrices with planted singular
 * values.
 *
 * Every test matrix is A = Q1 diag(s) Q2^T with Q1, Q2 orthonormal, built
 * here in double by Gram-Schmidt from a private PRNG, so the expected
 * singular values and the exact rank-k truncation are known without
 * libFLAME.  Shapes cover m < n, m > n, m not a multiple of the panel
 * height, k near and equal to min(m, n), rank-deficient and zero matrices,
 * single rows and columns.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "loxstream/linalg.h"
#include "loxstream/rsvd.h"
#include "prng.h"

#define assert_le(a, b)                                                                  \
    do {                                                                                 \
        double a_ = (a), b_ = (b);                                                       \
        if (!(a_ <= b_))                                                                 \
            fail_msg("%s = %.6g, expected <= %s = %.6g", #a, a_, #b, b_);                \
    } while (0)

/* ---- orthonormal matrices (PRNG: prng.h) ------------------------------------ */

/* rows x cols (cols <= rows) with orthonormal columns, column-major double:
 * Gaussian columns, Gram-Schmidt applied twice. */
static double *orthonormal(size_t rows, size_t cols)
{
    double *q = malloc(rows * cols * sizeof *q);
    assert_non_null(q);
    for (size_t i = 0; i < rows * cols; i++)
        q[i] = rng_gauss();
    for (size_t j = 0; j < cols; j++) {
        double *x = q + j * rows;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t t = 0; t < j; t++) {
                const double *y = q + t * rows;
                double dot = 0;
                for (size_t i = 0; i < rows; i++)
                    dot += x[i] * y[i];
                for (size_t i = 0; i < rows; i++)
                    x[i] -= dot * y[i];
            }
            double nrm = 0;
            for (size_t i = 0; i < rows; i++)
                nrm += x[i] * x[i];
            nrm = sqrt(nrm);
            for (size_t i = 0; i < rows; i++)
                x[i] /= nrm;
        }
    }
    return q;
}

/* A planted matrix: A = Q1 diag(s) Q2^T, r = number of s (<= min(m, n)). */
typedef struct planted {
    size_t m, n, r;
    double *q1, *q2, *s;
    float *a; /* m x n row-major */
} planted;

static void plant(planted *p, size_t m, size_t n, const double *s, size_t r, uint64_t seed)
{
    rng_state = seed;
    p->m = m;
    p->n = n;
    p->r = r;
    p->q1 = orthonormal(m, r ? r : 1);
    p->q2 = orthonormal(n, r ? r : 1);
    p->s = malloc((r ? r : 1) * sizeof *p->s);
    memcpy(p->s, s, r * sizeof *s);
    p->a = calloc(m * n, sizeof *p->a);
    assert_non_null(p->a);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double v = 0;
            for (size_t t = 0; t < r; t++)
                v += p->q1[i + t * m] * s[t] * p->q2[j + t * n];
            p->a[i * n + j] = (float)v;
        }
}

static void unplant(planted *p)
{
    free(p->q1);
    free(p->q2);
    free(p->s);
    free(p->a);
}

/* s_i = decay^i, well separated */
static double *geometric(size_t r, double decay)
{
    double *s = malloc(r * sizeof *s);
    for (size_t i = 0; i < r; i++)
        s[i] = pow(decay, (double)i);
    return s;
}

/* ---- row sources ------------------------------------------------------------ */

/* The solver calls the source from several threads at once (rsvd.h): the
 * counters are atomic.  The pass counter is exact on one thread only (on
 * more, a chunk may be read before chunk 0 starts the pass): the tests that
 * fail a given pass run on one thread, test_failing_chunks on two. */
typedef struct src_ctx {
    const float *a;
    size_t n;
    size_t fail_row; /* first row that fails, on the failing pass */
    int fail_pass;   /* 0: never; -1: every pass, naming the call's first row */
    size_t m;
    _Atomic int pass; /* the pass of the latest call */
    _Atomic size_t rows; /* rows delivered: a pass reads every row once, in
                          * chunks whose order changes from pass to pass */
    _Atomic size_t calls, max_h;
} src_ctx;

static lx_status src_rows(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    src_ctx *c = ctx;
    c->pass = (int)(atomic_fetch_add(&c->rows, h) / c->m) + 1;
    c->calls++;
    size_t mh = c->max_h;
    while (h > mh && !atomic_compare_exchange_weak(&c->max_h, &mh, h))
        ;
    if (c->fail_pass == -1 && r0 + h > c->fail_row)
        return lx_fail(LX_EINPUT, "test source: rows %zu.. fail", r0);
    if (c->fail_pass > 0 && c->fail_pass == c->pass && r0 + h > c->fail_row)
        return lx_fail(LX_EINPUT, "test source: row %zu is NaN", c->fail_row);
    for (size_t i = 0; i < h; i++)
        memcpy(dst + i * ld, c->a + (r0 + i) * c->n, c->n * sizeof(float));
    return LX_OK;
}

static lx_rowsrc source(src_ctx *c, const float *a, size_t m, size_t n)
{
    memset(c, 0, sizeof *c);
    c->a = a;
    c->m = m;
    c->n = n;
    lx_rowsrc s = {m, n, src_rows, c};
    return s;
}

static lx_status run(const planted *p, const lx_rsvd_opts *o, lx_factors *f)
{
    src_ctx c;
    lx_rowsrc s = source(&c, p->a, p->m, p->n);
    return lx_rsvd_topk(&s, o, f);
}

/* ---- checks ----------------------------------------------------------------- */

/* ||U_k S_k V_k^T - Q1_k s_k Q2_k^T||_F / ||Q1_k s_k Q2_k^T||_F, dense double */
static double truncation_error(const planted *p, const lx_factors *f, int k)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < p->m; i++)
        for (size_t j = 0; j < p->n; j++) {
            double x = 0, y = 0;
            for (int t = 0; t < k; t++) {
                x += (double)f->U[i * (size_t)f->k + (size_t)t] * f->S[t] *
                     f->V[j * (size_t)f->k + (size_t)t];
                if ((size_t)t < p->r)
                    y += p->q1[i + (size_t)t * p->m] * p->s[t] * p->q2[j + (size_t)t * p->n];
            }
            num += (x - y) * (x - y);
            den += y * y;
        }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* max_ij |(X^T X - I)_ij| for the row-major rows x k X */
static double orthogonality_loss(const float *x, size_t rows, int k)
{
    double worst = 0;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            double dot = 0;
            for (size_t i = 0; i < rows; i++)
                dot += (double)x[i * (size_t)k + (size_t)a] * x[i * (size_t)k + (size_t)b];
            double e = fabs(dot - (a == b ? 1.0 : 0.0));
            if (e > worst)
                worst = e;
        }
    return worst;
}

static void assert_all_finite(const lx_factors *f)
{
    for (size_t i = 0; i < f->m * (size_t)f->k; i++)
        assert_true(isfinite(f->U[i]));
    for (size_t i = 0; i < f->n * (size_t)f->k; i++)
        assert_true(isfinite(f->V[i]));
    for (int i = 0; i < f->k; i++)
        assert_true(isfinite(f->S[i]));
    for (int i = 0; i < f->l; i++)
        assert_true(isfinite(f->S_block[i]));
}

/* Top-k values equal the planted ones, the factors are orthonormal, and the
 * rank-k product is the planted truncation. */
static void check_planted(const planted *p, const lx_factors *f, int k, double tol)
{
    assert_int_equal(f->k, k);
    assert_all_finite(f);
    for (int i = 0; i < k; i++) {
        double want = (size_t)i < p->r ? p->s[i] : 0.0;
        assert_le(fabs(f->S[i] - want), tol * p->s[0]);
    }
    for (int i = 1; i < k; i++)
        assert_true(f->S[i] <= f->S[i - 1]);
    assert_le(orthogonality_loss(f->U, p->m, k), 1e-4);
    assert_le(orthogonality_loss(f->V, p->n, k), 1e-4);
    assert_le(truncation_error(p, f, k), tol * 10);
    double f2 = 0;
    for (size_t i = 0; i < p->r; i++)
        f2 += p->s[i] * p->s[i];
    assert_le(fabs(f->frob2 - f2), 1e-5 * (f2 > 0 ? f2 : 1));
}

static lx_rsvd_opts opts(int rank)
{
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    o.rank = rank;
    o.seed = 42;
    return o;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    assert_int_equal(o.rank, 6);
    assert_int_equal(o.oversample, 10);
    assert_int_equal(o.passes, 0);
    assert_int_equal(o.max_passes, 12);
    assert_true(o.tol > 0 && o.tol <= 1e-3);
    assert_int_equal(o.exact, 0);
}

static void test_wide(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(120, 0.8);
    plant(&p, 200, 300, s, 120, 1);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_planted(&p, &f, 6, 1e-4);
    assert_int_equal(f.l, 16);
    assert_int_equal(f.converged, 1);
    assert_true(f.passes >= 2 && f.passes <= 6);
    assert_le(f.err_est, o.tol);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* m > n, and m = 2 * 256 + 19: a short last panel */
static void test_tall_short_last_panel(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(170, 0.85);
    plant(&p, 531, 170, s, 170, 2);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    src_ctx c;
    lx_rowsrc src = source(&c, p.a, p.m, p.n);
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
    check_planted(&p, &f, 6, 1e-4);
    /* 3 panels per pass, never more than LX_RSVD_PANEL_ROWS rows */
    assert_int_equal(c.calls, 3 * (size_t)f.passes);
    assert_int_equal(c.max_h, LX_RSVD_PANEL_ROWS);
    assert_int_equal(c.pass, f.passes);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* A power-law spike over a dense bulk (a small LOX.md-like spectrum): the
 * default tolerance gives the rank-6 truncation to well under 1e-3. */
static void test_power_law_default_tol(void **state)
{
    (void)state;
    size_t m = 192, n = 320, r = 192;
    double *s = malloc(r * sizeof *s);
    for (size_t i = 0; i < r; i++)
        s[i] = i < 16 ? pow((double)(i + 1), -1.0) : 0.05 * (1.0 - (double)i / (double)r);
    planted p;
    plant(&p, m, n, s, r, 3);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    assert_int_equal(f.converged, 1);
    assert_le(truncation_error(&p, &f, 6), 1e-3);
    for (int i = 0; i < 6; i++)
        assert_le(fabs(f.S[i] - s[i]), 1e-4 * s[i]);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

static void test_exact_mode(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(90, 0.9);
    plant(&p, 120, 90, s, 90, 4);
    lx_rsvd_opts o = opts(6);
    o.exact = 1;
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_planted(&p, &f, 6, 1e-5);
    assert_int_equal(f.passes, 1);
    assert_int_equal(f.l, 16);
    for (int i = 0; i < f.l; i++)
        assert_le(fabs(f.S_block[i] - s[i]), 1e-5);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* k near min(m, n), k == min(m, n), and k > min(m, n) (clamped) */
static void test_k_near_and_at_min(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(40, 0.9);
    plant(&p, 40, 60, s, 40, 5);
    int ranks[] = {37, 40, 55};
    for (int i = 0; i < 3; i++) {
        lx_rsvd_opts o = opts(ranks[i]);
        lx_factors f;
        assert_int_equal(run(&p, &o, &f), LX_OK);
        int k = ranks[i] < 40 ? ranks[i] : 40;
        check_planted(&p, &f, k, 1e-4);
        assert_int_equal(f.l, 40);
        lx_factors_free(&f);
    }
    free(s);
    unplant(&p);
}

/* rank 3, k = 6: S[3..5] vanish, everything finite, U and V orthonormal.
 * The bound cannot tell sigma_4 = 0 from the rounding of s_1^2, so the three
 * leading directions are deflated (rsvd.c): the second run's vectors (noise,
 * as A - U_3 S_3 V_3^T is) must still be orthonormal to the lead's. */
static void test_rank_deficient(void **state)
{
    (void)state;
    double s[3] = {3.0, 2.0, 1.0};
    planted p;
    plant(&p, 150, 100, s, 3, 6);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_planted(&p, &f, 6, 1e-5);
    for (int i = 3; i < 6; i++)
        assert_le(f.S[i], 1e-5 * f.S[0]);
    assert_int_equal(f.converged, 1);
    assert_true(f.passes >= 2 && f.passes <= o.max_passes);
    assert_le(orthogonality_loss(f.U, p.m, 6), 1e-5);
    assert_le(orthogonality_loss(f.V, p.n, 6), 1e-5);
    lx_factors_free(&f);
    /* the same in exact mode */
    o.exact = 1;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_planted(&p, &f, 6, 1e-5);
    lx_factors_free(&f);
    unplant(&p);
}

static void test_zero_matrix(void **state)
{
    (void)state;
    size_t m = 64, n = 48;
    float *a = calloc(m * n, sizeof *a);
    src_ctx c;
    lx_rowsrc src = source(&c, a, m, n);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
    assert_int_equal(f.k, 6);
    assert_all_finite(&f);
    for (int i = 0; i < 6; i++)
        assert_true(f.S[i] == 0.0f);
    assert_true(f.frob2 == 0.0);
    assert_int_equal(f.passes, 1); /* ||A||_F = 0 after one pass: A_k = 0 is certified */
    assert_int_equal(f.converged, 1);
    assert_le(orthogonality_loss(f.U, m, 6), 1e-5);
    assert_le(orthogonality_loss(f.V, n, 6), 1e-5);
    lx_factors_free(&f);
    o.exact = 1;
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
    for (int i = 0; i < 6; i++)
        assert_true(f.S[i] == 0.0f);
    lx_factors_free(&f);
    free(a);
}

/* 1 x n and m x 1: one singular value, the row's or column's norm */
static void test_single_row_and_column(void **state)
{
    (void)state;
    size_t shapes[2][2] = {{1, 50}, {70, 1}};
    for (int t = 0; t < 2; t++) {
        size_t m = shapes[t][0], n = shapes[t][1], len = m * n;
        float *a = malloc(len * sizeof *a);
        double nrm = 0;
        rng_state = 7 + (uint64_t)t;
        for (size_t i = 0; i < len; i++) {
            a[i] = (float)rng_gauss();
            nrm += (double)a[i] * a[i];
        }
        nrm = sqrt(nrm);
        for (int exact = 0; exact < 2; exact++) {
            src_ctx c;
            lx_rowsrc src = source(&c, a, m, n);
            lx_rsvd_opts o = opts(6);
            o.exact = exact;
            lx_factors f;
            assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
            assert_int_equal(f.k, 1);
            assert_int_equal(f.l, 1);
            assert_all_finite(&f);
            assert_le(fabs(f.S[0] - nrm), 1e-5 * nrm);
            /* U S V^T reproduces A */
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++)
                    assert_le(fabs(f.U[i] * f.S[0] * f.V[j] - a[i * n + j]), 1e-5 * nrm);
            lx_factors_free(&f);
        }
        free(a);
    }
}

static void test_empty_and_bad_rank(void **state)
{
    (void)state;
    float dummy = 0;
    src_ctx c;
    lx_rowsrc src = source(&c, &dummy, 0, 10);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
    assert_int_equal(f.k, 0);
    assert_null(f.U);
    assert_int_equal(f.converged, 1); /* the empty truncation, exactly */
    assert_true(f.err_est == 0);
    lx_factors_free(&f);
    src = source(&c, &dummy, 1, 1);
    o.rank = 0;
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_EUSAGE);
    assert_null(f.U);
    assert_int_equal(f.k, 0);
    assert_int_equal(f.converged, 0); /* nothing computed, nothing claimed */
    assert_int_equal(lx_rsvd_workspace_bytes(0, 10, &o), 0);
}

/* converged and err_est against the planted truth: converged only with a
 * true error within 2 tol, and err_est at least half the true error */
static void check_claim(const planted *p, const lx_factors *f, double tol)
{
    double e = truncation_error(p, f, f->k);
    if (f->converged)
        assert_le(e, 2 * tol);
    assert_le(e / 2, f->err_est);
}

/* fixed mode makes exactly o.passes passes (tol does not stop it), and
 * what it claims holds; one pass does not claim the accuracy of nine */
static void test_fixed_passes(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(60, 0.7);
    plant(&p, 80, 90, s, 60, 8);
    int counts[] = {1, 3, 9};
    for (int i = 0; i < 3; i++) {
        lx_rsvd_opts o = opts(6);
        o.passes = counts[i];
        o.tol = 1e-4;
        lx_factors f;
        src_ctx c;
        lx_rowsrc src = source(&c, p.a, p.m, p.n);
        assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
        assert_int_equal(f.passes, counts[i]);
        assert_int_equal(c.pass, counts[i]);
        check_claim(&p, &f, o.tol);
        if (counts[i] == 1) {
            assert_true(f.err_est > 1e-3);
            assert_int_equal(f.converged, 0);
        } else {
            check_planted(&p, &f, 6, 1e-4);
            assert_int_equal(f.converged, 1);
        }
        lx_factors_free(&f);
    }
    free(s);
    unplant(&p);
}

/* the adaptive cap is honoured, and reported as not converged */
static void test_adaptive_cap(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(60, 0.97);
    plant(&p, 80, 90, s, 60, 9);
    lx_rsvd_opts o = opts(6);
    o.oversample = 0;
    o.tol = 1e-12;
    o.max_passes = 3;
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    assert_int_equal(f.passes, 3);
    assert_int_equal(f.converged, 0);
    assert_true(f.err_est > o.tol);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* A cliff (rsvd_bound.c): 1e4, 9e3, then 0.6 .. 0.37 over a tail from 0.3
 * down to 0.15, whose squares are below the float rounding of s_1^2.  With
 * ||A||_F^2 - sum s_j^2 taken at face value the bound saw a gap of 1 and
 * called 4.18e-5 converged at tol 5e-5 for a true 8.92e-5. */
static double *cliff(size_t r)
{
    double *s = malloc(r * sizeof *s);
    for (size_t i = 0; i < r; i++)
        s[i] = i == 0 ? 1e4 : i == 1 ? 9e3 : i < 6 ? 0.6 * pow(0.85, (double)(i - 2))
               : 0.3 * (1.0 - 0.5 * (double)(i - 6) / (double)r);
    return s;
}

/* Here without the factor 2 of check_claim (which allows for the
 * randomness of the estimate: this failure was the rounding, every time) */
static void test_cliff_bound(void **state)
{
    (void)state;
    planted p;
    double *s = cliff(500);
    plant(&p, 600, 500, s, 500, 10);
    double tols[] = {5e-5, 3e-4, 1e-5};
    for (int i = 0; i < 3; i++) {
        lx_rsvd_opts o = opts(6);
        o.tol = tols[i];
        lx_factors f;
        assert_int_equal(run(&p, &o, &f), LX_OK);
        double e = truncation_error(&p, &f, 6);
        if (f.converged)
            assert_le(e, o.tol);
        assert_le(e, f.err_est);
        lx_factors_free(&f);
    }
    free(s);
    unplant(&p);
}

/* Deflation (a second run on A - U_t S_t V_t^T) counts against the cap too:
 * the reads of A never exceed max_passes, whatever pass the lead is found
 * at; the claim holds, and the two runs' vectors are orthonormal together
 * (analyze projects onto them) */
static void test_deflation_cap(void **state)
{
    (void)state;
    planted p;
    double *s = cliff(300);
    plant(&p, 300, 400, s, 300, 12);
    for (int cap = 2; cap <= 12; cap++) {
        lx_rsvd_opts o = opts(6);
        o.max_passes = cap;
        lx_factors f;
        src_ctx c;
        lx_rowsrc src = source(&c, p.a, p.m, p.n);
        assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
        assert_true(f.passes <= cap);
        assert_int_equal(c.pass, f.passes);
        check_claim(&p, &f, o.tol);
        assert_le(orthogonality_loss(f.U, p.m, 6), 1e-5);
        assert_le(orthogonality_loss(f.V, p.n, 6), 1e-5);
        lx_factors_free(&f);
    }
    free(s);
    unplant(&p);
}

static int bit_identical(const lx_factors *x, const lx_factors *y)
{
    return x->k == y->k && x->passes == y->passes &&
           !memcmp(x->U, y->U, x->m * (size_t)x->k * sizeof(float)) &&
           !memcmp(x->S, y->S, (size_t)x->k * sizeof(float)) &&
           !memcmp(x->V, y->V, x->n * (size_t)x->k * sizeof(float)) &&
           !memcmp(x->S_block, y->S_block, (size_t)x->l * sizeof(float));
}

/* The bounds at every rank (err_at, gap_at) on the three paths: err_at[k]
 * and gap_at[k] are err_est and gap; below k, err_at[r] bounds the error of
 * the top r against the planted rank-r truncation.  Listing ranks (a
 * sweep's) that are >= k, or none, changes no bit; listing every rank
 * below k keeps the passes going until each is certified. */
static void check_ranks_bound(const planted *p, const lx_factors *f, double tol)
{
    assert_non_null(f->err_at);
    assert_true(f->err_at[f->k] == f->err_est);
    assert_true(f->gap_at[f->k] == f->gap);
    for (int r = 1; r < f->k; r++) {
        double e = truncation_error(p, f, r);
        assert_le(e, f->err_at[r] > 0 ? 2 * f->err_at[r] : 1e-6);
        if (f->err_at[r] <= tol)
            assert_le(e, 2 * tol);
    }
}

static void test_rank_bounds(void **state)
{
    (void)state;
    struct {
        size_t m, n, r;
        int cliff;
    } cases[] = {{200, 300, 120, 0}, {30, 300, 30, 0}, {300, 400, 300, 1}};
    for (int c = 0; c < 3; c++) {
        planted p;
        double *s = cases[c].cliff ? cliff(cases[c].r) : geometric(cases[c].r, 0.8);
        plant(&p, cases[c].m, cases[c].n, s, cases[c].r, 3 + (uint64_t)c);
        lx_rsvd_opts o = opts(6);
        lx_factors f, g, h;
        assert_int_equal(run(&p, &o, &f), LX_OK);
        assert_int_equal(f.exact, c == 1);
        check_ranks_bound(&p, &f, o.tol);
        int big[] = {6, 9};
        o.ranks = big;
        o.nranks = 2;
        assert_int_equal(run(&p, &o, &g), LX_OK);
        assert_true(bit_identical(&f, &g));
        /* at a finer tol, alone and with every rank listed: more passes
         * only when the lone run left a rank below k uncertified */
        lx_factors_free(&g);
        int all[] = {5, 1, 3, 2, 4};
        o.ranks = NULL;
        o.nranks = 0;
        o.tol = 1e-5;
        assert_int_equal(run(&p, &o, &g), LX_OK);
        o.ranks = all;
        o.nranks = 5;
        assert_int_equal(run(&p, &o, &h), LX_OK);
        check_ranks_bound(&p, &h, o.tol);
        assert_true(h.passes >= g.passes && h.passes <= o.max_passes);
        int left = 0;
        for (int r = 1; r < g.k; r++)
            left |= g.err_at[r] > o.tol;
        if (h.passes > g.passes)
            assert_true(left);
        lx_factors_free(&f);
        lx_factors_free(&g);
        lx_factors_free(&h);
        free(s);
        unplant(&p);
    }
}

/* same seed: bit-identical, also on 2 BLIS threads; another seed: different
 * bits, same answer */
static void test_determinism(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(100, 0.93);
    plant(&p, 600, 700, s, 100, 10);
    lx_rsvd_opts o = opts(8);
    lx_factors f1, f2, f3, f4;
    assert_int_equal(run(&p, &o, &f1), LX_OK);
    assert_int_equal(run(&p, &o, &f2), LX_OK);
    assert_true(bit_identical(&f1, &f2));
    lx_linalg_set_threads(2);
    lx_status st = run(&p, &o, &f3);
    lx_linalg_set_threads(1);
    assert_int_equal(st, LX_OK);
    assert_true(bit_identical(&f1, &f3));
    o.seed = 43;
    assert_int_equal(run(&p, &o, &f4), LX_OK);
    assert_false(bit_identical(&f1, &f4));
    check_planted(&p, &f4, 8, 1e-4);
    lx_factors_free(&f1);
    lx_factors_free(&f2);
    lx_factors_free(&f3);
    lx_factors_free(&f4);
    free(s);
    unplant(&p);
}

/* an error of the row source, in any pass, comes back unchanged */
static void test_failing_source(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(50, 0.8);
    plant(&p, 600, 80, s, 50, 11);
    for (int exact = 0; exact < 2; exact++) {
        for (int fail_pass = 1; fail_pass <= 2 - exact; fail_pass++) {
            src_ctx c;
            lx_rowsrc src = source(&c, p.a, p.m, p.n);
            c.fail_pass = fail_pass;
            c.fail_row = 300;
            lx_rsvd_opts o = opts(6);
            o.exact = exact;
            lx_factors f;
            assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_EINPUT);
            assert_string_equal(lx_errmsg(), "test source: row 300 is NaN");
            assert_null(f.U);
            assert_null(f.S);
            assert_null(f.V);
            assert_int_equal(f.k, 0);
            lx_factors_free(&f);
        }
    }
    free(s);
    unplant(&p);
}

/* Rows fail from row 300 on, in every pass, and the message names the first
 * row of the failing call.  600 x 80 makes three chunks of 256, 256 and 88
 * rows (rsvd.c): chunks 1 and 2 both fail, on different threads when there
 * are two, and the error must be chunk 1's whatever the timing. */
static void test_failing_chunks(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(50, 0.8);
    plant(&p, 600, 80, s, 50, 11);
    for (int threads = 1; threads <= 2; threads++) {
        for (int rep = 0; rep < 20; rep++) {
            src_ctx c;
            lx_rowsrc src = source(&c, p.a, p.m, p.n);
            c.fail_pass = -1;
            c.fail_row = 300;
            lx_rsvd_opts o = opts(6);
            lx_factors f;
            lx_linalg_set_threads(threads);
            lx_status st = lx_rsvd_topk(&src, &o, &f);
            lx_linalg_set_threads(1);
            assert_int_equal(st, LX_EINPUT);
            assert_string_equal(lx_errmsg(), "test source: rows 256.. fail");
            assert_null(f.U);
            lx_factors_free(&f);
        }
    }
    free(s);
    unplant(&p);
}

/* A NaN or an Inf on the dense path (thin: 20 x 300) is an error naming
 * where it is, not an abort inside libFLAME; the randomized path too */
static void test_nonfinite(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(20, 0.8);
    plant(&p, 20, 300, s, 20, 16);
    float bad[2] = {NAN, INFINITY};
    for (int exact = 0; exact < 2; exact++)
        for (int b = 0; b < 2; b++) {
            float keep = p.a[7 * 300 + 123];
            p.a[7 * 300 + 123] = bad[b];
            lx_rsvd_opts o = opts(6);
            o.exact = exact;
            lx_factors f;
            assert_int_equal(run(&p, &o, &f), LX_EFAIL);
            assert_non_null(strstr(lx_errmsg(), "non-finite"));
            if (exact)
                assert_non_null(strstr(lx_errmsg(), "row 7, column 123"));
            assert_null(f.U);
            assert_int_equal(f.converged, 0);
            lx_factors_free(&f);
            p.a[7 * 300 + 123] = keep;
        }
    free(s);
    unplant(&p);
}

/* lx_factors_rows against a triple loop: a padded ld, kk < k, kk > k,
 * kk = 0, and h * kk beyond its scratch (several GEMMs) */
static void check_factors_rows(const lx_factors *f, int kk, size_t r0, size_t h)
{
    size_t n = f->n, ld = n + 5;
    float *dst = lx_falloc(h * ld); /* GEMM operand: padded (linalg.h) */
    for (size_t i = 0; i < h * ld; i++)
        dst[i] = -7.0f;
    lx_factors_rows(f, kk, 1.25f, r0, h, dst, ld);
    int keff = kk > f->k ? f->k : kk;
    for (size_t i = 0; i < h; i++) {
        for (size_t j = 0; j < n; j++) {
            double want = 0;
            for (int q = 0; q < keff; q++)
                want += 1.25 * f->U[(r0 + i) * (size_t)f->k + (size_t)q] * f->S[q] *
                        f->V[j * (size_t)f->k + (size_t)q];
            assert_le(fabs(dst[i * ld + j] - want), 1e-6);
        }
        for (size_t j = n; j < ld; j++)
            assert_true(dst[i * ld + j] == -7.0f);
    }
    free(dst);
}

static void test_factors_rows(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(90, 0.9);
    plant(&p, 300, 90, s, 90, 12);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    int kks[] = {1, 3, 6, 9, 0};
    for (int t = 0; t < 5; t++)
        check_factors_rows(&f, kks[t], 13, 31);
    lx_factors_free(&f);
    o.rank = 70;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_factors_rows(&f, 70, 0, 300); /* 300 x 70 > 16384 */
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* lx_factors_add_rows against base + the rank-kk sum in double: f32 within
 * float rounding of the sum; bf16 and f16 the nearest value of the dtype to
 * it (a rounding boundary closer than the f32 error may go either way);
 * full and partial column blocks (n = 1100: 512 + 512 + 76), kk below, at
 * and above k, kk = 0 (a copy), rank 70 (coefficients in two groups), and
 * dst == base. */
static float decode(lx_dtype dt, const unsigned char *p, size_t i)
{
    float x;
    lx_to_f32(dt, p + i * (lx_dtype_bits(dt) / 8), &x, 1);
    return x;
}

static void check_add_rows(const lx_factors *f, int kk, size_t r0, size_t h, lx_dtype dt,
                           int in_place)
{
    size_t n = f->n, es = lx_dtype_bits(dt) / 8;
    float *bf = malloc(h * n * sizeof(float));
    unsigned char *base = malloc(h * n * es), *dst = malloc(h * n * es);
    for (size_t i = 0; i < h * n; i++)
        bf[i] = (float)(rng_gauss() * 0.05);
    lx_from_f32(dt, bf, base, h * n);
    if (in_place)
        memcpy(dst, base, h * n * es);
    size_t bad = lx_factors_add_rows(f, kk, 1.25f, r0, h, dt, in_place ? dst : base, dst);
    assert_int_equal(bad, h * n); /* nothing overflows */
    int keff = kk > f->k ? f->k : kk < 0 ? 0 : kk;
    for (size_t i = 0; i < h; i++) {
        for (size_t j = 0; j < n; j++) {
            double sum = 0, mag = 0;
            for (int q = 0; q < keff; q++) {
                double t = 1.25 * f->U[(r0 + i) * (size_t)f->k + (size_t)q] * f->S[q] *
                           f->V[j * (size_t)f->k + (size_t)q];
                sum += t;
                mag += fabs(t);
            }
            double b = decode(dt, base, i * n + j), want = b + sum;
            double got = decode(dt, dst, i * n + j);
            /* the f32 sum's own error (coefficient, product and additions:
             * about kk + 3 roundings of terms at most mag), then one
             * rounding to the dtype */
            double slack = (keff + 4) * 0x1p-24 * mag + 0x1p-24 * fabs(want) + 1e-30;
            /* the spacing of the dtype near want is at most |want| 2^-(p-1) */
            double ulp = dt == LX_DT_F32 ? 0 : fabs(want) * (dt == LX_DT_BF16 ? 0x1p-7 : 0x1p-10);
            if (keff == 0)
                assert_true(got == b);
            else
                assert_le(fabs(got - want), 0.5 * ulp + slack + (dt == LX_DT_F16 ? 0x1p-25 : 0));
        }
    }
    free(bf);
    free(base);
    free(dst);
}

static void test_factors_add_rows(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(90, 0.9);
    plant(&p, 120, 1100, s, 90, 13);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    lx_dtype dts[] = {LX_DT_F32, LX_DT_BF16, LX_DT_F16};
    int kks[] = {1, 6, 9, 0};
    for (int d = 0; d < 3; d++)
        for (int t = 0; t < 4; t++)
            check_add_rows(&f, kks[t], 7, 19, dts[d], t == 1);
    lx_factors_free(&f);
    o.rank = 70;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    assert_int_equal(f.k, 70);
    check_add_rows(&f, 70, 0, 120, LX_DT_F32, 0);
    check_add_rows(&f, 70, 3, 9, LX_DT_BF16, 1);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

/* lx_factors_add_rows's overflow index: base holds the dtype's largest
 * finite value, of the update's sign, at three elements whose update is
 * large, and S and alpha scale the largest sum of the update's terms to
 * 1/64 of that value (so that nothing else, nor any coefficient, which is
 * at most sqrt(n) times that sum, overflows).  The returned index is
 * the first non-finite element of dst in row-major order, found here by
 * decoding dst: row 3's element (in the last column block) comes before
 * row 5's (in the first block, which the kernel makes earlier) and row 14's
 * (another group of rows). */
static void check_overflow(lx_factors *f, lx_dtype dt)
{
    size_t n = f->n, h = 19, r0 = 2, es = lx_dtype_bits(dt) / 8, k = (size_t)f->k;
    double big = lx_dtype_max(dt);
    /* S times a power of two near big / 16 (exact), so that alpha stays
     * near 1 and finite in f32 */
    float scale = ldexpf(1.0f, ilogb(big) - 4);
    for (size_t q = 0; q < k; q++)
        f->S[q] *= scale;
    double *upd = malloc(h * n * sizeof(double)), top = 0;
    float *bf = malloc(h * n * sizeof(float));
    unsigned char *base = malloc(h * n * es), *dst = malloc(h * n * es);
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = 0, mag = 0;
            for (size_t q = 0; q < k; q++) {
                double t = (double)f->U[(r0 + i) * k + q] * f->S[q] * f->V[j * k + q];
                sum += t;
                mag += fabs(t);
            }
            upd[i * n + j] = sum;
            top = mag > top ? mag : top;
        }
    float alpha = (float)(big / 64 / top);
    /* the column of row i in [lo, hi) with the largest update */
    size_t rows[3] = {3, 5, 14}, lo[3] = {1024, 0, 0}, hi[3] = {n, 512, n}, at[3];
    for (size_t i = 0; i < h * n; i++)
        bf[i] = (float)(rng_gauss() * 0.05);
    for (int p = 0; p < 3; p++) {
        size_t best = lo[p];
        for (size_t j = lo[p]; j < hi[p]; j++)
            if (fabs(upd[rows[p] * n + j]) > fabs(upd[rows[p] * n + best]))
                best = j;
        at[p] = rows[p] * n + best;
        /* alpha times it is above half a unit in the last place of big
         * (2^-8 big for BF16, the coarsest) */
        assert_true(fabs(upd[at[p]]) * alpha > big / 200);
        bf[at[p]] = (float)(upd[at[p]] > 0 ? big : -big);
    }
    lx_from_f32(dt, bf, base, h * n);
    size_t bad = lx_factors_add_rows(f, 6, alpha, r0, h, dt, base, dst);
    size_t first = h * n;
    for (size_t i = 0; i < h * n && first == h * n; i++)
        if (!isfinite(decode(dt, dst, i)))
            first = i;
    for (int p = 0; p < 3; p++)
        assert_true(isinf(decode(dt, dst, at[p])));
    assert_int_equal(first, at[0]);
    assert_int_equal(bad, first);
    for (size_t q = 0; q < k; q++)
        f->S[q] /= scale;
    free(upd);
    free(bf);
    free(base);
    free(dst);
}

static void test_factors_add_rows_overflow(void **state)
{
    (void)state;
    planted p;
    double *s = geometric(90, 0.9);
    plant(&p, 120, 1100, s, 90, 17);
    lx_rsvd_opts o = opts(6);
    lx_factors f;
    assert_int_equal(run(&p, &o, &f), LX_OK);
    check_overflow(&f, LX_DT_F16);
    check_overflow(&f, LX_DT_BF16);
    check_overflow(&f, LX_DT_F32);
    lx_factors_free(&f);
    free(s);
    unplant(&p);
}

static void test_matrix_seed(void **state)
{
    (void)state;
    uint64_t a = lx_matrix_seed(0, "model.layers.0.mlp.up_proj.weight", 0);
    assert_true(a == lx_matrix_seed(0, "model.layers.0.mlp.up_proj.weight", 0));
    assert_true(a != lx_matrix_seed(1, "model.layers.0.mlp.up_proj.weight", 0));
    assert_true(a != lx_matrix_seed(0, "model.layers.1.mlp.up_proj.weight", 0));
    assert_true(a != lx_matrix_seed(0, "model.layers.0.mlp.up_proj.weight", 1));
    assert_true(lx_matrix_seed(0, "", 0) != lx_matrix_seed(0, "", 1));
    /* XXH3 is specified bit-exactly: the seed must never change between
     * versions or platforms, or resumed runs would mix two test matrices */
    assert_true(a == UINT64_C(0xb215a345d5355f08));
}

static void test_workspace_bytes(void **state)
{
    (void)state;
    lx_rsvd_opts o = opts(6);
    size_t small = lx_rsvd_workspace_bytes(200, 300, &o);
    size_t big = lx_rsvd_workspace_bytes(4096, 11008, &o);
    assert_true(small > 0 && small < big);
    /* the panel alone is 256 x 11008 floats; the whole stays O((m + n) l) */
    assert_true(big > 256 * 11008 * sizeof(float));
    assert_true(big < 64u << 20);
    o.exact = 1;
    assert_true(lx_rsvd_workspace_bytes(4096, 11008, &o) > (size_t)4096 * 11008 * 4);
}

static int setup(void **state)
{
    (void)state;
    return lx_linalg_init(1) == LX_OK ? 0 : -1;
}

/* lx_sgemm_panel_serial (one BLIS call) gives the bits of lx_sgemm_panel
 * (C cut into blocks, on 1 or 2 threads) in the layout of Z += A^T Y
 * (linalg.h) up to its k limit, on random shapes, the pass's own (n x l x h:
 * 11008 x 16 x 16) among them: the passes use the first, the rest of the
 * program the second.  LX_PANEL_SHAPES=N tries N shapes (default 50). */
static void test_panel_serial(void **state)
{
    (void)state;
    rng_state = 0x5e71a1ULL;
    int iters = getenv("LX_PANEL_SHAPES") ? atoi(getenv("LX_PANEL_SHAPES")) : 50;
    for (int it = 0; it < iters; it++) {
        size_t m = it == 0 ? 11008 : 1 + rng_next() % 12000;
        size_t n = it == 0 ? 16 : 1 + rng_next() % 80;
        size_t k = it == 0 ? 16 : 1 + rng_next() % LX_GEMM_SERIAL_MAX_K;
        float beta = it == 0 || rng_next() % 2 ? 1.0f : 0.0f;
        /* A^T: a row-major k x m read transposed; Y (k x n) and Z (m x n)
         * column-major */
        float *A = lx_falloc(m * k), *B = lx_falloc(k * n), *C[2];
        assert_non_null(A);
        assert_non_null(B);
        for (size_t i = 0; i < m * k; i++)
            A[i] = (float)rng_gauss();
        for (size_t i = 0; i < k * n; i++)
            B[i] = (float)rng_gauss();
        for (int v = 0; v < 2; v++) {
            C[v] = lx_falloc(m * n);
            assert_non_null(C[v]);
        }
        for (size_t i = 0; i < m * n; i++)
            C[0][i] = C[1][i] = (float)rng_gauss();
        lx_linalg_set_threads(1 + it % 2);
        lx_sgemm_panel(m, n, k, 1.0f, A, 1, (ptrdiff_t)m, B, 1, (ptrdiff_t)k, beta, C[0], 1,
                       (ptrdiff_t)m);
        lx_linalg_set_threads(1);
        lx_sgemm_panel_serial(m, n, k, 1.0f, A, 1, (ptrdiff_t)m, B, 1, (ptrdiff_t)k, beta, C[1],
                              1, (ptrdiff_t)m);
        if (memcmp(C[0], C[1], m * n * sizeof(float)) != 0)
            fail_msg("%zu x %zu x %zu, beta %g: the bits differ", m, n, k, (double)beta);
        free(A);
        free(B);
        free(C[0]);
        free(C[1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_wide),
        cmocka_unit_test(test_tall_short_last_panel),
        cmocka_unit_test(test_power_law_default_tol),
        cmocka_unit_test(test_exact_mode),
        cmocka_unit_test(test_k_near_and_at_min),
        cmocka_unit_test(test_rank_deficient),
        cmocka_unit_test(test_zero_matrix),
        cmocka_unit_test(test_single_row_and_column),
        cmocka_unit_test(test_empty_and_bad_rank),
        cmocka_unit_test(test_fixed_passes),
        cmocka_unit_test(test_adaptive_cap),
        cmocka_unit_test(test_cliff_bound),
        cmocka_unit_test(test_deflation_cap),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_failing_source),
        cmocka_unit_test(test_failing_chunks),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_panel_serial),
        cmocka_unit_test(test_factors_rows),
        cmocka_unit_test(test_factors_add_rows),
        cmocka_unit_test(test_factors_add_rows_overflow),
        cmocka_unit_test(test_matrix_seed),
        cmocka_unit_test(test_workspace_bytes),
        cmocka_unit_test(test_rank_bounds),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

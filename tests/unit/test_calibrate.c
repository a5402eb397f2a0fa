/* test_calibrate.c - is --tol a promise?  The reported err_est of the
 * randomized SVD (and of its dense path) against the true error, over
 * matrices of the spectra real alignment deltas and LoRA factors have.
 *
 * Every matrix is A = Q1 diag(sigma) Q2^T (Q1, Q2 from a QR of Gaussian
 * matrices, in double), stored as float32; the reference is the exact rank-k
 * truncation of that float32 matrix, from LAPACK's dgesvd in double called
 * here directly (the code under test factors in float, or through its own
 * wrapper).  For every matrix and tol in {3e-4, 1e-5}:
 *     true = ||U_k S_k V_k^T - A_k||_F / ||A_k||_F
 * and the test fails when
 *   - a matrix reported converged has true > 2 tol (the factor 2 allows
 *     for the estimate's randomness, nothing more), or
 *   - any err_est < true / 2 (err_est must bound, converged or not), or
 *   - fewer than 80% of the well-posed matrices converge within the
 *     default max_passes, or fewer than 95% at the default tol (all of them
 *     did when this was written: the steep ones only through deflation).
 * Well-posed: relative gap (sigma_k - sigma_k+1) / sigma_k >= 1e-2, or
 * sigma_k so small that the choice within the tie cannot matter
 * (sigma_k <= tol / 100 * ||A_k||_F).
 * Beside the generated matrices, every 2-D tensor of the real PEFT
 * training pairs in tests/data/real (GPT-2: checkpoint-2000 -> 7500,
 * RoBERTa: 500 -> 2400; $TESTS_SRCDIR) is checked the same way.
 * The bounds at the ranks r < k (lx_factors.err_at) are held to the same
 * two rules against the exact rank-r truncation, on every run and on a
 * sweep's run (every rank 1 .. k - 1 listed in lx_rsvd_opts.ranks, so the
 * passes go on until each is certified) at both tols.
 * Prints one line per matrix and tol, one per sweep, and one per rank
 * below k that fails (every rank with CALIBRATE_RANKS set); "-v" prints
 * the spectra too.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/checkpoint.h"
#include "loxstream/dtype.h"
#include "loxstream/linalg.h"
#include "loxstream/rsvd.h"
#include "prng.h"

/* LAPACK in double, straight from libFLAME (not through loxstream). */
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda,
             const double *tau, double *work, const int *lwork, int *info);

static void die(const char *what)
{
    fprintf(stderr, "test_calibrate: %s\n", what);
    exit(2);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* rows x cols (cols <= rows) orthonormal, column-major: Q of a Gaussian. */
static double *orthonormal(int rows, int cols)
{
    double *q = xmalloc((size_t)rows * cols * sizeof *q);
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        q[i] = rng_gauss();
    double *tau = xmalloc((size_t)cols * sizeof *tau), wq;
    int info = 0, query = -1;
    dgeqrf_(&rows, &cols, q, &rows, tau, &wq, &query, &info);
    int lwork = (int)wq + 64 * cols;
    double *work = xmalloc((size_t)lwork * sizeof *work);
    dgeqrf_(&rows, &cols, q, &rows, tau, work, &lwork, &info);
    if (info == 0)
        dorgqr_(&rows, &cols, &cols, q, &rows, tau, work, &lwork, &info);
    if (info != 0)
        die("QR failed");
    free(tau);
    free(work);
    return q;
}

/* ---- the matrices ------------------------------------------------------------ */

typedef struct mat {
    char name[64];
    int m, n;
    float *a;        /* row-major, what the code under test sees */
} mat;

/* sigma of family `fam` (p values), by name */
static void spectrum(const char *fam, double x, int p, double *s)
{
    for (int i = 0; i < p; i++) {
        double t = i + 1;
        if (!strcmp(fam, "lora")) {
            /* rank-8 LoRA factor product: geometric from 1 to 1/x at i = 6 */
            s[i] = i < 8 ? pow(x, -(double)i / 5.0) : 0;
        } else if (!strcmp(fam, "power")) {
            s[i] = pow(t, -x);
        } else if (!strcmp(fam, "bulk")) {
            /* power-law top over a dense bulk at x of sigma_1 */
            s[i] = pow(t, -1.0) + x * (1.0 - 0.3 * (double)i / p);
        } else if (!strcmp(fam, "gap")) {
            /* power law with sigma_6 / sigma_7 = x */
            s[i] = pow(t, -0.5) * (i >= 6 ? 1.0 / x * pow(6.0 / 7.0, -0.5) : 1.0);
        } else if (!strcmp(fam, "flat")) {
            s[i] = 1.0;
        } else if (!strcmp(fam, "lowrank")) {
            s[i] = i < (int)x ? pow(t, -0.7) : 0;
        } else if (!strcmp(fam, "steep")) {
            /* sigma_1 / sigma_6 = x, then a bulk at sigma_6 / 4 */
            s[i] = i < 6 ? pow(x, -(double)i / 5.0) : pow(x, -1.0) / 4 * (1.0 - 0.5 * (double)i / p);
        } else if (!strcmp(fam, "cliff")) {
            /* two leading values (1, 0.9), then x, 0.85 x, .. to sigma_6 =
             * 0.61 x, and a tail from x / 2 down to x / 4: the squares of
             * all but the first two are below FLT_EPSILON sigma_1^2 */
            s[i] = i < 2 ? 1.0 - 0.1 * i
                   : i < 6 ? x * pow(0.85, i - 2) : x / 2 * (1.0 - 0.5 * (double)(i - 6) / p);
        } else {
            die("unknown family");
        }
    }
}

static mat planted(const char *fam, double x, int m, int n, uint64_t seed)
{
    mat M;
    snprintf(M.name, sizeof M.name, "%s(%g) %dx%d", fam, x, m, n);
    M.m = m;
    M.n = n;
    rng_state = seed;
    int p = m < n ? m : n;
    double *s = xmalloc((size_t)p * sizeof *s);
    double *q1 = orthonormal(m, p), *q2 = orthonormal(n, p);
    M.a = xmalloc((size_t)m * n * sizeof *M.a);
    if (!strcmp(fam, "noise")) {
        for (size_t i = 0; i < (size_t)m * n; i++)
            M.a[i] = (float)rng_gauss();
    } else {
        spectrum(fam, x, p, s);
        /* A = Q1 diag(s) Q2^T, row-major */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double v = 0;
                for (int t = 0; t < p; t++)
                    if (s[t] != 0)
                        v += q1[i + (size_t)t * m] * s[t] * q2[j + (size_t)t * n];
                M.a[(size_t)i * n + j] = (float)v;
            }
    }
    free(s);
    free(q1);
    free(q2);
    return M;
}

/* ---- the reference: exact truncation in double ------------------------------- */

typedef struct ref {
    int k, p;
    double *s;       /* all p singular values */
    double *T;       /* m x n row-major: the rank-k truncation */
    double tnorm;    /* ||T||_F */
    double *us;      /* m x k row-major: the top k left vectors times s */
    double *vt;      /* k x n row-major: the top k right vectors */
} ref;

static void ref_free(ref *R)
{
    free(R->s);
    free(R->T);
    free(R->us);
    free(R->vt);
}

static ref reference(const mat *M, int k)
{
    int m = M->m, n = M->n, p = m < n ? m : n, info = 0, query = -1;
    double *a = xmalloc((size_t)m * n * sizeof *a);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            a[i + (size_t)j * m] = M->a[(size_t)i * n + j];
    ref R = {.k = k < p ? k : p, .p = p};
    R.s = xmalloc((size_t)p * sizeof *R.s);
    double *u = xmalloc((size_t)m * p * sizeof *u), *vt = xmalloc((size_t)p * n * sizeof *vt);
    double wq;
    dgesvd_("S", "S", &m, &n, a, &m, R.s, u, &m, vt, &p, &wq, &query, &info);
    int lwork = (int)wq;
    double *work = xmalloc((size_t)lwork * sizeof *work);
    dgesvd_("S", "S", &m, &n, a, &m, R.s, u, &m, vt, &p, work, &lwork, &info);
    if (info != 0)
        die("dgesvd failed");
    R.T = xmalloc((size_t)m * n * sizeof *R.T);
    double t2 = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int t = 0; t < R.k; t++)
                v += u[i + (size_t)t * m] * R.s[t] * vt[t + (size_t)j * p];
            R.T[(size_t)i * n + j] = v;
            t2 += v * v;
        }
    R.tnorm = sqrt(t2);
    R.us = xmalloc((size_t)m * R.k * sizeof *R.us);
    R.vt = xmalloc((size_t)R.k * n * sizeof *R.vt);
    for (int i = 0; i < m; i++)
        for (int t = 0; t < R.k; t++)
            R.us[(size_t)i * R.k + t] = u[i + (size_t)t * m] * R.s[t];
    for (int t = 0; t < R.k; t++)
        for (int j = 0; j < n; j++)
            R.vt[(size_t)t * n + j] = vt[t + (size_t)j * p];
    free(a);
    free(u);
    free(vt);
    free(work);
    return R;
}

/* ---- the code under test ----------------------------------------------------- */

static lx_status rows_of(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    const mat *M = ctx;
    for (size_t i = 0; i < h; i++)
        memcpy(dst + i * ld, M->a + (r0 + i) * (size_t)M->n, (size_t)M->n * sizeof(float));
    return LX_OK;
}

static double true_error(const mat *M, const ref *R, const lx_factors *f)
{
    int m = M->m, n = M->n;
    double e2 = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int t = 0; t < f->k; t++)
                v += (double)f->U[(size_t)i * f->k + t] * f->S[t] * f->V[(size_t)j * f->k + t];
            double d = v - R->T[(size_t)i * n + j];
            e2 += d * d;
        }
    return R->tnorm > 0 ? sqrt(e2) / R->tnorm : sqrt(e2);
}

typedef struct tally {
    int runs, bad_converged, bad_bound, wellposed, wellposed_converged;
    int wp_default, wpc_default; /* the same two at the default tol */
    /* the bounds at the ranks r < k (lx_factors.err_at): every run's, and
     * the sweep runs' (all of 1 .. k - 1 listed in lx_rsvd_opts.ranks) */
    int ranks, rank_bad_converged, rank_bad_bound;
    int sweeps, sw_wellposed, sw_wellposed_converged, sw_passes, sw_passes_plain;
    double rank_worst; /* the largest true / tol of a rank r < k reported converged */
} tally;

/* e[r] = ||U_r S_r V_r^T - A_r||_F / ||A_r||_F for r = 1 .. k - 1 (the top
 * r of f against the exact rank-r truncation), in one sweep over the
 * entries. */
static void rank_errors(const mat *M, const ref *R, const lx_factors *f, double *e)
{
    int m = M->m, n = M->n, k = f->k < R->k ? f->k : R->k;
    double e2[64] = {0};
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double v = 0;
            for (int t = 0; t + 1 < k; t++) {
                v += (double)f->U[(size_t)i * f->k + t] * f->S[t] * f->V[(size_t)j * f->k + t] -
                     R->us[(size_t)i * R->k + t] * R->vt[(size_t)t * n + j];
                e2[t + 1] += v * v;
            }
        }
    double n2 = 0;
    for (int r = 1; r < k; r++) {
        n2 += R->s[r - 1] * R->s[r - 1];
        e[r] = n2 > 0 ? sqrt(e2[r] / n2) : sqrt(e2[r]);
    }
}

/* Well-posed at rank r as at k (see the file comment). */
static int wellposed_at(const ref *R, int r, double tol)
{
    double sr = R->s[r - 1], sr1 = r < R->p ? R->s[r] : 0, n2 = 0;
    for (int j = 0; j < r; j++)
        n2 += R->s[j] * R->s[j];
    return (sr > 0 ? (sr - sr1) / sr : 1) >= 1e-2 || sr <= tol / 100 * sqrt(n2);
}

/* The ranks r < k of f against the truth: converged at r (err_at[r] <=
 * tol) implies true <= 2 tol, and err_at[r] >= true / 2 always; a line
 * for each failure.  Returns how many ranks were checked. */
static int check_ranks(const mat *M, const ref *R, const lx_factors *f, double tol, tally *t,
                       int *wp, int *wpc)
{
    double e[64];
    int k = f->k < R->k ? f->k : R->k;
    if (k < 2)
        return 0;
    if (!f->err_at)
        die("no err_at");
    rank_errors(M, R, f, e);
    for (int r = 1; r < k; r++) {
        int conv = f->err_at[r] <= tol, badc = conv && e[r] > 2 * tol;
        int badb = f->err_at[r] < e[r] / 2, w = wellposed_at(R, r, tol);
        t->ranks++;
        t->rank_bad_converged += badc;
        t->rank_bad_bound += badb;
        *wp += w;
        *wpc += w && conv;
        if (conv && e[r] / tol > t->rank_worst)
            t->rank_worst = e[r] / tol;
        if (badc || badb || getenv("CALIBRATE_RANKS"))
            printf("%-28s tol %-6g rank %d: err_at %-9.3g true %-9.3g%s%s\n", M->name, tol, r,
                   f->err_at[r], e[r], badc ? "  CONVERGED BEYOND TOL" : "",
                   badb ? "  ESTIMATE BELOW TRUE/2" : "");
    }
    return k - 1;
}

static double o_default_tol(void)
{
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    return o.tol;
}

/* Returns the passes. */
static int check(const mat *M, const ref *R, double tol, int verbose, tally *t)
{
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    o.tol = tol;
    o.seed = 0x5eed;
    lx_rowsrc src = {.m = (size_t)M->m, .n = (size_t)M->n, .rows = rows_of, .ctx = (void *)M};
    lx_factors f;
    if (lx_rsvd_topk(&src, &o, &f) != LX_OK)
        die(lx_errmsg());
    double e = true_error(M, R, &f);
    int k = R->k, wp = 0, wpc = 0;
    check_ranks(M, R, &f, tol, t, &wp, &wpc);
    double sk = R->s[k - 1], sk1 = k < R->p ? R->s[k] : 0;
    double gap = sk > 0 ? (sk - sk1) / sk : 1;
    int wellposed = gap >= 1e-2 || sk <= tol / 100 * R->tnorm;
    int badc = f.converged && e > 2 * tol;
    int badb = f.err_est < e / 2;
    t->runs++;
    t->bad_converged += badc;
    t->bad_bound += badb;
    t->wellposed += wellposed;
    t->wellposed_converged += wellposed && f.converged;
    if (tol == o_default_tol()) {
        t->wp_default += wellposed;
        t->wpc_default += wellposed && f.converged;
    }
    printf("%-28s tol %-6g %s gap %-8.2g s1/sk %-8.3g %-10s passes %2d %-3s "
           "err_est %-9.3g true %-9.3g%s%s\n",
           M->name, tol, wellposed ? "well" : "ill ", gap, sk > 0 ? R->s[0] / sk : INFINITY,
           f.exact ? "exact" : "randomized", f.passes, f.converged ? "yes" : "no", f.err_est, e,
           badc ? "  CONVERGED BEYOND TOL" : "", badb ? "  ESTIMATE BELOW TRUE/2" : "");
    if (verbose) {
        printf("    exact:");
        for (int i = 0; i < k + 2 && i < R->p; i++)
            printf(" %.6g", R->s[i]);
        printf("\n    found:");
        for (int i = 0; i < f.k; i++)
            printf(" %.6g", f.S[i]);
        printf("  (gap estimate %.3g)\n", f.gap);
    }
    int passes = f.passes;
    lx_factors_free(&f);
    return passes;
}

/* A sweep's factorisation: every rank 1 .. k - 1 listed, so the passes go
 * on until each is certified; one line with the passes (and those of the
 * plain run, plain_passes) and the ranks that converged. */
static void check_sweep(const mat *M, const ref *R, double tol, int plain_passes, tally *t)
{
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    o.tol = tol;
    o.seed = 0x5eed;
    int ranks[64], k = R->k, wp = 0, wpc = 0;
    for (int r = 1; r < k; r++)
        ranks[r - 1] = r;
    o.ranks = ranks;
    o.nranks = (size_t)(k - 1);
    lx_rowsrc src = {.m = (size_t)M->m, .n = (size_t)M->n, .rows = rows_of, .ctx = (void *)M};
    lx_factors f;
    if (lx_rsvd_topk(&src, &o, &f) != LX_OK)
        die(lx_errmsg());
    int n = check_ranks(M, R, &f, tol, t, &wp, &wpc), conv = 0;
    for (int r = 1; r < f.k; r++)
        conv += f.err_at[r] <= tol;
    /* and rank k itself, after the longer run */
    double e = true_error(M, R, &f);
    int badc = f.converged && e > 2 * tol, badb = f.err_est < e / 2;
    t->rank_bad_converged += badc;
    t->rank_bad_bound += badb;
    t->sweeps++;
    t->sw_wellposed += wp;
    t->sw_wellposed_converged += wpc;
    t->sw_passes += f.passes;
    t->sw_passes_plain += plain_passes;
    printf("%-28s tol %-6g sweep 1..%d passes %2d (alone %2d) converged at %d of %d ranks "
           "below k, %d of %d well-posed; at k %-3s true %-9.3g%s%s\n",
           M->name, tol, k - 1, f.passes, plain_passes, conv, n, wpc, wp,
           f.converged ? "yes" : "no", e, badc ? "  CONVERGED BEYOND TOL" : "",
           badb ? "  ESTIMATE BELOW TRUE/2" : "");
    lx_factors_free(&f);
}

/* Every 2-D float tensor in both checkpoints: dW = aligned - base, in f32
 * as the row source computes it (both converted exactly, one rounding). */
static void real_pair(const char *base, const char *aligned, int verbose, tally *t)
{
    lx_checkpoint *B, *A;
    if (lx_checkpoint_open(base, &B) != LX_OK || lx_checkpoint_open(aligned, &A) != LX_OK)
        die(lx_errmsg());
    for (size_t i = 0; i < A->ntensors; i++) {
        const lx_tensor *ta = &A->tensors[i], *tb = lx_checkpoint_find(B, ta->name);
        if (!tb || ta->ndim != 2 || tb->ndim != 2 || ta->nelem != tb->nelem ||
            !lx_dtype_is_transformable(ta->dtype) || !lx_dtype_is_transformable(tb->dtype))
            continue;
        mat M;
        snprintf(M.name, sizeof M.name, "%.40s", ta->name + (strlen(ta->name) > 40 ? strlen(ta->name) - 40 : 0));
        M.m = (int)ta->shape[0];
        M.n = (int)ta->shape[1];
        size_t len = ta->nelem;
        float *a = xmalloc(len * sizeof *a), *b = xmalloc(len * sizeof *b);
        lx_to_f32(ta->dtype, ta->data, a, len);
        lx_to_f32(tb->dtype, tb->data, b, len);
        M.a = xmalloc(len * sizeof *M.a);
        for (size_t j = 0; j < len; j++)
            M.a[j] = (float)((double)a[j] - (double)b[j]);
        ref R = reference(&M, 6);
        int passes = check(&M, &R, 3e-4, verbose, t);
        check(&M, &R, 1e-5, verbose, t);
        check_sweep(&M, &R, 3e-4, passes, t);
        ref_free(&R);
        free(M.a);
        free(a);
        free(b);
    }
    lx_checkpoint_close(A);
    lx_checkpoint_close(B);
}

int main(int argc, char **argv)
{
    int verbose = argc > 1 && !strcmp(argv[1], "-v");
    const char *only = getenv("CALIBRATE_ONLY"); /* a family name: just those cases */
    if (lx_linalg_init(1) != LX_OK)
        die(lx_errmsg());
    struct {
        const char *fam;
        double x;
        int m, n;
    } cases[] = {
        /* LoRA factor products, capped shapes of LoRA factors themselves */
        {"lora", 30, 300, 200},     {"lora", 300, 400, 250},    {"lora", 3000, 256, 600},
        {"lora", 30, 8, 300},       {"lora", 3000, 8, 768},     {"power", 1, 768, 8},
        {"power", 1, 16, 500},      {"power", 0.3, 4, 300},     {"lora", 300, 40, 500},
        /* power laws, with and without a dense bulk */
        {"power", 0.5, 500, 300},   {"power", 1, 300, 700},     {"power", 2, 400, 400},
        {"bulk", 0.05, 1376, 512},  {"bulk", 0.02, 600, 300},   {"bulk", 0.1, 300, 500},
        /* near-degenerate and clear gaps at sigma_6 / sigma_7 */
        {"gap", 1.0003, 300, 400},  {"gap", 1.001, 400, 300},   {"gap", 1.003, 700, 300},
        {"gap", 1.01, 400, 300},    {"gap", 1.05, 300, 500},
        {"gap", 1.3, 500, 300},
        /* flat, noise, exact low rank */
        {"flat", 0, 300, 200},      {"noise", 0, 400, 300},     {"lowrank", 3, 300, 400},
        {"lowrank", 6, 400, 300},   {"lowrank", 10, 300, 300},
        /* steep: sigma_1 / sigma_6 up to 1e4 */
        {"steep", 100, 500, 300},   {"steep", 1000, 400, 600},  {"steep", 1e4, 600, 400},
        /* a cliff: two leading values over a tail whose squares are lost in
         * float rounding of sigma_1^2 */
        {"cliff", 1.5e-5, 300, 700}, {"cliff", 6e-5, 300, 700}, {"cliff", 1.2e-4, 400, 300},
    };
    tally t = {0};
    size_t ncases = sizeof cases / sizeof cases[0];
    /* round 0: the set the constants of rsvd.c were calibrated on; round 1:
     * held out, never tuned on: other seeds, the shapes transposed, the
     * family parameters moved (gaps and ratios by a factor 1.7, exponents by
     * 1.2) */
    for (int round = 0; round < 2; round++) {
        for (size_t c = 0; c < ncases; c++) {
            if (only && strcmp(only, cases[c].fam))
                continue;
            double x = cases[c].x;
            int m = cases[c].m, n = cases[c].n;
            if (round == 1) {
                m = cases[c].n;
                n = cases[c].m;
                if (!strcmp(cases[c].fam, "gap"))
                    x = 1 + (x - 1) * 1.7;
                else if (!strcmp(cases[c].fam, "power"))
                    x *= 1.2;
                else if (strcmp(cases[c].fam, "lowrank") && strcmp(cases[c].fam, "flat") &&
                         strcmp(cases[c].fam, "noise"))
                    x *= 1.7;
            }
            mat M = planted(cases[c].fam, x, m, n, 1000 + c + 7919 * (uint64_t)round);
            ref R = reference(&M, 6);
            int passes = check(&M, &R, 3e-4, verbose, &t);
            int passes_fine = check(&M, &R, 1e-5, verbose, &t);
            check_sweep(&M, &R, 3e-4, passes, &t);
            check_sweep(&M, &R, 1e-5, passes_fine, &t);
            ref_free(&R);
            free(M.a);
        }
    }
    const char *src = getenv("TESTS_SRCDIR");
    if (src && !only) {
        static const char *pairs[][2] = {
            {"gpt2-lora-run/checkpoint-2000", "gpt2-lora-run/checkpoint-7500"},
            {"roberta-lora/checkpoint-500", "roberta-lora/checkpoint-2400"},
        };
        for (size_t i = 0; i < 2; i++) {
            char b[4096], a[4096];
            snprintf(b, sizeof b, "%s/data/real/%s/adapter_model.safetensors", src, pairs[i][0]);
            snprintf(a, sizeof a, "%s/data/real/%s/adapter_model.safetensors", src, pairs[i][1]);
            real_pair(b, a, verbose, &t);
        }
    } else if (!only) {
        printf("note: TESTS_SRCDIR unset: the real pairs were not checked\n");
    }
    double share = t.wellposed ? (double)t.wellposed_converged / t.wellposed : 1;
    double share_d = t.wp_default ? (double)t.wpc_default / t.wp_default : 1;
    printf("%d runs: %d converged beyond 2 tol, %d estimates below true/2; well-posed "
           "converged: %d of %d at both tols (%.0f%%, need 80%%), %d of %d at the default "
           "tol (%.0f%%, need 95%%)\n",
           t.runs, t.bad_converged, t.bad_bound, t.wellposed_converged, t.wellposed, 100 * share,
           t.wpc_default, t.wp_default, 100 * share_d);
    printf("ranks below k: %d checked, %d converged beyond 2 tol, %d estimates below true/2, "
           "largest true/tol when converged %.3g; %d sweeps (every rank 1..k-1 listed): "
           "well-posed ranks converged %d of %d, passes %d (alone %d)\n",
           t.ranks, t.rank_bad_converged, t.rank_bad_bound, t.rank_worst, t.sweeps,
           t.sw_wellposed_converged, t.sw_wellposed, t.sw_passes, t.sw_passes_plain);
    return t.bad_converged || t.bad_bound || share < 0.8 || share_d < 0.95 ||
           t.rank_bad_converged || t.rank_bad_bound;
}

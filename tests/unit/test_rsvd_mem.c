/* test_rsvd_mem.c - lx_rsvd_workspace_bytes against what lx_rsvd_topk
 * actually allocates.
 *
 * The binary is linked with -Wl,--wrap for malloc, calloc, realloc, free,
 * aligned_alloc and posix_memalign, so every allocation made by loxstream's
 * code (the static library: its own buffers and the work arrays it hands to
 * libFLAME) goes through the counters below, which keep the bytes requested
 * per pointer and the peak of their sum.  Allocations inside the shared
 * libraries (libFLAME's own, BLIS's packing pool) are not seen, nor meant to
 * be: the estimate's allowance is for the work arrays loxstream allocates.
 * For ranks from 1 to 64 on randomized shapes, on a spectrum that deflates
 * (two runs and the merge) and one that does not, and on thin (dense)
 * shapes, the peak during lx_rsvd_topk minus what was live before must not
 * exceed the estimate.
 */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "loxstream/linalg.h"
#include "loxstream/rsvd.h"
#include "prng.h"

/* ---- counting allocator ------------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t c, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t c, size_t n);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);

#define SLOTS 65536 /* power of 2: open addressing on the pointer */
static struct {
    void *p;
    size_t n;
} slot[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static size_t live, peak;

static size_t hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x >> 40) & (SLOTS - 1);
}

static void track(void *p, size_t n)
{
    if (!p)
        return;
    pthread_mutex_lock(&lock);
    size_t h = hash(p);
    while (slot[h].p && slot[h].p != (void *)1)
        h = (h + 1) & (SLOTS - 1);
    slot[h].p = p;
    slot[h].n = n;
    live += n;
    if (live > peak)
        peak = live;
    pthread_mutex_unlock(&lock);
}

static void untrack(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&lock);
    for (size_t h = hash(p); slot[h].p; h = (h + 1) & (SLOTS - 1))
        if (slot[h].p == p) {
            live -= slot[h].n;
            slot[h].p = (void *)1; /* a tombstone */
            break;
        }
    pthread_mutex_unlock(&lock);
}

void *__wrap_malloc(size_t n)
{
    void *p = __real_malloc(n);
    track(p, n);
    return p;
}

void *__wrap_calloc(size_t c, size_t n)
{
    void *p = __real_calloc(c, n);
    track(p, c * n);
    return p;
}

void *__wrap_realloc(void *p, size_t n)
{
    untrack(p);
    void *q = __real_realloc(p, n);
    track(q, n);
    return q;
}

void __wrap_free(void *p)
{
    untrack(p);
    __real_free(p);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    void *p = __real_aligned_alloc(a, n);
    track(p, n);
    return p;
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    int r = __real_posix_memalign(p, a, n);
    if (r == 0)
        track(*p, n);
    return r;
}

/* ---- matrices ------------------------------------------------------------------ */

typedef struct mat {
    size_t m, n;
    float *a;
} mat;

/* A = G1 diag(s) G2^T with Gaussian G1, G2 (not orthonormal: the spectrum's
 * shape is what matters here, steep or not) */
static mat make(size_t m, size_t n, int steep, uint64_t seed)
{
    mat M = {m, n, calloc(m * n, sizeof(float))};
    assert_non_null(M.a);
    rng_state = seed;
    size_t p = m < n ? m : n, r = steep ? 200 : 40;
    r = r < p ? r : p;
    double *g1 = malloc(m * r * sizeof *g1), *g2 = malloc(n * r * sizeof *g2);
    for (size_t i = 0; i < m * r; i++)
        g1[i] = rng_gauss() / sqrt((double)m);
    for (size_t i = 0; i < n * r; i++)
        g2[i] = rng_gauss() / sqrt((double)n);
    for (size_t t = 0; t < r; t++) {
        /* steep: two leading values over a full-rank tail (deflated at
         * every rank); else a geometric rank-40 spectrum */
        double s = steep ? (t < 2 ? 1e4 / (1 + t) : 0.6 * pow(0.99, (double)t))
                         : pow(0.9, (double)t);
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                M.a[i * n + j] += (float)(g1[i * r + t] * s * g2[j * r + t]);
    }
    free(g1);
    free(g2);
    return M;
}

static lx_status rows_of(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    const mat *M = ctx;
    for (size_t i = 0; i < h; i++)
        memcpy(dst + i * ld, M->a + (r0 + i) * M->n, M->n * sizeof(float));
    return LX_OK;
}

/* peak bytes of one lx_rsvd_topk above what was live before it, against the
 * estimate; returns the passes, for the callers' checks */
static int measure(const mat *M, int rank, int exact, double *ratio)
{
    lx_rsvd_opts o;
    lx_rsvd_opts_default(&o);
    o.rank = rank;
    o.exact = exact;
    o.seed = 7;
    size_t est = lx_rsvd_workspace_bytes(M->m, M->n, &o);
    lx_rowsrc src = {.m = M->m, .n = M->n, .rows = rows_of, .ctx = (void *)M};
    lx_factors f;
    pthread_mutex_lock(&lock);
    size_t base = live;
    peak = live;
    pthread_mutex_unlock(&lock);
    assert_int_equal(lx_rsvd_topk(&src, &o, &f), LX_OK);
    size_t used = peak - base;
    int passes = f.passes;
    lx_factors_free(&f);
    if (used > est)
        fail_msg("%zu x %zu, rank %d%s: %zu bytes allocated, estimate %zu (+%.1f%%)", M->m,
                 M->n, rank, exact ? " (exact)" : "", used, est,
                 100.0 * ((double)used / (double)est - 1));
    *ratio = (double)used / (double)est;
    return passes;
}

/* 600 x 2000 steep: the second run of rank 31 keeps 3 blocks of 41 where
 * the first (rank 33) kept 2 of 43, and its buffers outgrew the estimate by
 * 1.5% (4.2% measured on larger shapes) */
static void test_randomized_ranks(void **state)
{
    (void)state;
    static const int ranks[] = {1, 2, 5, 9, 13, 17, 21, 23, 27, 31, 33, 34, 38, 45, 52, 64};
    for (int steep = 0; steep < 2; steep++) {
        mat M = steep ? make(600, 2000, 1, 12) : make(300, 520, 0, 11);
        double worst = 0, r;
        for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
            measure(&M, ranks[i], 0, &r);
            worst = r > worst ? r : worst;
        }
        /* not a vacuous estimate either: within a factor 2 of the peak */
        assert_true(worst > 0.5);
        free(M.a);
    }
}

static void test_dense_shapes(void **state)
{
    (void)state;
    size_t shapes[][2] = {{40, 500}, {500, 40}, {8, 768}, {120, 90}};
    for (size_t s = 0; s < 4; s++) {
        mat M = make(shapes[s][0], shapes[s][1], 0, 20 + (uint64_t)s);
        double r;
        for (int k = 1; k <= 8; k++)
            measure(&M, k, s == 3, &r);
        free(M.a);
    }
}

static int setup(void **state)
{
    (void)state;
    return lx_linalg_init(1) == LX_OK ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_randomized_ranks),
        cmocka_unit_test(test_dense_shapes),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}

/* test_lanes.c - the lanes of apply (lanes.h): the factors taken are those
 * lx_engine_factor gives, in the job's order, and while the job writes the
 * matrix it took (outside lx_lanes_take) no matrix more than `ahead`
 * beyond it has been claimed (the man page: "at most two matrices ahead
 * of the one being written"); within a cap that two factorisations do not
 * fit, one runs at a time, a matrix not listed (lx_lanes_factor) included
 * (lx_rsvd_topk wrapped: -Wl,--wrap, counting the ones running); a
 * factorisation that one thread runs while the other has nothing to claim
 * goes on all the threads, and on its share while both factor. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/engine.h"
#include "loxstream/lanes.h"
#include "loxstream/linalg.h"
#include "prng.h"

#define NITEMS 12
#define M 200
#define N 160

typedef struct fixture {
    lx_tensor ta[NITEMS], tb[NITEMS];
    lx_plan_item items[NITEMS];
    float *data[2 * NITEMS];
    uint64_t shape[NITEMS][2];
    char names[NITEMS][16];
} fixture;

static atomic_long writing = -1;   /* the position the job writes, -1: none */
static atomic_int too_far;         /* claims beyond writing + ahead seen */
static atomic_int befores;
static const lx_plan_item *first_item;

/* the factorisations running at once, and their most */
static atomic_int running, most, slow;
/* test_widths: each factorisation waits for `meet` running at once, then up
 * to `patience` ms for its thread count to reach e.threads; the count each
 * saw */
static atomic_int meet, patience, seen[2], nseen;
lx_status __real_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f);
lx_status __wrap_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f);
lx_status __wrap_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f)
{
    int now = atomic_fetch_add(&running, 1) + 1, m = atomic_load(&most);
    while (now > m && !atomic_compare_exchange_weak(&most, &m, now))
        ;
    if (atomic_load(&slow))
        usleep(10000);
    int want = atomic_load(&meet);
    if (want) {
        for (int i = 0; i < 5000 && atomic_load(&running) < want; i++)
            usleep(1000);
        for (int i = 0; i < atomic_load(&patience) && lx_linalg_threads() < 2; i++)
            usleep(1000);
        int k = atomic_fetch_add(&nseen, 1);
        if (k < 2)
            atomic_store(&seen[k], lx_linalg_threads());
        /* none finishes (letting the other thread widen the rest) before all
         * have looked */
        for (int i = 0; i < 5000 && atomic_load(&nseen) < want; i++)
            usleep(1000);
    }
    lx_status st = __real_lx_rsvd_topk(a, o, f);
    atomic_fetch_sub(&running, 1);
    return st;
}

static void before(void *ctx, const lx_plan_item *it)
{
    (void)ctx;
    long p = (long)(it - first_item), w = atomic_load(&writing);
    if (w >= 0 && p > w + 2)
        atomic_fetch_add(&too_far, 1);
    atomic_fetch_add(&befores, 1);
}

static void fixture_make(fixture *F)
{
    rng_state = 42;
    memset(F, 0, sizeof *F);
    for (int i = 0; i < NITEMS; i++) {
        snprintf(F->names[i], sizeof F->names[i], "w%d", i);
        F->shape[i][0] = M;
        F->shape[i][1] = N;
        for (int s = 0; s < 2; s++) {
            float *d = F->data[2 * i + s] = malloc(M * N * sizeof *d);
            assert_non_null(d);
            for (int k = 0; k < M * N; k++)
                d[k] = (float)rng_gauss() * (s ? 1.0f : 1.01f);
            lx_tensor *t = s ? &F->tb[i] : &F->ta[i];
            t->name = F->names[i];
            t->dtype = LX_DT_F32;
            t->ndim = 2;
            t->shape = F->shape[i];
            t->nelem = M * N;
            t->nbytes = M * N * sizeof(float);
            t->data = (const unsigned char *)d;
        }
        lx_plan_item *it = &F->items[i];
        it->aligned = &F->ta[i];
        it->base = &F->tb[i];
        it->action = LX_ACT_LOWRANK;
        it->batch = 1;
        it->m = M;
        it->n = N;
        it->role = "aligned";
    }
}

static void fixture_free(fixture *F)
{
    for (int i = 0; i < 2 * NITEMS; i++)
        free(F->data[i]);
}

static void test_window_and_factors(void **state)
{
    (void)state;
    static fixture F;
    fixture_make(&F);
    first_item = F.items;
    assert_int_equal(lx_linalg_init(1), LX_OK); /* one thread: no OpenMP pool spinning */
    lx_engine_opts e;
    lx_engine_opts_default(&e);
    e.threads = 2;
    lx_lane_mat mats[NITEMS];
    for (int i = 0; i < NITEMS; i++)
        mats[i] = (lx_lane_mat){&F.items[i], 0, 4};
    lx_lanes *L = lx_lanes_start(&e, mats, NITEMS, 2, 64u << 20, before, NULL);
    assert_non_null(L);
    for (int i = 0; i < NITEMS; i++) {
        atomic_store(&writing, -1);
        size_t pos = lx_lanes_find(L, &F.items[i], 0);
        assert_int_equal(pos, i);
        lx_factors f, g;
        lx_factor_stats s, t;
        memset(&s, 0, sizeof s);
        memset(&t, 0, sizeof t);
        assert_int_equal(lx_lanes_take(L, pos, &f, &s), LX_OK);
        atomic_store(&writing, i);
        /* the same bits as the matrix factored here, in turn */
        assert_int_equal(lx_engine_factor(&e, &F.items[i], 0, 4, &g, &t), LX_OK);
        assert_int_equal(f.k, g.k);
        assert_memory_equal(f.S, g.S, (size_t)g.k * sizeof *g.S);
        assert_memory_equal(f.U, g.U, (size_t)M * g.k * sizeof *g.U);
        assert_memory_equal(f.V, g.V, (size_t)N * g.k * sizeof *g.V);
        lx_factors_free(&f);
        lx_factors_free(&g);
        usleep(20000); /* writing: the other lane runs ahead meanwhile */
    }
    lx_lanes_stop(L);
    assert_int_equal(atomic_load(&befores), NITEMS);
    assert_int_equal(atomic_load(&too_far), 0);
    fixture_free(&F);
}

static void test_cap(void **state)
{
    (void)state;
    static fixture F;
    fixture_make(&F);
    first_item = F.items;
    assert_int_equal(lx_linalg_init(1), LX_OK); /* one thread: no OpenMP pool spinning */
    lx_engine_opts e;
    lx_engine_opts_default(&e);
    e.threads = 2;
    lx_lane_mat mats[NITEMS / 2];
    for (int i = 0; i < NITEMS / 2; i++)
        mats[i] = (lx_lane_mat){&F.items[i], 0, 4};
    atomic_store(&slow, 1);
    /* for comparison: beside the lane, lx_engine_factor alone overlaps it
     * (apply's matrices not listed, before lx_lanes_factor; timing) */
    atomic_store(&most, 0);
    lx_lanes *L = lx_lanes_start(&e, mats, NITEMS / 2, 2, 1, NULL, NULL);
    assert_non_null(L);
    lx_factors f;
    lx_factor_stats s;
    memset(&s, 0, sizeof s);
    for (int i = NITEMS / 2; i < NITEMS / 2 + 3; i++) {
        assert_int_equal(lx_engine_factor(&e, &F.items[i], 0, 4, &f, &s), LX_OK);
        lx_factors_free(&f);
    }
    lx_lanes_stop(L);
    int control = atomic_load(&most);
    /* through the lanes: one at a time, listed or not */
    atomic_store(&most, 0);
    L = lx_lanes_start(&e, mats, NITEMS / 2, 2, 1, NULL, NULL);
    assert_non_null(L);
    for (int i = NITEMS / 2; i < NITEMS; i++) {
        assert_int_equal(lx_lanes_factor(L, &F.items[i], 0, 4, &f, &s), LX_OK);
        lx_factors_free(&f);
    }
    for (int i = 0; i < NITEMS / 2; i++) {
        assert_int_equal(lx_lanes_take(L, lx_lanes_find(L, &F.items[i], 0), &f, &s), LX_OK);
        lx_factors_free(&f);
    }
    lx_lanes_stop(L);
    atomic_store(&slow, 0);
    print_message("beside the lane, lx_engine_factor alone: %d at once\n", control);
    assert_int_equal(atomic_load(&most), 1);
    assert_int_equal(s.matrices, 3 + NITEMS);
    fixture_free(&F);
}

/* Take positions 0 .. n-1 of L, then stop it. */
static void take_all(lx_lanes *L, size_t n)
{
    for (size_t p = 0; p < n; p++) {
        lx_factors f;
        lx_factor_stats s;
        memset(&s, 0, sizeof s);
        assert_int_equal(lx_lanes_take(L, p, &f, &s), LX_OK);
        lx_factors_free(&f);
    }
    lx_lanes_stop(L);
}

static void slow_before(void *ctx, const lx_plan_item *it)
{
    (void)ctx;
    (void)it;
    usleep(200000);
}

/* One matrix: whichever thread factors it, the other has nothing to claim
 * and gives it both threads (e.threads) within 5 s.  Two: while both
 * factor, each on its own one (the shares of e.threads = 2) for 0.3 s; so
 * too the two matrices of a 3-D item, the second of which the other thread
 * may claim only after the first's before() (slow): it has waited
 * meanwhile, widening the first, and narrows it again. */
static void test_widths(void **state)
{
    (void)state;
    static fixture F;
    fixture_make(&F);
    first_item = F.items;
    assert_int_equal(lx_linalg_init(1), LX_OK);
    lx_engine_opts e;
    lx_engine_opts_default(&e);
    e.threads = 2;
    lx_lane_mat mats[2] = {{&F.items[0], 0, 4}, {&F.items[1], 0, 4}};
    for (size_t n = 1; n <= 2; n++) {
        atomic_store(&meet, (int)n);
        atomic_store(&patience, n == 1 ? 5000 : 300);
        atomic_store(&nseen, 0);
        lx_lanes *L = lx_lanes_start(&e, mats, n, 2, 64u << 20, NULL, NULL);
        assert_non_null(L);
        take_all(L, n);
        assert_int_equal(atomic_load(&nseen), (int)n);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(atomic_load(&seen[i]), n == 1 ? 2 : 1);
    }
    /* the 3-D item: matrices 0 and 1 of [2, M, N] */
    float *d3[2];
    lx_tensor t3[2];
    uint64_t shape3[3] = {2, M, N};
    for (int k = 0; k < 2; k++) {
        assert_non_null(d3[k] = malloc(2 * M * N * sizeof(float)));
        memcpy(d3[k], F.data[k], M * N * sizeof(float));
        memcpy(d3[k] + M * N, F.data[2 + k], M * N * sizeof(float));
        t3[k] = F.ta[0];
        t3[k].ndim = 3;
        t3[k].shape = shape3;
        t3[k].nelem = 2 * M * N;
        t3[k].nbytes = 2 * M * N * sizeof(float);
        t3[k].data = (const unsigned char *)d3[k];
    }
    lx_plan_item it3 = F.items[0];
    it3.aligned = &t3[0];
    it3.base = &t3[1];
    it3.batch = 2;
    lx_lane_mat m3[2] = {{&it3, 0, 4}, {&it3, 1, 4}};
    atomic_store(&meet, 2);
    atomic_store(&patience, 300);
    atomic_store(&nseen, 0);
    lx_lanes *L = lx_lanes_start(&e, m3, 2, 2, 64u << 20, slow_before, NULL);
    assert_non_null(L);
    take_all(L, 2);
    assert_int_equal(atomic_load(&nseen), 2);
    assert_int_equal(atomic_load(&seen[0]), 1);
    assert_int_equal(atomic_load(&seen[1]), 1);
    atomic_store(&meet, 0);
    free(d3[0]);
    free(d3[1]);
    fixture_free(&F);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_and_factors),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_widths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

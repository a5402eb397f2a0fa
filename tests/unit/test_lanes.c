/* test_lanes.c - the lanes of apply (lanes.h): the factors taken are those
 * lx_engine_factor gives, in the job's order, and while the job writes the
 * matrix it took (outside lx_lanes_take) no matrix more than `ahead`
 * beyond it has been claimed (the man page: "at most two matrices ahead
 * of the one being written"); within a cap that two factorisations do not
 * fit, one runs at a time, a matrix not listed (lx_lanes_factor) included
 * (lx_rsvd_topk wrapped: -Wl,--wrap, counting the ones running). */
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
lx_status __real_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f);
lx_status __wrap_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f);
lx_status __wrap_lx_rsvd_topk(const lx_rowsrc *a, const lx_rsvd_opts *o, lx_factors *f)
{
    int now = atomic_fetch_add(&running, 1) + 1, m = atomic_load(&most);
    while (now > m && !atomic_compare_exchange_weak(&most, &m, now))
        ;
    if (atomic_load(&slow))
        usleep(10000);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_and_factors),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

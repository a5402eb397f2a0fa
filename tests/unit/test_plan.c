/* test_plan.c - lx_plan_partition (plan.h): the byte-balanced contiguous
 * split of a plan's items into the parts of apply --part I/N.
 *
 * Plans are built by hand (an item is its tensor's byte count and whether
 * it is copied or transformed; nothing else is read).  Each table row's
 * bounds were worked out by hand from plan.h's rule: an item weighs its
 * bytes, twice when transformed; item j goes to the part whose share
 * [(p-1) W / N, p W / N) of the total W holds the midpoint of j's
 * cumulative range; then, with at least N items, no part is left empty.
 * Random plans check the invariants (bounds from 0 to n, monotone, every
 * item in exactly one part, no empty part when n >= N) and the rule itself,
 * restated here with exact comparisons instead of the code's division.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/plan.h"

/* ---- plans by hand -------------------------------------------------------- */

#define CP 1 /* copied: weighs its bytes once */
#define TR 2 /* transformed: twice */

typedef struct hand_plan {
    lx_plan plan;
    lx_tensor *tensors;
} hand_plan;

/* n items; bytes[j] and weight[j] (CP or TR) per item */
static hand_plan make_plan(size_t n, const uint64_t *bytes, const int *weight)
{
    hand_plan h;
    memset(&h, 0, sizeof h);
    h.tensors = calloc(n ? n : 1, sizeof *h.tensors);
    h.plan.items = calloc(n ? n : 1, sizeof *h.plan.items);
    assert_non_null(h.tensors);
    assert_non_null(h.plan.items);
    h.plan.n = n;
    for (size_t j = 0; j < n; j++) {
        h.tensors[j].nbytes = bytes[j];
        h.plan.items[j].aligned = &h.tensors[j];
        h.plan.items[j].base = weight[j] == TR ? &h.tensors[j] : NULL;
        h.plan.items[j].action = weight[j] == TR ? LX_ACT_LOWRANK : LX_ACT_COPY;
    }
    return h;
}

static void free_plan(hand_plan *h)
{
    free(h->tensors);
    free(h->plan.items);
}

/* bounds of the partition, malloc'd (nparts + 1 entries) */
static size_t *partition(const hand_plan *h, unsigned nparts)
{
    size_t *b = malloc((nparts + 1) * sizeof *b);
    assert_non_null(b);
    lx_plan_partition(&h->plan, nparts, b);
    return b;
}

/* ---- the table ------------------------------------------------------------- */

#define MAX_ITEMS 8

typedef struct row {
    const char *what;
    size_t n;
    uint64_t bytes[MAX_ITEMS];
    int weight[MAX_ITEMS];
    unsigned nparts;
    size_t bounds[MAX_ITEMS + 2]; /* nparts + 1 entries */
} row;

static const row table[] = {
    {"one part", 3, {10, 20, 30}, {TR, CP, TR}, 1, {0, 3}},
    {"one item, one part", 1, {5}, {TR}, 1, {0, 1}},
    {"no items", 0, {0}, {0}, 3, {0, 0, 0, 0}},
    /* W = 120, shares of 40: midpoints 10 30 | 50 70 | 90 110 */
    {"equal sizes", 6, {10, 10, 10, 10, 10, 10}, {TR, TR, TR, TR, TR, TR}, 3, {0, 2, 4, 6}},
    /* W = 140, shares of 46.7: midpoints 10 30 | 50 70 90 | 110 130 */
    {"equal sizes, 7 in 3", 7, {10, 10, 10, 10, 10, 10, 10}, {TR, TR, TR, TR, TR, TR, TR}, 3,
     {0, 2, 5, 7}},
    /* a copy weighs half: W = 2+2+1+1+1+1 = 8, shares of 4: midpoints
     * 1 3 | 4.5 5.5 6.5 7.5 */
    {"copies weigh once", 6, {1, 1, 1, 1, 1, 1}, {TR, TR, CP, CP, CP, CP}, 2, {0, 2, 6}},
    /* W = 40, shares of 10: midpoints 10 (share 2) and 30 (share 4); fewer
     * items than parts: parts 1 and 3 stay empty */
    {"more parts than items", 2, {10, 10}, {TR, TR}, 4, {0, 0, 1, 1, 2}},
    {"more parts than items, one item", 1, {7}, {CP}, 3, {0, 0, 1, 1}},
    /* w = 2 2 2000 2 2, W = 2008, shares of 669.3: midpoints 1 3 | 1004 |
     * 2005 2007 */
    {"one huge item in the middle", 5, {1, 1, 1000, 1, 1}, {TR, TR, TR, TR, TR}, 3, {0, 2, 3, 5}},
    /* midpoints 1000 (share 2) 2001 2003 2005 (share 3): part 1 would be
     * empty; its boundary moves to 1, and part 2's to 2 */
    {"one huge item first", 4, {1000, 1, 1, 1}, {TR, TR, TR, TR}, 3, {0, 1, 2, 4}},
    /* midpoints 1 3 5 (share 1) 1006 (share 2): part 3 would be empty; the
     * boundaries move back to leave it the huge item */
    {"one huge item last", 4, {1, 1, 1, 1000}, {TR, TR, TR, TR}, 3, {0, 2, 3, 4}},
    /* no bytes at all: by count, j to part floor(j N / n) + 1 = 1 1 1 2 2 */
    {"zero-byte plan", 5, {0, 0, 0, 0, 0}, {TR, CP, TR, CP, TR}, 2, {0, 3, 5}},
    /* W = 40, shares of 20: midpoints 0 10 | 20 20 30 40 (the end, in the
     * last part) */
    {"zero-byte items among others", 6, {0, 10, 0, 0, 10, 0}, {TR, TR, CP, TR, TR, CP}, 2,
     {0, 2, 6}},
    /* midpoints 0 0 | 10: part 2 would be empty */
    {"zero-byte items, one item a part", 3, {0, 0, 10}, {TR, TR, TR}, 3, {0, 1, 2, 3}},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof table / sizeof *table; r++) {
        const row *t = &table[r];
        hand_plan h = make_plan(t->n, t->bytes, t->weight);
        size_t *b = partition(&h, t->nparts);
        for (unsigned q = 0; q <= t->nparts; q++) {
            if (b[q] != t->bounds[q])
                fail_msg("%s: bounds[%u] = %zu, expected %zu", t->what, q, b[q], t->bounds[q]);
        }
        free(b);
        free_plan(&h);
    }
}

/* N = LX_MAX_PARTS over LX_MAX_PARTS + 1 equal items: item j's midpoint
 * (j + 1/2) w against shares of W / N = 10000 w / 9999 gives part
 * floor((2j + 1) 9999 / 20000) + 1, which is j + 1 up to j = 4999 and j
 * from j = 5000 on: part 5000 holds items 4999 and 5000, every other part
 * one item.  With exactly LX_MAX_PARTS items, part p holds item p - 1. */
static void test_max_parts(void **state)
{
    (void)state;
    size_t n = LX_MAX_PARTS + 1;
    uint64_t *bytes = malloc(n * sizeof *bytes);
    int *weight = malloc(n * sizeof *weight);
    assert_non_null(bytes);
    assert_non_null(weight);
    for (size_t j = 0; j < n; j++) {
        bytes[j] = 4096;
        weight[j] = TR;
    }
    hand_plan h = make_plan(n, bytes, weight);
    size_t *b = partition(&h, LX_MAX_PARTS);
    for (size_t q = 0; q <= LX_MAX_PARTS; q++) {
        size_t want = q < 5000 ? q : q + 1;
        if (b[q] != want)
            fail_msg("bounds[%zu] = %zu, expected %zu", q, b[q], want);
    }
    free(b);
    h.plan.n = LX_MAX_PARTS;
    b = partition(&h, LX_MAX_PARTS);
    for (size_t q = 0; q <= LX_MAX_PARTS; q++)
        if (b[q] != q)
            fail_msg("%zu items: bounds[%zu] = %zu, expected %zu", n - 1, q, b[q], q);
    free(b);
    free_plan(&h);
    free(bytes);
    free(weight);
}

/* Weights whose products pass 2^64: three transformed items of 2^61 bytes
 * (W = 3 * 2^62) in 9999 parts; midpoints at W/6, W/2, 5W/6 give parts
 * floor(9999/6) + 1 = 1667, 5000 and floor(5 * 9999 / 6) + 1 = 8333. */
static void test_huge_weights(void **state)
{
    (void)state;
    uint64_t bytes[3] = {(uint64_t)1 << 61, (uint64_t)1 << 61, (uint64_t)1 << 61};
    int weight[3] = {TR, TR, TR};
    hand_plan h = make_plan(3, bytes, weight);
    size_t *b = partition(&h, LX_MAX_PARTS);
    for (size_t q = 0; q <= LX_MAX_PARTS; q++) {
        size_t want = q == 0 ? 0 : q <= 1666 ? 0 : q <= 4999 ? 1 : q <= 8332 ? 2 : 3;
        if (b[q] != want)
            fail_msg("bounds[%zu] = %zu, expected %zu", q, b[q], want);
    }
    free(b);
    free_plan(&h);
}

/* ---- random plans ------------------------------------------------------------ */

/* plan.h's rule, restated: the 0-based share holding item j's midpoint,
 * found by comparing 2 (p-1) W <= N (2 CP + w) < 2 p W (exact, in 128 bits),
 * clamped to the last share; by count when W = 0. */
static unsigned share_of(uint64_t cum, uint64_t w, uint64_t total, unsigned nparts, size_t j,
                         size_t n)
{
    if (total == 0)
        return (unsigned)((uint64_t)j * nparts / n);
    unsigned __int128 x = ((unsigned __int128)cum * 2 + w) * nparts;
    for (unsigned p = 0; p < nparts; p++)
        if (x < (unsigned __int128)2 * total * (p + 1))
            return p;
    return nparts - 1;
}

static void expected_bounds(const hand_plan *h, unsigned nparts, size_t *want)
{
    size_t n = h->plan.n;
    uint64_t total = 0, cum = 0;
    for (size_t j = 0; j < n; j++)
        total += h->tensors[j].nbytes * (h->plan.items[j].action == LX_ACT_COPY ? 1 : 2);
    /* want[q]: the first item of a share >= q, n if none */
    for (unsigned q = 0; q <= nparts; q++)
        want[q] = n;
    unsigned *owner = malloc((n ? n : 1) * sizeof *owner);
    assert_non_null(owner);
    for (size_t j = 0; j < n; j++) {
        uint64_t w = h->tensors[j].nbytes * (h->plan.items[j].action == LX_ACT_COPY ? 1 : 2);
        owner[j] = share_of(cum, w, total, nparts, j, n);
        cum += w;
    }
    for (unsigned q = 1; q < nparts; q++)
        for (size_t j = 0; j < n; j++)
            if (owner[j] >= q) {
                want[q] = j;
                break;
            }
    want[0] = 0;
    free(owner);
    if (n < nparts)
        return;
    for (unsigned q = 1; q < nparts; q++) {
        if (want[q] < want[q - 1] + 1)
            want[q] = want[q - 1] + 1;
        if (want[q] > n - (nparts - q))
            want[q] = n - (nparts - q);
    }
}

static uint64_t rng_state = 20261128;

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void test_random_plans(void **state)
{
    (void)state;
    uint64_t bytes[64];
    int weight[64];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(rnd() % 65);
        unsigned nparts = (unsigned)(1 + rnd() % (round % 4 == 0 ? 80 : 16));
        unsigned shape = (unsigned)(rnd() % 4); /* mostly small, some zero, some huge */
        for (size_t j = 0; j < n; j++) {
            uint64_t r = rnd();
            bytes[j] = shape == 0 ? r % 5 : shape == 1 ? r % 1000 : shape == 2 ? (r % 3 ? 0 : r % 50)
                                                                           : (r % 10 ? 64 : r >> 24);
            weight[j] = rnd() % 3 ? TR : CP;
        }
        hand_plan h = make_plan(n, bytes, weight);
        size_t *b = partition(&h, nparts), *again = partition(&h, nparts);
        size_t want[81];
        expected_bounds(&h, nparts, want);
        assert_int_equal(b[0], 0);
        assert_int_equal(b[nparts], n);
        size_t *seen = calloc(n ? n : 1, sizeof *seen);
        assert_non_null(seen);
        for (unsigned q = 0; q < nparts; q++) {
            assert_true(b[q] <= b[q + 1]);          /* monotone */
            if (n >= nparts)
                assert_true(b[q] < b[q + 1]);       /* no empty part */
            for (size_t j = b[q]; j < b[q + 1]; j++)
                seen[j]++;
        }
        for (size_t j = 0; j < n; j++)
            if (seen[j] != 1)
                fail_msg("round %d: item %zu of %zu in %zu parts of %u", round, j, n, seen[j],
                         nparts);
        for (unsigned q = 0; q <= nparts; q++) {
            assert_int_equal(again[q], b[q]);       /* the plan and N only */
            if (b[q] != want[q])
                fail_msg("round %d (%zu items, %u parts): bounds[%u] = %zu, the rule gives %zu",
                         round, n, nparts, q, b[q], want[q]);
        }
        free(seen);
        free(again);
        free(b);
        free_plan(&h);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_max_parts),
        cmocka_unit_test(test_huge_weights),
        cmocka_unit_test(test_random_plans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

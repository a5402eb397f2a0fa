/* test_wqueue.c - the writer queue runs jobs in push order on one thread,
 * bounds its buffers, stops at the first failure and reports it on the
 * caller's thread with the writer's message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/wqueue.h"

typedef struct log {
    size_t n;
    uint64_t seen[4096];
    int fail_at;                   /* job value that fails, or -1 */
    pthread_t writer;
    int one_thread;                /* every job ran on the same thread */
    int slow;                      /* microseconds per job */
    unsigned char pattern_ok;      /* every buffer held its job's pattern */
} log_t;

static lx_status job_fn(void *ctx, const lx_wq_job *j)
{
    log_t *l = ctx;
    if (l->n == 0)
        l->writer = pthread_self();
    else if (!pthread_equal(l->writer, pthread_self()))
        l->one_thread = 0;
    if (l->slow)
        usleep((useconds_t)l->slow);
    if (j->buf && j->len && ((const unsigned char *)j->buf)[j->len - 1] != (unsigned char)j->off)
        l->pattern_ok = 0;
    if ((int)j->off == l->fail_at)
        return lx_fail(LX_EOUTPUT, "job %d: disk full", (int)j->off);
    l->seen[l->n++] = j->off;
    return LX_OK;
}

static void test_order_and_buffers(void **state)
{
    (void)state;
    log_t l = {.fail_at = -1, .one_thread = 1, .pattern_ok = 1, .slow = 50};
    lx_wqueue *q;
    assert_int_equal(lx_wq_start(&q, job_fn, &l, 2, 64, 8), LX_OK);
    for (int i = 0; i < 300; i++) {
        lx_wq_job j = {.off = (uint64_t)i, .slot = -1};
        if (i % 3 == 0) { /* through a pool buffer, filled after getting it */
            unsigned char *b = lx_wq_buffer(q, &j.slot);
            assert_non_null(b);
            assert_true(j.slot == 0 || j.slot == 1);
            memset(b, i & 0xff, 64);
            j.buf = b;
            j.len = 64;
        }
        assert_int_equal(lx_wq_push(q, &j), LX_OK);
    }
    assert_int_equal(lx_wq_drain(q), LX_OK);
    assert_int_equal(l.n, 300);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.seen[i], i);
    assert_true(l.one_thread);
    assert_true(l.pattern_ok);
    assert_false(pthread_equal(l.writer, pthread_self()));
    /* both buffers are free again */
    int s0, s1;
    assert_non_null(lx_wq_buffer(q, &s0));
    assert_non_null(lx_wq_buffer(q, &s1));
    assert_true(s0 != s1);
    lx_wq_job r0 = {.off = 300, .slot = s0}, r1 = {.off = 301, .slot = s1};
    assert_int_equal(lx_wq_push(q, &r0), LX_OK);
    assert_int_equal(lx_wq_push(q, &r1), LX_OK);
    lx_wq_stop(q); /* runs what is queued before it returns */
    assert_int_equal(l.n, 302);
}

static void test_failure(void **state)
{
    (void)state;
    log_t l = {.fail_at = 40, .one_thread = 1, .pattern_ok = 1};
    lx_wqueue *q;
    assert_int_equal(lx_wq_start(&q, job_fn, &l, 1, 16, 4), LX_OK);
    lx_status st = LX_OK;
    int i = 0;
    for (; i < 1000 && st == LX_OK; i++) {
        lx_wq_job j = {.off = (uint64_t)i, .slot = -1};
        st = lx_wq_push(q, &j);
    }
    if (st == LX_OK)
        st = lx_wq_drain(q);
    assert_int_equal(st, LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "job 40: disk full");
    /* nothing after the failing job ran */
    assert_int_equal(l.n, 40);
    /* and the queue stays failed */
    int slot;
    assert_null(lx_wq_buffer(q, &slot));
    assert_int_equal(slot, -1);
    lx_wq_job j = {.off = 5000, .slot = -1};
    assert_int_equal(lx_wq_push(q, &j), LX_EOUTPUT);
    assert_int_equal(lx_wq_drain(q), LX_EOUTPUT);
    lx_wq_stop(q);
    assert_int_equal(l.n, 40);
    lx_wq_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_buffers),
        cmocka_unit_test(test_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

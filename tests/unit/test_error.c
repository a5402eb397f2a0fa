/* test_error.c - the error module (src/base/error.c): escaping, long
 * messages keep their cause, context added to a message, messages carried
 * past a cleanup and across threads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/error.h"

static void test_escapes_controls(void **state)
{
    (void)state;
    assert_int_equal(lx_fail(LX_EINPUT, "%s: bad", "x\n\ty\r\x01\x7f.st"), LX_EINPUT);
    assert_string_equal(lx_errmsg(), "x\\n\\ty\\r\\x01\\x7f.st: bad");
    /* escaping an escaped message changes nothing */
    assert_int_equal(lx_fail(LX_EFAIL, "%s", lx_errmsg()), LX_EFAIL);
    assert_string_equal(lx_errmsg(), "x\\n\\ty\\r\\x01\\x7f.st: bad");
}

/* A path longer than the old 2,048-byte buffer: the cause stays. */
static void test_long_path_keeps_cause(void **state)
{
    (void)state;
    size_t n = 6000;
    char *path = malloc(n + 1);
    assert_non_null(path);
    memset(path, 'd', n);
    path[n] = '\0';
    lx_fail_errno(LX_EFAIL, ENOSPC, "%s: write failed", path);
    const char *m = lx_errmsg();
    assert_int_equal(strlen(m), n + strlen(": write failed: ") + strlen(strerror(ENOSPC)));
    assert_int_equal(strncmp(m, path, n), 0);
    assert_non_null(strstr(m, strerror(ENOSPC)));
    free(path);
}

/* Longer than LX_ERRMSG_MAX: the middle goes, both ends stay. */
static void test_huge_message_keeps_both_ends(void **state)
{
    (void)state;
    size_t n = 3 * (size_t)LX_ERRMSG_MAX;
    char *name = malloc(n + 1);
    assert_non_null(name);
    for (size_t i = 0; i < n; i++)
        name[i] = i % 7 == 0 ? '\n' : 'a' + (char)(i % 26);
    name[n] = '\0';
    lx_fail(LX_EINPUT, "tensor '%s': the cause", name);
    const char *m = lx_errmsg();
    assert_true(strlen(m) <= LX_ERRMSG_MAX);
    assert_true(strlen(m) > LX_ERRMSG_MAX - 8);
    assert_int_equal(strncmp(m, "tensor '", 8), 0);
    assert_non_null(strstr(m, " ... "));
    const char *end = "': the cause";
    assert_string_equal(m + strlen(m) - strlen(end), end);
    assert_null(strchr(m, '\n'));
    free(name);
}

static void test_context(void **state)
{
    (void)state;
    lx_fail(LX_EUSAGE, "unknown preset '%s'", "x");
    assert_int_equal(lx_fail_ctx(LX_EUSAGE, "--%s", "preset"), LX_EUSAGE);
    assert_string_equal(lx_errmsg(), "--preset: unknown preset 'x'");
    assert_int_equal(lx_fail_append(LX_EOUTPUT, "; use --restart (%d)", 5), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "--preset: unknown preset 'x'; use --restart (5)");
    /* added text is escaped too */
    lx_fail_ctx(LX_EFAIL, "a\nb");
    assert_string_equal(lx_errmsg(), "a\\nb: --preset: unknown preset 'x'; use --restart (5)");
}

static void test_save_restore(void **state)
{
    (void)state;
    lx_fail(LX_EFAIL, "disk full");
    char *saved = lx_err_save();
    assert_non_null(saved);
    lx_fail(LX_EFAIL, "cleanup failed too");
    assert_int_equal(lx_err_restore(LX_EFAIL, saved), LX_EFAIL);
    assert_string_equal(lx_errmsg(), "disk full");
    assert_int_equal(lx_err_restore(LX_EINPUT, NULL), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "lost"));
}

/* Each thread has its own message; a saved one crosses over. */
static void *other_thread(void *arg)
{
    char *long_cause = malloc(10000);
    memset(long_cause, 'p', 9999);
    long_cause[9999] = '\0';
    lx_fail(LX_EOUTPUT, "%s: the writer's cause", long_cause);
    free(long_cause);
    *(char **)arg = lx_err_save();
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    lx_fail(LX_EFAIL, "main's own");
    char *saved = NULL;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, other_thread, &saved), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_string_equal(lx_errmsg(), "main's own");
    assert_non_null(saved);
    lx_err_restore(LX_EOUTPUT, saved);
    assert_int_equal(strlen(lx_errmsg()), 9999 + strlen(": the writer's cause"));
    assert_non_null(strstr(lx_errmsg(), "the writer's cause"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes_controls),
        cmocka_unit_test(test_long_path_keeps_cause),
        cmocka_unit_test(test_huge_message_keeps_both_ends),
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

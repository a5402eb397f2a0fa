/* test_sigbus.c - a mapped file truncated under us: a clear message and exit
 * status 1 for a registered mapping, the previous action for anything else.
 * Every fault happens in a forked child whose stderr is read through a pipe. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loxstream/sigbus.h"
#include "tmpdir.h"

/* ---- helpers ------------------------------------------------------------- */

static char file_a[600], file_b[600];
static size_t page;

static int setup(void **state)
{
    page = (size_t)sysconf(_SC_PAGESIZE);
    if (tmpdir_make(NULL) != 0)
        return -1;
    snprintf(file_a, sizeof file_a, "%s", tmpdir_file("a.safetensors"));
    snprintf(file_b, sizeof file_b, "%s", tmpdir_file("b.safetensors"));
    return 0;
}

static int teardown(void **state)
{
    return tmpdir_remove();
}

/* Create path with `pages` pages of bytes and map all of it read-only. */
static const unsigned char *map_file(const char *path, size_t pages)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    unsigned char *buf = malloc(pages * page);
    assert_non_null(buf);
    memset(buf, 0x5a, pages * page);
    assert_int_equal(write(fd, buf, pages * page), (ssize_t)(pages * page));
    free(buf);
    void *m = mmap(NULL, pages * page, PROT_READ, MAP_PRIVATE, fd, 0);
    assert_true(m != MAP_FAILED);
    close(fd);
    return m;
}

static void truncate_file(const char *path, off_t size)
{
    assert_int_equal(truncate(path, size), 0);
}

/* What a child did: its wait status and everything it wrote on stderr. */
struct outcome {
    int status;
    char err[8192];
};

struct child_args {
    const unsigned char *touch;    /* byte to read after installing (NULL: none) */
    int install;                   /* call lx_sigbus_install in the child */
    int send_kill;                 /* kill(getpid(), SIGBUS) instead of touching */
    /* before touching: lx_sigbus_probe(probe, ok, page) must return 0 (exit
     * 92 if not), then lx_sigbus_probe(probe, bad, page) -1 (exit 93) */
    const unsigned char *probe;
    size_t ok, bad;
};

/* Fork; the child runs with SIGBUS at its default action (cmocka catches
 * SIGBUS in the parent, and the child must not return into cmocka), stderr
 * on a pipe, optionally installs the handler, then faults.  A child that
 * survives exits 0. */
static void run_child(const struct child_args *a, struct outcome *o)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
        if (a->install && lx_sigbus_install() != LX_OK)
            _exit(90);
        if (a->send_kill)
            kill(getpid(), SIGBUS);
        if (a->probe && a->ok && lx_sigbus_probe(a->probe, a->ok, page) != 0)
            _exit(92);
        if (a->probe && lx_sigbus_probe(a->probe, a->bad, page) != -1)
            _exit(93);
        if (a->touch) {
            volatile const unsigned char *p = a->touch;
            if (*p != 0x5a)
                _exit(91);
        }
        _exit(0);
    }
    close(fds[1]);
    size_t have = 0;
    for (;;) {
        ssize_t r = read(fds[0], o->err + have, sizeof o->err - 1 - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    o->err[have] = '\0';
    close(fds[0]);
    while (waitpid(pid, &o->status, 0) < 0)
        assert_int_equal(errno, EINTR);
}

static void assert_killed_by_sigbus(const struct outcome *o)
{
    if (!WIFSIGNALED(o->status))
        fail_msg("child was not killed by a signal (status 0x%x, stderr: %s)", o->status, o->err);
    assert_int_equal(WTERMSIG(o->status), SIGBUS);
    assert_null(strstr(o->err, "truncated while being read"));
}

/* ---- tests --------------------------------------------------------------- */

/* A registered mapping truncated to one page of three: the child's read of
 * its third page gets the message and exit status 1; with probe, after
 * lx_sigbus_probe read its first page (0) and stopped at its second (-1,
 * the process going on). */
static void registered_fault(int probe)
{
    const unsigned char *m = map_file(file_a, 3);
    assert_int_equal(lx_sigbus_register(m, 3 * page, file_a), 0);
    truncate_file(file_a, (off_t)page);

    struct child_args a = {m + 2 * page + 5, 1, 0, probe ? m : NULL, page, 3 * page};
    struct outcome o;
    run_child(&a, &o);
    if (!WIFEXITED(o.status))
        fail_msg("child killed by signal %d instead of exiting 1", WTERMSIG(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 1);
    char want[1024];
    snprintf(want, sizeof want,
             "loxstream: %s: input file changed or was truncated while being read "
             "(SIGBUS at offset %zu); the output is incomplete and is not marked complete\n",
             file_a, 2 * page + 5);
    assert_string_equal(o.err, want);

    /* the pages still in the file read fine in the parent */
    assert_int_equal(m[page - 1], 0x5a);
    lx_sigbus_unregister(m);
    munmap((void *)m, 3 * page);
}

static void test_registered_mapping(void **state)
{
    registered_fault(0);
}

static void test_unregistered_mapping(void **state)
{
    const unsigned char *m = map_file(file_a, 2);
    assert_int_equal(lx_sigbus_register(m, 2 * page, file_a), 0);
    lx_sigbus_unregister(m);
    truncate_file(file_a, 0);

    struct child_args a = {m + page, 1, 0};
    struct outcome o;
    run_child(&a, &o);
    assert_killed_by_sigbus(&o);
    munmap((void *)m, 2 * page);
}

/* A fault just past a registered range is not taken for it. */
static void test_other_mapping(void **state)
{
    const unsigned char *a_map = map_file(file_a, 2);
    const unsigned char *b_map = map_file(file_b, 2);
    /* register only the first page of a, and nothing of b */
    assert_int_equal(lx_sigbus_register(a_map, page, file_a), 0);
    truncate_file(file_a, 0);
    truncate_file(file_b, 0);

    struct outcome o;
    struct child_args in_b = {b_map, 1, 0};
    run_child(&in_b, &o);
    assert_killed_by_sigbus(&o);
    struct child_args past_a = {a_map + page, 1, 0};
    run_child(&past_a, &o);
    assert_killed_by_sigbus(&o);
    /* and the first page is registered: the message names a */
    struct child_args in_a = {a_map + page - 1, 1, 0};
    run_child(&in_a, &o);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 1);
    assert_non_null(strstr(o.err, "a.safetensors: input file changed"));
    assert_non_null(strstr(o.err, "(SIGBUS at offset "));

    lx_sigbus_unregister(a_map);
    munmap((void *)a_map, 2 * page);
    munmap((void *)b_map, 2 * page);
}

/* lx_sigbus_probe (the prefetcher's read of populated pages): it reads
 * the pages of the file, returns -1 at the first page past its end instead
 * of ending the process, and a later fault in the same mapping still gets
 * the message (not the probe's offset) and exit status 1. */
static void test_probe(void **state)
{
    registered_fault(1);
}

/* Without the handler lx_sigbus_probe reads nothing and returns -1: the
 * child, which touches nothing else, survives a truncated mapping. */
static void test_probe_not_installed(void **state)
{
    const unsigned char *m = map_file(file_a, 2);
    truncate_file(file_a, 0);

    struct child_args a = {NULL, 0, 0, m, 0, 2 * page};
    struct outcome o;
    run_child(&a, &o);
    if (!WIFEXITED(o.status))
        fail_msg("child killed by signal %d: the probe read without the handler", WTERMSIG(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 0);
    munmap((void *)m, 2 * page);
}

/* Without the handler the default action stays: registering alone changes
 * nothing. */
static void test_not_installed(void **state)
{
    const unsigned char *m = map_file(file_a, 1);
    assert_int_equal(lx_sigbus_register(m, page, file_a), 0);
    truncate_file(file_a, 0);

    struct child_args a = {m, 0, 0};
    struct outcome o;
    run_child(&a, &o);
    assert_killed_by_sigbus(&o);
    lx_sigbus_unregister(m);
    munmap((void *)m, page);
}

/* SIGBUS sent with kill(2) (no fault address) keeps its default action. */
static void test_sent_signal(void **state)
{
    struct child_args a = {NULL, 1, 1};
    struct outcome o;
    run_child(&a, &o);
    assert_killed_by_sigbus(&o);
}

/* A path too long for the message buffer is cut, the line stays whole. */
static void test_long_path(void **state)
{
    const unsigned char *m = map_file(file_a, 1);
    char *path = malloc(6001);
    assert_non_null(path);
    memset(path, 'p', 6000);
    path[6000] = '\0';
    assert_int_equal(lx_sigbus_register(m, page, path), 0);
    free(path); /* copied */
    truncate_file(file_a, 0);

    struct child_args a = {m + 7, 1, 0};
    struct outcome o;
    run_child(&a, &o);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 1);
    assert_true(strncmp(o.err, "loxstream: pppp", 15) == 0);
    const char *tail = "(SIGBUS at offset 7); the output is incomplete and is not marked complete\n";
    size_t n = strlen(o.err), t = strlen(tail);
    assert_true(n > t && n < 4096);
    assert_string_equal(o.err + n - t, tail);
    lx_sigbus_unregister(m);
    munmap((void *)m, page);
}

/* Control bytes of a path are escaped: the message stays one line. */
static void test_path_escaped(void **state)
{
    const unsigned char *m = map_file(file_a, 1);
    assert_int_equal(lx_sigbus_register(m, page, "dir/x\n\001y\ty.safetensors"), 0);
    truncate_file(file_a, 0);

    struct child_args a = {m, 1, 0};
    struct outcome o;
    run_child(&a, &o);
    assert_true(WIFEXITED(o.status));
    assert_int_equal(WEXITSTATUS(o.status), 1);
    const char *want = "loxstream: dir/x\\n\\x01y\\ty.safetensors: input file changed";
    assert_true(strncmp(o.err, want, strlen(want)) == 0);
    assert_ptr_equal(strchr(o.err, '\n'), o.err + strlen(o.err) - 1);
    lx_sigbus_unregister(m);
    munmap((void *)m, page);
}

/* The table holds LX_SIGBUS_SLOTS mappings; a freed slot is reused. */
static void test_table_full(void **state)
{
    static char base[LX_SIGBUS_SLOTS + 1];
    for (size_t i = 0; i < LX_SIGBUS_SLOTS; i++)
        assert_int_equal(lx_sigbus_register(base + i, 1, "x"), 0);
    assert_int_equal(lx_sigbus_register(base + LX_SIGBUS_SLOTS, 1, "x"), -1);
    lx_sigbus_unregister(base + 17);
    lx_sigbus_unregister(base + 17); /* twice: a no-op */
    assert_int_equal(lx_sigbus_register(base + LX_SIGBUS_SLOTS, 1, "y"), 0);
    assert_int_equal(lx_sigbus_register(base, 1, "z"), -1);
    for (size_t i = 0; i <= LX_SIGBUS_SLOTS; i++)
        lx_sigbus_unregister(base + i);
    lx_sigbus_unregister(NULL); /* nothing there */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registered_mapping),
        cmocka_unit_test(test_unregistered_mapping),
        cmocka_unit_test(test_other_mapping),
        cmocka_unit_test(test_not_installed),
        cmocka_unit_test(test_probe),
        cmocka_unit_test(test_probe_not_installed),
        cmocka_unit_test(test_sent_signal),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_path_escaped),
        cmocka_unit_test(test_table_full),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

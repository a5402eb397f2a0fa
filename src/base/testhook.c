/* testhook.c - the test-only hooks (see testhook.h): the environment is
 * read once per process; points and syncs are counted across threads. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/testhook.h"

static struct {
    int active, trace;
    unsigned long target;          /* kill at this count (0: never) */
    int sig;                       /* sent then: SIGKILL, or SIGSTOP (..._KILL_SIGNAL=STOP) */
    char kind[32];                 /* count only this kind ("" = all) */
    int has_avail;
    uint64_t avail;
    int has_ram;
    uint64_t ram;
    unsigned long dirsync_fail;    /* fail this directory sync (0: none) */
    char pause_kind[32];           /* stop at the pause_at-th pause of this kind */
    unsigned long pause_at;
    int bar_every;
    unsigned long bar_stop;        /* SIGSTOP after this bar (0: never) */
} hook;

static atomic_ulong points, counted, dirsyncs, pauses, bars;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void hook_init(void)
{
    const char *t = getenv("LOXSTREAM_TEST_TRACE"), *k = getenv("LOXSTREAM_TEST_KILL_AT");
    hook.trace = t && *t && strcmp(t, "0");
    if (k && *k) {
        const char *colon = strchr(k, ':');
        if (*k >= '0' && *k <= '9') {
            hook.target = strtoul(k, NULL, 10);
        } else {
            size_t n = colon ? (size_t)(colon - k) : strlen(k);
            if (n >= sizeof hook.kind)
                n = sizeof hook.kind - 1;
            memcpy(hook.kind, k, n);
            hook.target = colon ? strtoul(colon + 1, NULL, 10) : 1;
        }
    }
    const char *sig = getenv("LOXSTREAM_TEST_KILL_SIGNAL");
    hook.sig = sig && !strcmp(sig, "STOP") ? SIGSTOP : SIGKILL;
    hook.active = hook.trace || hook.target > 0;
    const char *a = getenv("LOXSTREAM_TEST_AVAIL");
    if (a && *a) {
        hook.has_avail = 1;
        hook.avail = strtoull(a, NULL, 10);
    }
    const char *r = getenv("LOXSTREAM_TEST_RAM");
    if (r && *r) {
        hook.has_ram = 1;
        hook.ram = strtoull(r, NULL, 10);
    }
    const char *d = getenv("LOXSTREAM_TEST_DIRSYNC_EIO");
    if (d && *d)
        hook.dirsync_fail = strtoul(d, NULL, 10);
    const char *p = getenv("LOXSTREAM_TEST_PAUSE_AT");
    if (p && *p) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n >= sizeof hook.pause_kind)
            n = sizeof hook.pause_kind - 1;
        memcpy(hook.pause_kind, p, n);
        hook.pause_at = colon ? strtoul(colon + 1, NULL, 10) : 1;
    }
    const char *b = getenv("LOXSTREAM_TEST_BAR");
    if (b && *b) {
        hook.bar_every = 1;
        hook.bar_stop = strtoul(b, NULL, 10);
    }
}

void lx_test_pause(const char *kind, const char *detail)
{
    pthread_once(&once, hook_init);
    if (!hook.pause_at || strcmp(hook.pause_kind, kind))
        return;
    unsigned long n = ++pauses;
    if (n != hook.pause_at)
        return;
    fprintf(stderr, "loxstream: test: paused at %s %lu (%s)\n", kind, n, detail ? detail : "");
    fflush(stderr);
    raise(SIGSTOP);
}

int lx_test_hooks(void)
{
    pthread_once(&once, hook_init);
    return hook.active;
}

void lx_test_point(const char *kind)
{
    pthread_once(&once, hook_init);
    if (!hook.active)
        return;
    unsigned long all = ++points;
    if (hook.trace)
        fprintf(stderr, "loxstream: test: point %lu %s\n", all, kind);
    if (hook.kind[0] && strcmp(hook.kind, kind))
        return;
    if (hook.target && ++counted == hook.target)
        kill(getpid(), hook.sig);
}

void lx_test_avail(uint64_t *avail)
{
    pthread_once(&once, hook_init);
    if (hook.has_avail)
        *avail = hook.avail;
}

int lx_test_dirsync_error(const char *dir)
{
    pthread_once(&once, hook_init);
    if (!hook.trace && !hook.dirsync_fail)
        return 0;
    unsigned long n = ++dirsyncs;
    if (hook.trace)
        fprintf(stderr, "loxstream: test: dirsync %lu %s\n", n, dir);
    return n == hook.dirsync_fail ? EIO : 0;
}

int lx_test_bar_every(void)
{
    pthread_once(&once, hook_init);
    return hook.bar_every;
}

void lx_test_bar_drawn(void)
{
    pthread_once(&once, hook_init);
    if (hook.bar_stop && ++bars == hook.bar_stop)
        raise(SIGSTOP);
}

void lx_test_ram(uint64_t *ram)
{
    pthread_once(&once, hook_init);
    if (hook.has_ram)
        *ram = hook.ram;
}

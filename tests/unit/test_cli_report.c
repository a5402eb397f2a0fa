/* test_cli_report.c - the command line's reporter (src/cli/cli_report.c) on
 * a terminal: it reads the terminal's width, and reads it again after a
 * SIGWINCH, whichever thread the signal lands on.  Here it is sent to an
 * idle thread of the test's own (pthread_kill) and the width is read on the
 * main thread with no synchronisation between the two, as when the kernel
 * hands a job's SIGWINCH to its prefetcher: under ThreadSanitizer (.ci/run)
 * a flag that is not an atomic is then reported, whatever the timing.  The
 * terminal is a pseudo-terminal whose size the test sets; without one
 * (posix_openpt refused), the test skips. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static atomic_int stop;

/* Waits for signals until told to stop; the SIGWINCH handler runs here. */
static void *idle(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop))
        pause();
    return NULL;
}

static void set_columns(int master, int cols)
{
    struct winsize ws = {.ws_row = 40, .ws_col = (unsigned short)cols};
    assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
}

/* The reporter's width, read until it is want or 2 s have passed. */
static int columns_become(const lx_reporter *r, int want)
{
    int c = lx_report_columns(r);
    for (int i = 0; i < 200 && c != want; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        c = lx_report_columns(r);
    }
    return c;
}

static void test_winch_on_another_thread(void **state)
{
    (void)state;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || !ptsname(master)) {
        if (master >= 0)
            close(master);
        skip(); /* no pseudo-terminal to be the terminal */
    }
    int tty = open(ptsname(master), O_RDWR | O_NOCTTY);
    assert_true(tty >= 0);
    set_columns(master, 100);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(tty, STDERR_FILENO), STDERR_FILENO);

    lx_reporter r = cli_reporter(); /* on a terminal: the SIGWINCH handler */
    int before = lx_report_columns(&r);
    pthread_t t;
    int started = pthread_create(&t, NULL, idle, NULL) == 0;
    int after = 0;
    if (started) {
        set_columns(master, 132);
        pthread_kill(t, SIGWINCH); /* the handler runs on t */
        after = columns_become(&r, 132);
        atomic_store(&stop, 1);
        pthread_kill(t, SIGWINCH); /* out of pause() */
        pthread_join(t, NULL);
    }
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(tty);
    close(master);
    signal(SIGWINCH, SIG_DFL);

    assert_true(started);
    assert_int_equal(before, 100);
    assert_int_equal(after, 132);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_winch_on_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

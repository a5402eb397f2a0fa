/* cli_report.c - the command line's side of report.h: the jobs' status
 * lines printed on stderr, a progress bar redrawn in place on a terminal. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "loxstream/fs.h"

static volatile sig_atomic_t bar_shown; /* a bar is on the terminal's last line */

static void print_line(void *ctx, lx_line_kind kind, const char *line)
{
    (void)ctx;
    if (kind == LX_LINE_BAR) {
        fprintf(stderr, "\r\033[K%s", line);
        bar_shown = 1;
        return;
    }
    if (bar_shown)
        fputs("\r\033[K", stderr);
    bar_shown = 0;
    fprintf(stderr, "%s\n", line);
}

lx_reporter cli_reporter(void)
{
    lx_reporter r = {print_line, NULL, isatty(STDERR_FILENO)};
    return r;
}

/* ---- SIGINT, SIGTERM, SIGHUP ---- */

static const char *interrupt_message;

/* Async-signal-safe: end the progress bar's line, remove the job's
 * unfinished file (lx_remove_on_interrupt), say one line, then die of the
 * signal (SA_RESETHAND: the default action once the handler returns). */
static void on_interrupt(int sig)
{
    if (bar_shown)
        (void)!write(STDERR_FILENO, "\n", 1);
    bar_shown = 0;
    lx_interrupt_cleanup();
    static const char pre[] = "loxstream: ";
    (void)!write(STDERR_FILENO, pre, sizeof pre - 1);
    (void)!write(STDERR_FILENO, interrupt_message, strlen(interrupt_message));
    (void)!write(STDERR_FILENO, "\n", 1);
    raise(sig);
}

void cli_on_interrupt(const char *message)
{
    interrupt_message = message;
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa;
        /* a signal ignored when the command started (nohup, a background
         * job's SIGINT) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_interrupt;
        sa.sa_flags = SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
}

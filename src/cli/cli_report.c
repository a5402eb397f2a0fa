/* cli_report.c - the command line's side of report.h: the jobs' status
 * lines printed on stderr, a progress bar redrawn in place on a terminal,
 * and the terminal's width (TIOCGWINSZ, read again after SIGWINCH). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "loxstream/fs.h"

/* Shared with the signal handlers below, which may run on any of the
 * process's threads (the prefetcher's, the writer's, the lane's, OpenMP's):
 * atomics, since a volatile sig_atomic_t is safe only within one thread
 * (ThreadSanitizer saw SIGWINCH land on the prefetcher while the job read
 * the flag).  A handler may touch them only if they are lock-free (C11
 * 7.14.1.1).  The width is the job's thread's alone (columns()). */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic int is not lock-free");
static atomic_int bar_shown;      /* a bar is on the terminal's last line */
static atomic_int resized = 1;    /* read the width again */
static int width = 80;            /* when the terminal does not say */

static void on_winch(int sig)
{
    (void)sig;
    resized = 1;
}

static int columns(void *ctx)
{
    (void)ctx;
    if (atomic_exchange(&resized, 0)) {
        struct winsize ws;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
            width = ws.ws_col;
    }
    return width;
}

/* Erase the bar, drawn narrower than the terminal.  (A terminal that
 * shrinks under it and rewraps it, as tmux does, keeps the rows above the
 * cursor in its scrollback, out of reach; the visible screen stays clean.) */
static void clear_bar(void)
{
    fputs("\r\033[K", stderr);
}

/* Status lines, bars and warnings may come from more than one thread. */
static pthread_mutex_t lines_lock = PTHREAD_MUTEX_INITIALIZER;

static void print_line(void *ctx, lx_line_kind kind, const char *line)
{
    (void)ctx;
    pthread_mutex_lock(&lines_lock);
    if (kind == LX_LINE_BAR) {
        clear_bar();
        fputs(line, stderr);
        bar_shown = 1;
    } else {
        if (bar_shown)
            clear_bar();
        bar_shown = 0;
        fprintf(stderr, "%s\n", line);
    }
    pthread_mutex_unlock(&lines_lock);
}

/* lx_warn's lines: on a line of their own, the bar redrawn at its next
 * update. */
static void print_warning(void *ctx, const char *line)
{
    print_line(ctx, LX_LINE_STATUS, line);
}

lx_reporter cli_reporter(void)
{
    int tty = isatty(STDERR_FILENO);
    if (tty) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_winch;
        sa.sa_flags = SA_RESTART; /* no system call of the job sees EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGWINCH, &sa, NULL);
    }
    lx_warn_sink(print_warning, NULL);
    lx_reporter r = {print_line, NULL, tty, columns};
    return r;
}

/* ---- SIGINT, SIGTERM, SIGHUP ---- */

/* Set once by cli_on_interrupt, before it installs the handlers that read
 * it and before the job starts a thread: never written while one runs. */
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

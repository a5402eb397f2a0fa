/* cli_report.c - the command line's side of report.h: the jobs' status
 * lines printed on stderr, a progress bar redrawn in place on a terminal. */
#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static int bar_shown; /* a bar is on the terminal's last line */

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

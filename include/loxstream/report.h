/* report.h - how a job says what it did: status lines through a callback
 * that the caller provides (the command line prints them on stderr), as
 * lx_verify_output reports its problems (verify.h).  The job decides what
 * happened; the caller decides how to show it.  Warnings keep lx_warn.
 */
#ifndef LOXSTREAM_REPORT_H
#define LOXSTREAM_REPORT_H

#include <stddef.h>

typedef enum lx_line_kind {
    LX_LINE_STATUS,                /* a line of its own */
    LX_LINE_BAR                    /* a progress bar: replaces the previous bar in place,
                                    * cleared before the next status line */
} lx_line_kind;

/* line: one line, without its line break. */
typedef void (*lx_report_fn)(void *ctx, lx_line_kind kind, const char *line);

typedef struct lx_reporter {
    lx_report_fn fn;               /* NULL: say nothing */
    void *ctx;
    int tty;                       /* the lines go to a terminal: progress as a bar */
    int (*columns)(void *ctx);     /* the terminal's width now, which a bar must fit
                                    * (NULL or 0: no limit) */
} lx_reporter;

/* r's terminal width (lx_reporter.columns), 0 for no limit. */
int lx_report_columns(const lx_reporter *r);
/* The columns s takes on a terminal: its UTF-8 code points. */
size_t lx_text_columns(const char *s);

/* Format one status line and hand it to r (nothing if r or r->fn is NULL). */
void lx_say(const lx_reporter *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lx_say_kind(const lx_reporter *r, lx_line_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

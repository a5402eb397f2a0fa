/* report.c - status lines through the caller's callback (see report.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "loxstream/report.h"

static void say(const lx_reporter *r, lx_line_kind kind, const char *fmt, va_list ap)
{
    char *line = NULL;
    if (vasprintf(&line, fmt, ap) < 0)
        return; /* out of memory: a status line is not worth failing for */
    r->fn(r->ctx, kind, line);
    free(line);
}

void lx_say(const lx_reporter *r, const char *fmt, ...)
{
    if (!r || !r->fn)
        return;
    va_list ap;
    va_start(ap, fmt);
    say(r, LX_LINE_STATUS, fmt, ap);
    va_end(ap);
}

void lx_say_kind(const lx_reporter *r, lx_line_kind kind, const char *fmt, ...)
{
    if (!r || !r->fn)
        return;
    va_list ap;
    va_start(ap, fmt);
    say(r, kind, fmt, ap);
    va_end(ap);
}

int lx_report_columns(const lx_reporter *r)
{
    return r && r->columns ? r->columns(r->ctx) : 0;
}

size_t lx_text_columns(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80; /* not a continuation byte */
    return n;
}

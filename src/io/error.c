/* error.c - the per-thread last error message (see error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loxstream/error.h"

static _Thread_local char last_message[2048];

static void record(const char *fmt, va_list ap)
{
    vsnprintf(last_message, sizeof last_message, fmt, ap);
}

lx_status lx_fail(lx_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(fmt, ap);
    va_end(ap);
    return status;
}

lx_status lx_fail_errno(lx_status status, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(fmt, ap);
    va_end(ap);
    size_t used = strlen(last_message);
    snprintf(last_message + used, sizeof last_message - used, ": %s", strerror(errnum));
    return status;
}

const char *lx_errmsg(void)
{
    return last_message;
}

void lx_warn(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "loxstream: warning: %s\n", buf);
}

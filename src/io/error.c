/* error.c - the per-thread last error message (see error.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "loxstream/error.h"

static _Thread_local char last_message[2048];

/* Messages quote paths and names from untrusted input; a control byte in
 * one (a file named "x\n.safetensors") must not split the message line or
 * reach the terminal.  Escapes in place: \n \t \r, other controls \xNN. */
static void escape_controls(char *msg, size_t size)
{
    char tmp[sizeof last_message];
    size_t at = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p && at + 5 < sizeof tmp; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            tmp[at++] = '\\';
            tmp[at++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
        } else if (*p < 0x20 || *p == 0x7f) {
            at += (size_t)snprintf(tmp + at, sizeof tmp - at, "\\x%02x", *p);
        } else {
            tmp[at++] = (char)*p;
        }
    }
    tmp[at] = '\0';
    snprintf(msg, size, "%s", tmp);
}

static void record(const char *fmt, va_list ap)
{
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    escape_controls(last_message, sizeof last_message);
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
    escape_controls(last_message, sizeof last_message);
    return status;
}

const char *lx_errmsg(void)
{
    return last_message;
}

void lx_warn(const char *fmt, ...)
{
    char buf[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    escape_controls(buf, sizeof buf);
    fprintf(stderr, "loxstream: warning: %s\n", buf);
}

/* error.c - the per-thread last error message (see error.h): recording it,
 * escaping the control bytes of quoted names, adding context to it, and
 * carrying it across threads or past a cleanup that may fail itself.
 *
 * The message lives in a heap buffer per thread that grows to the longest
 * message recorded (a long path no longer pushes the cause off the end),
 * up to LX_ERRMSG_MAX bytes; a longer one loses its middle, so that both
 * ends stay: what failed (the start) and why (the end).  A thread's buffer
 * is freed when the thread exits.  Without memory, a small per-thread
 * spare buffer takes the message, cut the same way. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/error.h"

#define CUT_MARK " ... "

static _Thread_local char *heap_msg;     /* heap_cap bytes, or NULL */
static _Thread_local size_t heap_cap;
static _Thread_local char spare_msg[512]; /* when the heap is exhausted */
static _Thread_local const char *current; /* heap_msg, spare_msg or NULL ("") */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_ok;

static void free_at_exit(void *p)
{
    free(p);
    heap_msg = NULL;
    heap_cap = 0;
    current = NULL;
}

static void make_key(void)
{
    key_ok = pthread_key_create(&key, free_at_exit) == 0;
}

/* Messages quote paths and names from untrusted input; a control byte in
 * one (a file named "x\n.safetensors") must not split the message line or
 * reach the terminal: \n \t \r, other controls \xNN.  Escaping is
 * idempotent: an escaped message holds no control byte. */
static size_t width(unsigned char c)
{
    return c == '\n' || c == '\t' || c == '\r' ? 2 : c < 0x20 || c == 0x7f ? 4 : 1;
}

static char *put(char *o, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    if (c == '\n' || c == '\t' || c == '\r') {
        *o++ = '\\';
        *o++ = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
    } else if (c < 0x20 || c == 0x7f) {
        *o++ = '\\';
        *o++ = 'x';
        *o++ = hex[c >> 4];
        *o++ = hex[c & 15];
    } else {
        *o++ = (char)c;
    }
    return o;
}

static size_t escaped_len(const unsigned char *s, size_t len)
{
    size_t e = 0;
    for (size_t i = 0; i < len; i++)
        e += width(s[i]);
    return e;
}

/* Escape s[0..len) (escaped length e) into dst, which has room for max
 * bytes and the NUL.  When e > max the middle gives way to CUT_MARK: a
 * quarter of the room for the start, the rest for the end. */
static void escape_into(char *dst, size_t max, const unsigned char *s, size_t len, size_t e)
{
    char *o = dst;
    if (e <= max) {
        for (size_t i = 0; i < len; i++)
            o = put(o, s[i]);
        *o = '\0';
        return;
    }
    size_t mark = strlen(CUT_MARK), room = max > mark ? max - mark : 0;
    size_t head = room / 4, tail = room - head, i = 0, used = 0;
    while (i < len && used + width(s[i]) <= head)
        used += width(s[i]), o = put(o, s[i++]);
    size_t j = len, tused = 0;
    while (j > i && tused + width(s[j - 1]) <= tail)
        tused += width(s[--j]);
    memcpy(o, CUT_MARK, mark);
    o += mark;
    for (; j < len; j++)
        o = put(o, s[j]);
    *o = '\0';
}

/* Make s[0..len), escaped, the calling thread's message. */
static void set_message(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t e = escaped_len(u, len), want = e < LX_ERRMSG_MAX ? e : LX_ERRMSG_MAX;
    if (want + 1 > heap_cap) {
        size_t cap = heap_cap ? heap_cap : 256;
        while (cap < want + 1)
            cap *= 2;
        char *p = realloc(heap_msg, cap);
        if (p) {
            pthread_once(&key_once, make_key);
            if (key_ok)
                pthread_setspecific(key, p);
            heap_msg = p;
            heap_cap = cap;
        }
    }
    if (want + 1 <= heap_cap) {
        escape_into(heap_msg, want, u, len, e);
        current = heap_msg;
    } else {
        escape_into(spare_msg, sizeof spare_msg - 1, u, len, e);
        current = spare_msg;
    }
}

/* printf into a malloc'd string; NULL without memory. */
static char *format(const char *fmt, va_list ap)
{
    char *s = NULL;
    return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

static void record(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    char *s = format(fmt, ap);
    if (s) {
        set_message(s, strlen(s));
        free(s);
    } else {
        /* out of memory: as much of it as a stack buffer holds */
        char buf[sizeof spare_msg];
        int n = vsnprintf(buf, sizeof buf, fmt, copy);
        set_message(buf, n < 0 ? 0 : strnlen(buf, sizeof buf));
    }
    va_end(copy);
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
    const char *why = strerror(errnum);
    va_list ap;
    va_start(ap, fmt);
    char *s = format(fmt, ap);
    va_end(ap);
    char *all = NULL;
    if (s && asprintf(&all, "%s: %s", s, why) >= 0) {
        set_message(all, strlen(all));
    } else {
        va_start(ap, fmt);
        record(fmt, ap);
        va_end(ap);
    }
    free(all);
    free(s);
    return status;
}

/* The current message with formatted text before (prefix != 0, then ": "
 * between) or after it (verbatim). */
static lx_status rewrap(lx_status status, int prefix, const char *fmt, va_list ap)
{
    char *add = format(fmt, ap), *all = NULL;
    const char *cur = lx_errmsg();
    int n = !add ? -1 : prefix ? asprintf(&all, "%s: %s", add, cur) : asprintf(&all, "%s%s", cur, add);
    if (n >= 0)
        set_message(all, (size_t)n);
    /* else out of memory: the message stays as it was, the cause included */
    free(all);
    free(add);
    return status;
}

lx_status lx_fail_ctx(lx_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lx_status st = rewrap(status, 1, fmt, ap);
    va_end(ap);
    return st;
}

lx_status lx_fail_append(lx_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lx_status st = rewrap(status, 0, fmt, ap);
    va_end(ap);
    return st;
}

const char *lx_errmsg(void)
{
    return current ? current : "";
}

char *lx_err_save(void)
{
    return strdup(lx_errmsg());
}

lx_status lx_err_restore(lx_status status, char *saved)
{
    if (saved)
        set_message(saved, strlen(saved));
    else
        lx_fail(status, "out of memory (the message of an earlier failure was lost)");
    free(saved);
    return status;
}

static void (*warn_fn)(void *ctx, const char *line);
static void *warn_ctx;

void lx_warn_sink(void (*fn)(void *ctx, const char *line), void *ctx)
{
    warn_fn = fn;
    warn_ctx = ctx;
}

void lx_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = format(fmt, ap);
    va_end(ap);
    size_t len = s ? strlen(s) : 0, e = escaped_len((const unsigned char *)s, len);
    size_t want = e < LX_ERRMSG_MAX ? e : LX_ERRMSG_MAX;
    char *buf = s ? malloc(want + 1) : NULL;
    if (buf)
        escape_into(buf, want, (const unsigned char *)s, len, e);
    const char *text = buf ? buf : "(out of memory formatting a warning)";
    char *line = NULL;
    if (warn_fn && asprintf(&line, "loxstream: warning: %s", text) >= 0)
        warn_fn(warn_ctx, line);
    else
        fprintf(stderr, "loxstream: warning: %s\n", text);
    free(line);
    free(buf);
    free(s);
}

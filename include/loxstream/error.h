/* error.h - one error style for all of loxstream (src/base/error.c).
 *
 * Every fallible function returns an lx_status.  On failure it first records a
 * human-readable message with lx_fail(), which names the file, the tensor and
 * the offending value; the command line prints that message once, prefixed
 * with "loxstream: ", and exits with the status as exit code.  No library code
 * calls exit() or prints errors itself.
 *
 * The message of each thread is kept whole up to LX_ERRMSG_MAX bytes; a
 * longer one loses its middle (" ... "), never its end, where the cause is.
 */
#ifndef LOXSTREAM_ERROR_H
#define LOXSTREAM_ERROR_H

/* The values are the documented exit codes of the loxstream command. */
typedef enum lx_status {
    LX_OK = 0,
    LX_EFAIL = 1,   /* runtime failure: I/O error, out of memory, numerical failure */
    LX_EUSAGE = 2,  /* bad command line: unknown option, invalid value */
    LX_EINPUT = 3,  /* an input checkpoint was rejected (format, consistency) */
    LX_EVERIFY = 4, /* verify: output incomplete or corrupt */
    LX_EOUTPUT = 5  /* output directory refused: foreign, other run, inside an input */
} lx_status;

#define LX_ERRMSG_MAX (64u << 10)

/* Record a message (printf-style) for the calling thread and return status.
 * Control bytes in the result are escaped (\n, \t, \xNN): one line always.
 * A later call overwrites the message: record only at the point of failure. */
lx_status lx_fail(lx_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like lx_fail, appending ": strerror(errnum)". */
lx_status lx_fail_errno(lx_status status, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The last recorded message of the calling thread ("" if none).  Valid
 * until the thread records the next one. */
const char *lx_errmsg(void);

/* Add to the current message and return status (a caller that knows more
 * than the callee that failed): lx_fail_ctx prepends "CONTEXT: ", as in
 * "--preset: unknown preset 'x'"; lx_fail_append appends the formatted text
 * as it is, as in "; use --restart to discard it".  The arguments may
 * include lx_errmsg(). */
lx_status lx_fail_ctx(lx_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
lx_status lx_fail_append(lx_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keep a message past a cleanup that may record its own, or hand it to
 * another thread: lx_err_save returns a malloc'd copy of the current
 * message (NULL without memory); lx_err_restore makes `saved` the calling
 * thread's message, frees it and returns status (saved == NULL: a message
 * saying that the earlier one was lost). */
char *lx_err_save(void);
lx_status lx_err_restore(lx_status status, char *saved);

/* Print a warning on stderr ("loxstream: warning: ...").  Warnings never stop a run. */
void lx_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Where lx_warn's lines go ("loxstream: warning: ...", without the line
 * break): fn(ctx, line), or stderr when fn is NULL (the default).  The
 * command line sets it so that a warning never lands on a progress bar's
 * line. */
void lx_warn_sink(void (*fn)(void *ctx, const char *line), void *ctx);

#endif

/* wqueue.h - an ordered queue of output work, run by one writer thread.
 *
 * apply computes on the main thread (and its OpenMP team) and hands every
 * write, checksum, fdatasync and journal append to the writer, which runs
 * them one by one in the order they were pushed: exactly the sequence a
 * single thread would run, so the durability rules of journal.h hold
 * unchanged; only the computation no longer waits while the kernel throttles
 * the page-cache writes or the disk syncs.
 *
 * Output bytes travel in a fixed pool of buffers (lx_wq_buffer blocks until
 * one is free), so the queue's memory is bounded.  The first job that fails
 * stops the queue: later jobs are dropped (their buffers released), and
 * lx_wq_push / lx_wq_drain return the failure with the writer's message, on
 * the caller's thread.
 */
#ifndef LOXSTREAM_WQUEUE_H
#define LOXSTREAM_WQUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

typedef struct lx_wq_job {
    int kind;          /* the caller's */
    void *p;           /* the caller's */
    size_t a, b;       /* the caller's */
    uint64_t off;
    const void *buf;   /* bytes to write: a pool buffer or caller-owned memory */
    size_t len;
    int slot;          /* pool buffer to release after the job, or -1 */
} lx_wq_job;

/* Runs one job on the writer thread; an lx_fail() status stops the queue. */
typedef lx_status (*lx_wq_fn)(void *ctx, const lx_wq_job *job);

typedef struct lx_wqueue lx_wqueue;

/* Each pool buffer starts on a page and has LX_WQ_SLACK bytes beyond
 * bufsize, so that a caller may start its bytes at the page offset of
 * their file offset (direct.h's writes then need no copy). */
#define LX_WQ_SLACK ((size_t)4096)
/* Start the writer: nbuf buffers of bufsize bytes, a queue of up to qcap jobs. */
lx_status lx_wq_start(lx_wqueue **out, lx_wq_fn fn, void *ctx, size_t nbuf, size_t bufsize,
                      size_t qcap);
/* A free pool buffer (blocks until one is); NULL once the queue failed (the
 * failure is then in lx_errmsg()).  *slot names it for lx_wq_push. */
unsigned char *lx_wq_buffer(lx_wqueue *q, int *slot);
/* Append a job (blocks while the queue is full).  Returns the queue's
 * failure, if any job failed so far (the job is then dropped). */
lx_status lx_wq_push(lx_wqueue *q, const lx_wq_job *job);
/* Wait until every pushed job has run; the queue's failure or LX_OK.  After
 * it the caller may touch what the jobs touch, until its next push. */
lx_status lx_wq_drain(lx_wqueue *q);
/* Drain, stop and join the writer, free; q may be NULL. */
void lx_wq_stop(lx_wqueue *q);

#endif

/* wqueue.c - the writer thread (see wqueue.h). */
#include "config.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/wqueue.h"

struct lx_wqueue {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* any change: a job, a free buffer, done, stop */
    lx_wq_fn fn;
    void *ctx;
    lx_wq_job *jobs;               /* ring of qcap */
    size_t qcap, head, count;
    int busy;                      /* the writer is running a job */
    unsigned char **buf;
    int *used;
    size_t nbuf;
    int stop;
    lx_status failed;              /* first failure, or LX_OK */
    char *msg;                     /* its message (lx_err_save) */
};

static void release(struct lx_wqueue *q, int slot)
{
    if (slot >= 0 && (size_t)slot < q->nbuf)
        q->used[slot] = 0;
}

static void *writer(void *arg)
{
    struct lx_wqueue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stop && q->count == 0)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->count == 0)
            break; /* stop, and nothing left */
        lx_wq_job job = q->jobs[q->head];
        q->head = (q->head + 1) % q->qcap;
        q->count--;
        lx_status failed = q->failed;
        q->busy = 1;
        pthread_mutex_unlock(&q->mu);
        lx_status st = failed == LX_OK ? q->fn(q->ctx, &job) : LX_OK;
        pthread_mutex_lock(&q->mu);
        q->busy = 0;
        if (st != LX_OK && q->failed == LX_OK) {
            q->failed = st;
            q->msg = lx_err_save();
        }
        release(q, job.slot);
        pthread_cond_broadcast(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* The queue's failure, as the caller's own error. */
static lx_status failure(struct lx_wqueue *q)
{
    return q->failed == LX_OK ? LX_OK : lx_err_restore(q->failed, q->msg ? strdup(q->msg) : NULL);
}

static void destroy(struct lx_wqueue *q)
{
    for (size_t i = 0; q->buf && i < q->nbuf; i++)
        free(q->buf[i]);
    free(q->buf);
    free(q->used);
    free(q->jobs);
    free(q->msg);
    free(q);
}

lx_status lx_wq_start(lx_wqueue **out, lx_wq_fn fn, void *ctx, size_t nbuf, size_t bufsize,
                      size_t qcap)
{
    *out = NULL;
    struct lx_wqueue *q = calloc(1, sizeof *q);
    if (!q)
        return lx_fail(LX_EFAIL, "writer: out of memory");
    q->fn = fn;
    q->ctx = ctx;
    q->qcap = qcap ? qcap : 1;
    q->nbuf = nbuf;
    q->jobs = calloc(q->qcap, sizeof *q->jobs);
    q->buf = calloc(nbuf ? nbuf : 1, sizeof *q->buf);
    q->used = calloc(nbuf ? nbuf : 1, sizeof *q->used);
    int ok = q->jobs && q->buf && q->used;
    for (size_t i = 0; ok && i < nbuf; i++)
        ok = posix_memalign((void **)&q->buf[i], LX_WQ_SLACK, bufsize + LX_WQ_SLACK) == 0;
    if (!ok) {
        destroy(q);
        return lx_fail(LX_EFAIL, "writer: out of memory (%zu buffers of %zu bytes)", nbuf, bufsize);
    }
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        destroy(q);
        return lx_fail(LX_EFAIL, "writer: cannot create a mutex");
    }
    if (pthread_cond_init(&q->cv, NULL) != 0) {
        pthread_mutex_destroy(&q->mu);
        destroy(q);
        return lx_fail(LX_EFAIL, "writer: cannot create a condition variable");
    }
    int e = pthread_create(&q->thread, NULL, writer, q);
    if (e != 0) {
        pthread_cond_destroy(&q->cv);
        pthread_mutex_destroy(&q->mu);
        destroy(q);
        return lx_fail_errno(LX_EFAIL, e, "writer: cannot start a thread");
    }
    *out = q;
    return LX_OK;
}

unsigned char *lx_wq_buffer(lx_wqueue *q, int *slot)
{
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->failed != LX_OK) {
            failure(q);
            pthread_mutex_unlock(&q->mu);
            *slot = -1;
            return NULL;
        }
        for (size_t i = 0; i < q->nbuf; i++) {
            if (!q->used[i]) {
                q->used[i] = 1;
                pthread_mutex_unlock(&q->mu);
                *slot = (int)i;
                return q->buf[i];
            }
        }
        pthread_cond_wait(&q->cv, &q->mu);
    }
}

lx_status lx_wq_push(lx_wqueue *q, const lx_wq_job *job)
{
    pthread_mutex_lock(&q->mu);
    while (q->failed == LX_OK && q->count == q->qcap)
        pthread_cond_wait(&q->cv, &q->mu);
    lx_status st = failure(q);
    if (st == LX_OK) {
        q->jobs[(q->head + q->count) % q->qcap] = *job;
        q->count++;
        pthread_cond_broadcast(&q->cv);
    } else {
        release(q, job->slot);
    }
    pthread_mutex_unlock(&q->mu);
    return st;
}

lx_status lx_wq_drain(lx_wqueue *q)
{
    pthread_mutex_lock(&q->mu);
    while (q->count > 0 || q->busy)
        pthread_cond_wait(&q->cv, &q->mu);
    lx_status st = failure(q);
    pthread_mutex_unlock(&q->mu);
    return st;
}

void lx_wq_stop(lx_wqueue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    destroy(q);
}

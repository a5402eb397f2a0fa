/* prefetch.c - the prefetcher thread (see prefetch.h). */
#include "config.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loxstream/prefetch.h"
#include "loxstream/sigbus.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14 */
#endif

struct lx_prefetch {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a new list, or stop; and: the list is done */
    lx_range list[LX_PREFETCH_MAX];
    size_t n;                      /* ranges in the list */
    size_t at, off;                /* next range and offset within it */
    unsigned long gen;             /* bumped by every lx_prefetch_set */
    int stop;
    int populate;                  /* MADV_POPULATE_READ works (else WILLNEED) */
    int busy;                      /* a step is being read (outside mu) */
    size_t done;                   /* bytes done */
};

/* Every page of [a, e) (page-aligned) in the page cache (mincore); 0 on
 * an error, which populating then reports the way it would. */
static int resident(uintptr_t a, uintptr_t e, uintptr_t page)
{
    unsigned char vec[512];
    while (a < e) {
        size_t pages = (e - a) / page < sizeof vec ? (e - a) / page : sizeof vec;
        if (mincore((void *)a, pages * page, vec) != 0)
            return 0;
        for (size_t i = 0; i < pages; i++)
            if (!(vec[i] & 1))
                return 0;
        a += pages * page;
    }
    return 1;
}

/* Read and map [addr, addr + len), rounded out to pages, and access each
 * page once (prefetch.h); *unsupported set if the kernel does not know
 * MADV_POPULATE_READ.  Other errors (EFAULT for
 * a truncated file, EIO, ENOMEM) are the computation's to report. */
static void step(const unsigned char *addr, size_t len, int populate, int *unsupported)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)addr & ~(page - 1);
    uintptr_t e = ((uintptr_t)addr + len + page - 1) & ~(page - 1);
    /* all in the page cache already (a warm run, or read ahead by the
     * kernel): populating would walk the page tables page by page; the
     * probe's faults map 16 pages each (fault-around), and still take a
     * page read ahead but never touched off the computation */
    if (resident(a, e, page)) {
        lx_sigbus_probe((const void *)a, e - a, page);
        return;
    }
    if (populate) {
        if (madvise((void *)a, e - a, MADV_POPULATE_READ) == 0)
            lx_sigbus_probe((const void *)a, e - a, page); /* truncated meanwhile: skipped */
        else if (errno == EINVAL)
            *unsupported = 1;
    } else {
        madvise((void *)a, e - a, MADV_WILLNEED);
    }
}

static void *worker(void *arg)
{
    struct lx_prefetch *pf = arg;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        while (!pf->stop && pf->at >= pf->n)
            pthread_cond_wait(&pf->cv, &pf->mu);
        if (pf->stop)
            break;
        lx_range r = pf->list[pf->at];
        size_t off = pf->off;
        size_t len = r.len - off < LX_PREFETCH_STEP ? r.len - off : LX_PREFETCH_STEP;
        unsigned long gen = pf->gen;
        int populate = pf->populate, unsupported = 0;
        pf->busy = 1;
        pthread_mutex_unlock(&pf->mu);
        if (len)
            step((const unsigned char *)r.addr + off, len, populate, &unsupported);
        pthread_mutex_lock(&pf->mu);
        pf->busy = 0;
        pthread_cond_broadcast(&pf->cv); /* lx_prefetch_cancel */
        if (unsupported) {
            pf->populate = 0;
            continue; /* the same step again, with WILLNEED */
        }
        pf->done += len;
        if (pf->gen != gen)
            continue; /* a new list came meanwhile: start on it */
        pf->off += len;
        if (pf->off >= r.len) {
            pf->at++;
            pf->off = 0;
            if (pf->at >= pf->n)
                pthread_cond_broadcast(&pf->cv);
        }
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

lx_status lx_prefetch_start(lx_prefetch **out)
{
    *out = NULL;
    struct lx_prefetch *pf = calloc(1, sizeof *pf);
    if (!pf)
        return lx_fail(LX_EFAIL, "prefetcher: out of memory");
    pf->populate = 1;
    if (pthread_mutex_init(&pf->mu, NULL) != 0) {
        free(pf);
        return lx_fail(LX_EFAIL, "prefetcher: cannot create a mutex");
    }
    if (pthread_cond_init(&pf->cv, NULL) != 0) {
        pthread_mutex_destroy(&pf->mu);
        free(pf);
        return lx_fail(LX_EFAIL, "prefetcher: cannot create a condition variable");
    }
    int e = pthread_create(&pf->thread, NULL, worker, pf);
    if (e != 0) {
        pthread_cond_destroy(&pf->cv);
        pthread_mutex_destroy(&pf->mu);
        free(pf);
        return lx_fail_errno(LX_EFAIL, e, "prefetcher: cannot start a thread");
    }
    *out = pf;
    return LX_OK;
}

void lx_prefetch_set(lx_prefetch *pf, const lx_range *r, size_t n)
{
    if (!pf)
        return;
    if (n > LX_PREFETCH_MAX)
        n = LX_PREFETCH_MAX;
    pthread_mutex_lock(&pf->mu);
    if (n)
        memcpy(pf->list, r, n * sizeof *r);
    pf->n = n;
    pf->at = 0;
    pf->off = 0;
    pf->gen++;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
}

void lx_prefetch_cancel(lx_prefetch *pf)
{
    if (!pf)
        return;
    pthread_mutex_lock(&pf->mu);
    pf->n = pf->at = pf->off = 0;
    pf->gen++;
    while (pf->busy)
        pthread_cond_wait(&pf->cv, &pf->mu);
    pthread_mutex_unlock(&pf->mu);
}

void lx_prefetch_wait(lx_prefetch *pf)
{
    if (!pf)
        return;
    pthread_mutex_lock(&pf->mu);
    while (!pf->stop && pf->at < pf->n)
        pthread_cond_wait(&pf->cv, &pf->mu);
    pthread_mutex_unlock(&pf->mu);
}

size_t lx_prefetch_done_bytes(lx_prefetch *pf)
{
    if (!pf)
        return 0;
    pthread_mutex_lock(&pf->mu);
    size_t d = pf->done;
    pthread_mutex_unlock(&pf->mu);
    return d;
}

void lx_prefetch_stop(lx_prefetch *pf)
{
    if (!pf)
        return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = 1;
    pthread_cond_broadcast(&pf->cv);
    pthread_mutex_unlock(&pf->mu);
    pthread_join(pf->thread, NULL);
    pthread_cond_destroy(&pf->cv);
    pthread_mutex_destroy(&pf->mu);
    free(pf);
}

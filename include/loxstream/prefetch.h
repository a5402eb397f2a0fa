/* prefetch.h - read mapped input ahead of the computation, on a thread.
 *
 * The first pass over a matrix would otherwise wait on the disk and take a
 * page fault per page of both inputs.  A prefetcher thread takes a list of
 * address ranges (the tensor being computed and the next ones) and, in
 * steps of LX_PREFETCH_STEP bytes in list order, asks the kernel to read
 * them and map them (madvise MADV_POPULATE_READ, Linux >= 5.14; older
 * kernels: MADV_WILLNEED, which reads some of it ahead), then reads one
 * byte of each page it populated: in a virtual machine whose host takes
 * free memory back (virtio-balloon free page reporting), the first access
 * to a page just read costs a host fault of a few microseconds, which is
 * then the prefetcher's, not the computation's (bench/RESULTS.md, session
 * 8: cold 7B apply 29.7 s against 32.8 s).  A step whose pages are all in
 * the page cache already (mincore) is only read, a byte a page: its faults
 * map 16 pages each (fault-around), where MADV_POPULATE_READ walks the page
 * tables page by page (warm 8-layer 7B apply 6.6-6.9 s against 7.5-7.8 s,
 * session 9).  A new list replaces the old one at the next step.
 *
 * Only page-cache pages and page tables are made: no anonymous memory.  A
 * range that cannot be read (a file truncated meanwhile, an I/O error) is
 * skipped silently: the computation itself reads the same bytes and
 * reports it (sigbus.h; the pages are read through lx_sigbus_probe, so a
 * file truncated between the populate and the read of its pages does not
 * end the process on this thread, and without the SIGBUS handler they are
 * populated only).  The thread knows ranges only: which ranges a
 * job's plan needs is the plan's to say (lx_prefetch_item_ranges, plan.h).
 */
#ifndef LOXSTREAM_PREFETCH_H
#define LOXSTREAM_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

#define LX_PREFETCH_MAX 16             /* ranges in one list */
#define LX_PREFETCH_STEP (8u << 20)    /* bytes per madvise call */

typedef struct lx_prefetch lx_prefetch;

typedef struct lx_range {
    const void *addr;
    size_t len;
} lx_range;

/* Start the thread.  *out is NULL on failure (the caller may go on without). */
lx_status lx_prefetch_start(lx_prefetch **out);
/* Replace the list (n <= LX_PREFETCH_MAX; more are ignored); returns at once. */
void lx_prefetch_set(lx_prefetch *pf, const lx_range *r, size_t n);
/* Drop the list and wait for the step being read, if any: pages the
 * caller then drops from the page cache are not read back in by the
 * prefetcher (the next lx_prefetch_set starts it again). */
void lx_prefetch_cancel(lx_prefetch *pf);
/* Wait until the list is done (tests, benchmarks). */
void lx_prefetch_wait(lx_prefetch *pf);
/* Bytes of ranges done so far (populated or skipped), over the thread's life. */
size_t lx_prefetch_done_bytes(lx_prefetch *pf);
/* Stop and join the thread, then free; pf may be NULL.  Call it before the
 * ranges are unmapped. */
void lx_prefetch_stop(lx_prefetch *pf);

#endif

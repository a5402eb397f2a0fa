/* lanes.h - factoring the matrices of a job on two lanes: the job's own
 * thread and one more, each factoring one matrix at a time on half the
 * job's threads (one each of two), ahead of the one the job writes
 * (engine.h's lx_engine_factor, the same bits: the factors do not depend on
 * the thread count).  This keeps the cores busy through what one matrix's
 * factorisation does on one thread only (the small factorisations between
 * passes), and through the job's own work on the factors (output rows), at
 * the cost of a second SVD workspace.  While one lane waits in
 * lx_lanes_take with nothing to claim, or the lane thread is idle, the
 * other's matrix runs on all the threads (read at each pass and product:
 * the first and the last matrices; one too large for two at once).
 *
 * The job lists the matrices it will factor, in the order it takes them;
 * lx_lanes_take(pos) returns those of position pos, factoring on the
 * calling thread whatever is next while it waits.  Positions are taken in
 * increasing order; one that is never taken is computed in vain, and
 * freed.  The first matrix of each item (b == 0) has before() called on it
 * by the thread that claims it, before any matrix of the item is factored
 * (apply: the hash of the item's inputs that the hash after the
 * computation is compared with).
 */
#ifndef LOXSTREAM_LANES_H
#define LOXSTREAM_LANES_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/engine.h"

typedef struct lx_lane_mat {
    const lx_plan_item *it;
    uint64_t b;                    /* matrix b of it */
    int rank;                      /* as for lx_engine_factor */
} lx_lane_mat;

/* An item whose every matrix a job factors, at one rank. */
typedef struct lx_lane_item {
    const lx_plan_item *it;
    int rank;
} lx_lane_item;

typedef void (*lx_lane_before_fn)(void *ctx, const lx_plan_item *it);

typedef struct lx_lanes lx_lanes;

/* Start the second lane over mats[0..n) (copied), at most `ahead`
 * positions beyond the one being taken or written (the last taken), two
 * SVDs at once only while their working memory is within cap bytes; e as
 * lx_engine_factor takes it (e->factors must be NULL).  NULL with a
 * message on failure. */
lx_lanes *lx_lanes_start(const lx_engine_opts *e, const lx_lane_mat *mats, size_t n,
                         size_t ahead, uint64_t cap, lx_lane_before_fn before, void *ctx);
/* The jobs' policy: lanes over the matrices of items[0..n) (each item's
 * it->batch matrices, b ascending, in the items' order) when the job has
 * two threads or more (e->threads), factors its matrices (no e->factors),
 * runs outside a
 * cgroup's memory limit (b: where the page cache needs the room), and
 * --max-memory holds, beside its largest need need_max and the fixed
 * overhead, LX_LANES_MEMORY for a second SVD and the factors of
 * LX_LANES_AHEAD matrices made ahead; LX_LANES_AHEAD ahead, two SVDs at once
 * within LX_LANES_MEMORY.  NULL: without lanes (also when they cannot
 * start), which changes nothing but the time. */
#define LX_LANES_AHEAD 2
#define LX_LANES_MEMORY (64u << 20)
lx_lanes *lx_lanes_open(const lx_engine_opts *e, const lx_budget *b, uint64_t need_max,
                        const lx_lane_item *items, size_t n, lx_lane_before_fn before, void *ctx);
/* The position of matrix b of it, or SIZE_MAX when it is not listed. */
size_t lx_lanes_find(const lx_lanes *L, const lx_plan_item *it, uint64_t b);
/* The factors of position pos into f, the factorisation counted in s, as
 * lx_engine_factor would give them (its failure, with its message). */
lx_status lx_lanes_take(lx_lanes *L, size_t pos, lx_factors *f, lx_factor_stats *s);
/* A matrix not listed (an item computed again on resuming) factored on
 * the calling thread, on the job's share of the threads (never widened),
 * within the cap as the listed ones are: the lane is not factoring beside
 * it beyond the cap. */
lx_status lx_lanes_factor(lx_lanes *L, const lx_plan_item *it, uint64_t b, int rank,
                          lx_factors *f, lx_factor_stats *s);
/* What a job calls for matrix b of it: without lanes (L NULL),
 * lx_engine_factor with e; else its listed position taken
 * (lx_lanes_take), or an unlisted matrix factored within the cap
 * (lx_lanes_factor). */
lx_status lx_lanes_get(lx_lanes *L, const lx_engine_opts *e, const lx_plan_item *it,
                       uint64_t b, int rank, lx_factors *f, lx_factor_stats *s);
/* Stop the lane (after the matrix it is factoring) and free everything. */
void lx_lanes_stop(lx_lanes *L);

#endif

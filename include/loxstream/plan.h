/* plan.h - what a streaming job (apply, lora, analyze) does with each
 * tensor: pair every tensor of the aligned checkpoint with its base tensor
 * and decide its action; split the plan into parts (--part I/N); the rows
 * of dW = aligned - base that the randomized SVD reads; the read-ahead
 * ranges of the items.  Depends on the plan only, never on the job.
 */
#ifndef LOXSTREAM_PLAN_H
#define LOXSTREAM_PLAN_H

#include <regex.h>
#include <stdint.h>

#include "loxstream/checkpoint.h"
#include "loxstream/prefetch.h"
#include "loxstream/rsvd.h"

typedef enum lx_action {
    LX_ACT_COPY,      /* copied bit for bit (1-D, non-float, filtered out, unmatched) */
    LX_ACT_LOWRANK,   /* W + alpha * U_k S_k V_k^T, per matrix of the last two dims */
    LX_ACT_FULL       /* W + alpha * (W_aligned - W_base)  (rank 0) */
} lx_action;

typedef struct lx_plan_item {
    const lx_tensor *aligned;
    const lx_tensor *base;         /* NULL for COPY of an unmatched tensor */
    lx_action action;
    uint64_t batch;                /* matrices in the tensor (product of leading dims) */
    uint64_t m, n;                 /* each matrix: rows x cols (last two dims) */
    const char *why;               /* for COPY: "1-D", "dtype I64", "excluded", ... */
    const char *role;              /* the non-base side in messages: "aligned" (set by
                                    * lx_plan_build), "fine-tuned" for an analysis */
} lx_plan_item;

typedef struct lx_plan {
    size_t n;
    lx_plan_item *items;           /* in the aligned checkpoint's order */
    uint64_t transform_bytes, copy_bytes;
    size_t ntransform;
} lx_plan;

typedef struct lx_filter {
    int has_include, has_exclude;
    regex_t include, exclude;      /* POSIX extended, on tensor names */
} lx_filter;

/* Compile --include / --exclude (either may be NULL). LX_EUSAGE on a bad regex. */
lx_status lx_filter_init(lx_filter *f, const char *include, const char *exclude);
void lx_filter_free(lx_filter *f);

/* Pair the tensors and decide their actions.  Every tensor to transform
 * must exist in base with the same shape and a float dtype (the aligned
 * one's or another: a mixed pair is transformed, dW from both as stored,
 * said in one warning), else LX_EINPUT naming it, unless copy_unmatched
 * (then it is copied, with a warning).  The hint to copy differing
 * tensors is given only when others are still transformed; when every
 * tensor to transform differs the run would change nothing: LX_EINPUT
 * either way, naming what the two config.json files disagree on.  A tensor
 * of 2 or more dimensions that would be transformed but whose dtype
 * loxstream cannot compute in (F8_*, F4, I8, U8, BOOL, C64, ...: not
 * lx_dtype_is_index) is LX_EINPUT naming tensor and dtype, unless
 * copy_unmatched (then copied, one warning with the count); an index
 * dtype (I64, ...) paired with the same dtype is copied.  Asking to
 * transform a non-float tensor explicitly (--include matching it) is a
 * usage error. */
lx_status lx_plan_build(const lx_checkpoint *base, const lx_checkpoint *aligned,
                        const lx_filter *filter, int rank, int copy_unmatched, lx_plan *out);
void lx_plan_free(lx_plan *p);

/* Split the plan's items, in plan order, into nparts contiguous ranges:
 * part p (1-based) owns items [bounds[p-1], bounds[p]); bounds has
 * nparts + 1 entries, bounds[0] = 0 and bounds[nparts] = p->n.  The ranges
 * are balanced by bytes of work: an item weighs its tensor's bytes, twice
 * for a transformed one (two inputs read), once for a copy; item j goes to
 * the part whose share [(p-1) W / N, p W / N) of the total W holds the
 * midpoint of j's cumulative byte range.  When there are at least nparts
 * items, the ranges are then adjusted so that none is empty: each boundary
 * moved, in order, to at least one past the one before and at most what
 * leaves one item to each following part.  (A plan of no bytes at all is
 * split by item count: j to part floor(j N / n) + 1.)  Depends on the plan
 * and nparts only, never on the machine. */
void lx_plan_partition(const lx_plan *p, unsigned nparts, size_t *bounds);
#define LX_MAX_PARTS 9999

/* madvise (MADV_WILLNEED, MADV_DONTNEED, ...) the mapped bytes of the item's
 * aligned tensor and, unless it is copied, its base tensor. */
void lx_plan_item_advise(const lx_plan_item *it, int advice);
/* The XXH3-64 of the item's aligned tensor in h[0] and of its base tensor
 * in h[1] (0 without one).  A base tensor that is the aligned tensor itself
 * (the same bytes of the same file: apply --factors without --base opens
 * the aligned model twice) is not read again.  threads > 1: the two
 * tensors are hashed at once, on two threads (the same values). */
void lx_plan_item_hash(const lx_plan_item *it, uint64_t h[2], int threads);
/* The item is done: lx_tensor_release its aligned tensor and, unless it is
 * copied, its base tensor (evict: from the page cache too). */
void lx_plan_item_release(const lx_plan_item *it, int evict);

/* The input ranges of plan items for lx_prefetch_set: for each of items[0..n)
 * in order (NULL entries skipped) its aligned tensor and, unless the item is
 * a copy, its base tensor; after the first item, only while the bytes
 * beyond it stay under `ahead`.  At most LX_PREFETCH_MAX ranges into r;
 * returns their number. */
size_t lx_prefetch_item_ranges(const lx_plan_item *const *items, size_t n, uint64_t ahead,
                               lx_range *r);

/* Embedding tables, by name (POSIX ERE), for the jobs that treat them apart
 * (lora: lora_embedding_A/B; analyze: out of the means). */
#define LX_EMBEDDING_REGEX "(^|\\.)(embed_tokens|wte|word_embeddings|embed_in)\\.weight$"

/* A job's inputs as planned: the two checkpoints, the filters, the plan. */
typedef struct lx_inputs {
    lx_checkpoint *base, *aligned;
    lx_filter filter;
    lx_plan plan;
} lx_inputs;

/* Close and free what is set (the struct zeroed first). */
void lx_inputs_free(lx_inputs *in);

/* One part of a plan (--part I/N; 1/1 is the whole plan): its items
 * [lo, hi) by lx_plan_partition, and what they weigh. */
typedef struct lx_part {
    unsigned part, nparts;
    size_t *bounds;                /* nparts + 1 entries */
    size_t lo, hi;
    uint64_t transform_bytes, copy_bytes;
    size_t ntransform;             /* transformed items among [lo, hi) */
} lx_part;

/* Split p and fill part `part` of `nparts`; LX_EFAIL when out of memory. */
lx_status lx_part_init(lx_part *pt, const lx_plan *p, unsigned part, unsigned nparts);
void lx_part_free(lx_part *pt);
/* The part (1-based) that owns item i. */
unsigned lx_part_of(const lx_part *pt, size_t i);

#endif

/* apply.h - the LoX job: plan which tensors to transform, then stream them
 * through the randomized SVD and write the output checkpoint.
 *
 * The plan is separate from the execution so that other jobs (analyses,
 * adapter export, --part I/N) can reuse it: it pairs every tensor of the
 * aligned checkpoint with its base tensor and decides what happens to it.
 */
#ifndef LOXSTREAM_APPLY_H
#define LOXSTREAM_APPLY_H

#include <limits.h>
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
 * must exist in base with the same dtype and shape, else LX_EINPUT naming
 * it, unless copy_unmatched (then it is copied, with a warning).  Asking to
 * transform a non-float tensor explicitly (--include matching it) is an
 * error. */
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

/* The input ranges of plan items for lx_prefetch_set: for each of items[0..n)
 * in order (NULL entries skipped) its aligned tensor and, unless the item is
 * a copy, its base tensor; after the first item, only while the bytes
 * beyond it stay under `ahead`.  At most LX_PREFETCH_MAX ranges into r;
 * returns their number. */
size_t lx_prefetch_item_ranges(const lx_plan_item *const *items, size_t n, uint64_t ahead,
                               lx_range *r);

/* Refuse (LX_EOUTPUT) an output directory `out` that is, or is inside, the
 * directory of one of the n inputs (NULL entries skipped): writing there
 * could overwrite them.  out may not exist yet; its absolute, symlink-free
 * form goes to resolved, and the length of its existing part to *existing. */
lx_status lx_output_outside(const char *out, const lx_checkpoint *const *ins, size_t n,
                            char resolved[PATH_MAX], size_t *existing);

/* Embedding tables, by name (POSIX ERE), for the jobs that treat them apart
 * (lora: lora_embedding_A/B; analyze: out of the means). */
#define LX_EMBEDDING_REGEX "(^|\\.)(embed_tokens|wte|word_embeddings|embed_in)\\.weight$"

/* Rows [r0, r0+h) of dW = aligned - base of matrix b of a transformed item
 * (it->base set), as f32 into dst (leading dimension ld >= n), computed
 * exactly (dtype.h).  A NaN or Inf in dW is LX_EINPUT naming the tensor,
 * matrix, row, column and both input values.  Thread-safe. */
lx_status lx_delta_rows(const lx_plan_item *it, uint64_t b, size_t r0, size_t h, float *dst,
                        size_t ld);

/* The randomized SVD's row source over dW of matrix b of it (ctx: storage
 * for it, owned by the caller, alive while the source is used). */
typedef struct lx_delta_src {
    const lx_plan_item *item;
    uint64_t b;
} lx_delta_src;
lx_rowsrc lx_delta_rowsrc(lx_delta_src *ctx, const lx_plan_item *it, uint64_t b);

typedef struct lx_apply_opts {
    const char *base_path, *aligned_path, *output_path;
    int rank;                      /* k; 0 = full-rank extrapolation */
    double alpha;
    lx_rsvd_opts svd;              /* rank inside is overwritten per matrix */
    const char *include, *exclude;
    int copy_unmatched;
    uint64_t max_memory;           /* bound on anonymous memory (bytes) */
    int threads;
    const char *report_path;       /* per-matrix TSV, NULL for none ("-": stdout) */
    int quiet;
    int stats;                     /* print resource use and rates at the end */
    int restart;                   /* discard an earlier run's output in output_path */
    unsigned part, nparts;         /* --part I/N: compute only part I of N (default 1/1,
                                    * the whole run); see lx_plan_partition, journal.h */
} lx_apply_opts;

void lx_apply_opts_default(lx_apply_opts *o);

/* The whole job.  Output: OUTDIR/<shard>.partial files, filled tensor by
 * tensor with a journal record after each (journal.h); once every tensor
 * is durable, the aligned model's other files, the shards renamed into
 * place, model.safetensors.index.json (if the aligned model has one),
 * loxstream.xxh3 and the completion marker.  An output directory holding
 * an earlier run with the same identity is resumed (or found complete);
 * one of another identity is refused (LX_EOUTPUT) unless restart, and one
 * that is not a loxstream output is always refused.
 *
 * With nparts > 1 only the items of the part are computed, into the shared
 * .partial files, with the part's own journal; then, if the records of all
 * journals cover every tensor and no other process is writing the output,
 * the output is completed (each shard read back and checked against the
 * records), else the run says which parts are missing and returns LX_OK.
 * Without --part, the records of every part's journal are kept when they
 * check out, as a resumed run's own.  restart needs nparts == 1.
 * An output value that rounds to Inf or NaN in its dtype (an overflow:
 * the inputs are finite) is LX_EINPUT naming the tensor, row, column and
 * the dtype's largest finite value, before the tensor is journaled. */
lx_status lx_apply_run(const lx_apply_opts *o);

#endif

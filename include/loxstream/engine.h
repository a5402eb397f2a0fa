/* engine.h - the streaming engine that apply, lora and analyze share: their
 * common options (one struct each job embeds, as git embeds diff_options
 * in rev_info), opening the inputs with the filters and the plan, the
 * memory budget, the read-ahead of the inputs, the rows of dW, the seed and
 * rank policy and "factor this matrix" with the count of matrices that
 * missed --tol.  A job keeps only what differs: what it does with the
 * factors and what it writes.  (Later jobs are added here, not copied.)
 */
#ifndef LOXSTREAM_ENGINE_H
#define LOXSTREAM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/memlimit.h"
#include "loxstream/plan.h"
#include "loxstream/prefetch.h"
#include "loxstream/report.h"
#include "loxstream/rsvd.h"

#define LX_PREFETCH_AHEAD (512u << 20) /* input bytes read ahead beyond the current item */
#define LX_WRITE_BEHIND (64u << 20)   /* output bytes on their way to the disk */
#define LX_FIXED_OVERHEAD (48u << 20)  /* tables, stdio, libraries, read-back buffers:
                                        * counted against --max-memory */

/* The options of every streaming job. */
typedef struct lx_engine_opts {
    const char *base_path, *aligned_path;
    /* the cache entries when they were given as model IDs (hfcache.h),
     * NULL for local paths: for provenance */
    const struct lx_hf_model *base_model, *aligned_model;
    lx_rsvd_opts svd;              /* rank and seed inside are set per matrix */
    int certify_all;               /* the passes certify every rank 1..k of a matrix
                                    * factored at rank k, not k alone (svd.ranks): the
                                    * rule of factors used at several ranks */
    const char *include, *exclude; /* POSIX ERE on tensor names (NULL: none) */
    uint64_t max_memory;           /* bound on working memory (bytes) */
    int threads;
    /* NULL: each matrix is factored; else its factors are read from this
     * store (factor.h), checked against the inputs when they are opened */
    struct lx_factor_store *factors;
    int quiet;                     /* no progress or status lines */
    lx_reporter report;            /* where status lines go (none by default) */
} lx_engine_opts;

/* lx_rsvd_opts_default, 1 GiB, online CPUs. */
void lx_engine_opts_default(lx_engine_opts *e);

/* Compile --include/--exclude into in->filter, then open both checkpoints
 * and plan them (lx_plan_build with rank and copy_unmatched). */
lx_status lx_engine_filter(lx_inputs *in, const lx_engine_opts *e);
lx_status lx_engine_open(lx_inputs *in, const lx_engine_opts *e, int rank, int copy_unmatched);
/* lx_engine_open (copy_unmatched 0) with n more models (analyze's
 * fine-tuned ones) at paths[0..n), opened after the two inputs and before
 * the plans; each is planned against the base with the same filters into
 * more_plans[j], its unmatched or differing tensors copied with the plan's
 * warning, its items named roles[j] in messages (roles outlive the plans). */
lx_status lx_engine_open_more(lx_inputs *in, const lx_engine_opts *e, int rank, size_t n,
                              const char *const *paths, const char *const *roles,
                              lx_checkpoint **more, lx_plan *more_plans);

/* The SVD's working memory for item it at rank (lx_rsvd_workspace_bytes). */
uint64_t lx_engine_svd_bytes(const lx_engine_opts *e, const lx_plan_item *it, int rank);
/* How a job reads within the memory it has (lx_engine_check_memory).
 * Without a cgroup limit: LX_PREFETCH_AHEAD of read-ahead.  Within a
 * limit L, where the page cache counts: the job's working memory W (its largest need and the fixed
 * overhead), two items' inputs (the one computed, the one the writer still
 * hashes) and L/8 of slack come first; the read-ahead gets half of what is
 * left, at most LX_PREFETCH_AHEAD; and each item's input pages are
 * dropped from the cache (evict), as they are without a limit when the
 * data exceed the RAM.  The output pages are dropped once on the disk in
 * every case (apply_writer.c): the run reads them again only to check a shard
 * it could not checksum on the way (--part, apply_finish.c), and in a
 * virtual machine whose host takes free memory back a page cache that
 * grows by the output's size costs a host fault per page (bench/RESULTS.md,
 * session 8: warm 8 layers 7.8-8.3 s against 13.0-13.4 s). */
typedef struct lx_budget {
    lx_memlimit limit;             /* the cgroup's (limit.bytes 0: none) */
    uint64_t ahead;                /* input bytes read ahead beyond the current item */
    uint64_t behind;               /* output bytes written, not yet dropped
                                    * (lx_budget_reserve_writes) */
    int evict;                     /* input pages dropped after each tensor */
} lx_budget;

/* Refuse (LX_EUSAGE) a job whose largest need, worst bytes for tensor
 * worst_name, does not fit --max-memory, or the cgroup's limit, with the
 * fixed overhead; else size b for the items of p.  A transformed item
 * whose inputs do not fit the limit beside the working memory is warned
 * about: it is read from storage on every pass. */
lx_status lx_engine_check_memory(const lx_engine_opts *e, const lx_plan *p, uint64_t worst,
                                 const char *worst_name, lx_budget *b);
/* For a job that writes tensors (apply, factor), after
 * lx_engine_check_memory: the output bytes on their way to the disk before
 * the oldest is waited for and dropped (apply_writer.c), LX_WRITE_BEHIND;
 * within a limit a quarter of the read-ahead at most, taken from it. */
void lx_budget_reserve_writes(lx_budget *b);
/* "memory limit 400 MiB (cgroup v1 FILE), read-ahead 96 MiB" or "no memory
 * limit found, read-ahead 512 MiB", for --stats. */
void lx_budget_describe(const lx_budget *b, char *buf, size_t size);

/* Read-ahead: a prefetcher thread (prefetch.h), or MADV_WILLNEED on the
 * next item when it could not start (the job only goes slower). */
typedef struct lx_read_ahead {
    lx_prefetch *pf;
    uint64_t ahead;
    int evict;
} lx_read_ahead;

void lx_read_ahead_start(lx_read_ahead *ra, const lx_budget *b);
/* items[0] is being computed, items[1..n) come next (NULL: skipped):
 * read their inputs up to b->ahead bytes beyond items[0]. */
void lx_read_ahead_set(lx_read_ahead *ra, const lx_plan_item *const *items, size_t n);
/* Item it is done: lx_plan_item_release, evicting as the budget says. */
void lx_read_ahead_done(const lx_read_ahead *ra, const lx_plan_item *it);
void lx_read_ahead_stop(lx_read_ahead *ra);

/* Rows [r0, r0+h) of dW = aligned - base of matrix b of a transformed item
 * (it->base set, of the aligned dtype or another float one: both are
 * converted exactly), as f32 into dst (leading dimension ld >= n), computed
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

/* The rank of the factors of it: rank clamped to min(m, n). */
int lx_engine_rank(const lx_plan_item *it, int rank);

/* What the factorisations of a run cost and how many missed --tol. */
typedef struct lx_factor_stats {
    size_t matrices;               /* factored */
    size_t unconverged, ungapped;  /* of them: err_est > tol; and with no gap seen */
    double seconds, flops;         /* in lx_rsvd_topk; two GEMMs of m x n x l per pass */
} lx_factor_stats;

/* Factor matrix b of it at rank (lx_engine_rank) with the per-matrix seed
 * lx_matrix_seed(svd.seed, name, b), the same for every job, into f (with
 * e->certify_all, svd.ranks 1..rank-1); with e->factors, read them from the
 * store instead (lx_factor_store_load). */
lx_status lx_engine_factor(const lx_engine_opts *e, const lx_plan_item *it, uint64_t b, int rank,
                           lx_factors *f, lx_factor_stats *s);
/* Count one matrix result in s as lx_engine_factor does. */
void lx_engine_count(lx_factor_stats *s, int converged, double gap);

/* What the top r triplets of f promise (a sweep keeps several ranks of one
 * factorisation): *err an upper estimate of ||U_r S_r V_r^T - A_r||_F /
 * ||A_r||_F (A_r the exact rank-r truncation), *gap as lx_factors.gap at
 * r, *converged err <= tol.  r >= f->k: f's own err_est, gap, converged.
 * For r < f->k: the solver's own bound at r (f->err_at, f->gap_at); for
 * factors without them, one that follows from f's by perturbation
 * (engine.c): sound, but much looser. */
void lx_engine_prefix(const lx_factors *f, int r, double tol, double *err, double *gap,
                      int *converged);

/* The one warning at the end of a job (lx_rsvd_warn_unconverged). */
void lx_engine_warn_unconverged(const lx_engine_opts *e, const char *job,
                                const lx_factor_stats *s);

#endif

/* apply.h - the LoX job: stream every tensor of the plan (plan.h) through
 * the randomized SVD and write the output checkpoint, resumably (journal.h).
 * Its parts: the writer (apply_writer.h), the identity (apply_identity.h),
 * the output directory (outdir.h), preparation and resumption
 * (apply_resume.h), completion (apply_finish.h).
 */
#ifndef LOXSTREAM_APPLY_H
#define LOXSTREAM_APPLY_H

#include <stdint.h>

#include "loxstream/engine.h"
#include "loxstream/plan.h"

/* Values one run sweeps over (--alpha A1,A2,... --rank K1,K2,...): one
 * output per (alpha, rank), from one factorisation per matrix. */
#define LX_SWEEP_MAX 32
#define LX_SWEEP_TEXT 32           /* bytes of a value as typed, with its NUL */

typedef struct lx_apply_opts {
    lx_engine_opts stream;         /* inputs, SVD, filters, memory, threads, reporting */
    const char *output_path;       /* %a, %k: the alpha, the rank as typed (apply_sweep.h) */
    int rank;                      /* k; 0 = full-rank extrapolation */
    double alpha;
    int anchor_base;               /* W_out = W_base + ...  (default: W_aligned + ...) */
    int factor_rank;               /* factor at this rank (>= rank), keep the top rank,
                                    * every rank 1..factor_rank certified; 0: at rank,
                                    * that rank certified */
    size_t nalpha, nrank;          /* > 0: the lists below replace alpha, rank */
    double alphas[LX_SWEEP_MAX];
    int ranks[LX_SWEEP_MAX];
    char alpha_text[LX_SWEEP_MAX][LX_SWEEP_TEXT], rank_text[LX_SWEEP_MAX][LX_SWEEP_TEXT];
    int copy_unmatched;
    int no_copy_tokenizer;         /* --no-copy-tokenizer: the tokenizer's side files
                                    * are not copied (apply_identity.c) */
    uint64_t out_shard_size;       /* --out-shard-size: re-shard the output into shards
                                    * of at most this many bytes (0: the aligned layout) */
    const char *report_path;       /* per-matrix TSV, NULL for none ("-": stdout) */
    int stats;                     /* report resource use and rates at the end */
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
 * the dtype's largest finite value, before the tensor is journaled.
 * With lists of alphas or ranks (a sweep, apply_sweep.h): every output of
 * the lists, each as this function writes it alone with its alpha, rank
 * and factor_rank, in one pass over the inputs with one factorisation per
 * matrix at the largest rank. */
lx_status lx_apply_run(const lx_apply_opts *o);

#endif

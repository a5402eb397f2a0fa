/* factor.h - reusable factors (loxstream factor): the job that writes, per
 * matrix of dW = aligned - base, the top-K factors the engine computes, and
 * the store that hands them back to the engine instead of computing them
 * (apply --factors, lora --factors; engine.h's lx_engine_opts.factors).
 *
 * Output: OUTDIR/factors.safetensors, written as apply writes its shards
 * (apply_writer.h: NAME.partial filled tensor by tensor, a journal record
 * after each, resumable, --part, then loxstream.xxh3 and the marker, so
 * that `loxstream verify` checks it).  For every transformed tensor NAME
 * (matrices m x n, a stacked tensor [..., m, n] per matrix, k = K clamped
 * to min(m, n)):
 *   NAME.lox_U       F32 [..., m, k]  U_k, orthonormal columns
 *   NAME.lox_S       F32 [..., k]     singular values, descending
 *   NAME.lox_V       F32 [..., n, k]  V_k
 *   NAME.lox_info    F64 [..., 8 + 2k] err_est, gap, ||dW||_F^2, passes,
 *                                     exact (0/1), converged (0/1), then the
 *                                     bounds at each rank r = 0..k: err_at[r]
 *                                     (k + 1 of them), gap_at[r] (k + 1);
 *                                     NaN for factors without them
 *   NAME.lox_inputs  U64 [2]          XXH3-64 of the aligned and the base
 *                                     tensor's bytes
 * U_k S_k is lox_U times lox_S column by column: the two are kept apart so
 * that a run from the factors rounds exactly as the direct run does.  The
 * header metadata holds the run's identity: "loxstream_factors" (the format,
 * 1), the version, "loxstream_rank" (K), the SVD options
 * ("loxstream_svd": exact or randomized, "loxstream_seed",
 * "loxstream_oversample", "loxstream_tol", "loxstream_max_passes",
 * "loxstream_passes"), --include/--exclude, and one key
 * "loxstream_input ROLE/SHARD" per input shard with its size and header
 * XXH3 ("SIZE HEX").
 */
#ifndef LOXSTREAM_FACTOR_H
#define LOXSTREAM_FACTOR_H

#include "loxstream/engine.h"
#include "loxstream/rsvd.h"

#define LX_FACTOR_FILE "factors.safetensors"
#define LX_FACTOR_FORMAT "1"
#define LX_FACTOR_INFO 6           /* scalars per matrix in NAME.lox_info */
/* doubles per matrix in NAME.lox_info at rank k: the scalars, then the
 * bounds at every rank (err_at[0..k], gap_at[0..k], rsvd.h) */
#define LX_FACTOR_INFO_AT(k) (LX_FACTOR_INFO + 2 * ((size_t)(k) + 1))

typedef struct lx_factor_opts {
    lx_engine_opts stream;         /* inputs, SVD, filters, memory, threads, reporting */
    const char *output_path;
    int rank;                      /* K >= 1: the passes certify every rank 1..K
                                    * (engine.h certify_all), as a sweep's do */
    int restart;                   /* discard an earlier run's output */
    unsigned part, nparts;         /* --part I/N (default 1/1) */
} lx_factor_opts;

/* rank 6, lx_engine_opts_default. */
void lx_factor_opts_default(lx_factor_opts *o);

/* The whole job (statuses as lx_apply_run's). */
lx_status lx_factor_run(const lx_factor_opts *o);

/* ---- the store: factors read back ------------------------------------------ */

typedef struct lx_factor_store lx_factor_store;

/* Open DIR (a factor output; or DIR/factors.safetensors): its rank K and
 * the SVD options it was made with into *rank and *svd.  LX_EINPUT naming
 * it: another file than DIR/factors.safetensors, DIR not a complete output
 * (no completion marker), a damaged one (as verify checks it: the checksum
 * list against the marker, factors.safetensors against the list), not a
 * factor file, or one of another format. */
lx_status lx_factor_store_open(const char *path, lx_factor_store **out, int *rank,
                               lx_rsvd_opts *svd);
void lx_factor_store_close(lx_factor_store *s);
/* Its factors.safetensors (path, size, header XXH3). */
const lx_shard *lx_factor_store_file(const lx_factor_store *s);
/* The checkpoint it was opened as (its dir: the factor output directory). */
const lx_checkpoint *lx_factor_store_checkpoint(const lx_factor_store *s);

/* The inputs' shards (names, sizes, header checksums) are those the factors
 * were made from; else LX_EINPUT naming the factor file and what differs.
 * base NULL (apply --factors without --base): the aligned model's alone,
 * and lx_factor_store_load checks each tensor's aligned bytes only. */
lx_status lx_factor_store_check(lx_factor_store *s, const lx_checkpoint *base,
                                const lx_checkpoint *aligned);

/* The top rank triplets of matrix b of it into f (as lx_rsvd_topk gives
 * them; for rank < the stored k, err_est, gap and converged at rank by
 * lx_engine_prefix with tol).  LX_EINPUT: no factors for the tensor, a rank
 * above the stored one, other shapes, or (checked at b == 0) input bytes
 * that are not those the factors were made from. */
lx_status lx_factor_store_load(lx_factor_store *s, const lx_plan_item *it, uint64_t b, int rank,
                               double tol, lx_factors *f);

#endif

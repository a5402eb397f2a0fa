/* analyze.h - the paper's per-matrix analyses, streamed like apply.
 *
 * For every matrix apply would transform, the top singular triplets of
 * dW_align = W_aligned - W_base (the same randomized SVD, same seeds), and:
 *   - the spectrum: the top singular values, ||dW_align||_F, and the energy
 *     captured by the top r, sum_{i<=r} s_i^2 / ||dW_align||_F^2, for each r of
 *     a list (the effective-rank study of LOX.md);
 *   - R_align = ||U_k U_k^T dW_align||_F / ||dW_align||_F = sqrt(energy at k);
 *   - with a fine-tuned model, R_ft = ||U_k U_k^T dW_ft||_F / ||dW_ft||_F with
 *     dW_ft = W_ft - W_base, from one more streaming pass over dW_ft that
 *     accumulates U_kmax^T dW_ft (every k <= kmax is a prefix of it), and
 *     R_ft / R_align, the share of the safety subspace that survived.
 * One factorisation at the largest rank asked serves every rank: the
 * factors of a smaller rank are a prefix.
 *
 * Output: one TSV line per matrix on `out` (header first; names whole,
 * escaped by lx_st_escape_name; converged and err_est from lx_factors);
 * as a status line (report.h), unless quiet, the mean R_align over the linear layers (every
 * analysed matrix except embedding tables, as the paper averages) and the
 * means of R_ft and R_ft / R_align over those the fine-tuned model has,
 * with their count; one warning with the count of unconverged matrices.
 * Statuses besides apply's: LX_EUSAGE when the filters leave no matrix
 * (before any output; only embedding tables is LX_OK, without means),
 * LX_EINPUT when the fine-tuned model has none of the analysed matrices.
 *
 * Several fine-tuned models: each gets its R_ft from its own projection
 * pass, in the one pass over base and aligned; their columns (and JSON
 * keys) are suffixed _1, _2, ... in the order given (one model: no suffix).
 * With json, JSON Lines instead of the TSV (analyze_json.c): one object per
 * matrix, then a summary {"tensor": "*"} with the means overall, per
 * module type and per layer (analyze_means.c); means_path gets those means
 * as a TSV, plot_path an SVG chart of the spectra (analyze_plot.c).
 */
#ifndef LOXSTREAM_ANALYZE_H
#define LOXSTREAM_ANALYZE_H

#include <stdio.h>

#include "loxstream/engine.h"
#include "loxstream/plan.h"

#define LX_ANALYZE_MAX_RANKS 32
#define LX_ANALYZE_MAX_FT 16       /* --finetuned given at most this often */
#define LX_ANALYZE_TOP_DEFAULT 16  /* singular values listed with --json or --plot */

typedef struct lx_analyze_opts {
    lx_engine_opts stream;         /* inputs, SVD, filters, memory, threads, reporting */
    const char *finetuned[LX_ANALYZE_MAX_FT]; /* fine-tuned models, in order given */
    size_t nfinetuned;
    int rank;                      /* k of R_align and R_ft (default 6) */
    int ranks[LX_ANALYZE_MAX_RANKS]; /* energy columns (default 1 2 3 4 6 8) */
    size_t nranks;
    const char *embedding;         /* regex of embedding tables */
    int top;                       /* singular values listed (0: LX_ANALYZE_TOP_DEFAULT
                                    * with json or plot_path, else all of the rank
                                    * factored); the factor rank is at least this */
    int json;                      /* JSON Lines on out instead of the TSV */
    const char *plot_path;         /* SVG chart (NULL: none) */
    const char *means_path;        /* means per group as a TSV (NULL: none) */
    int factor_rank;               /* 0, or factored at exactly this rank, every rank
                                    * 1..it certified (stream.factors: their rank) */
} lx_analyze_opts;

void lx_analyze_opts_default(lx_analyze_opts *o);

/* Parse "1,2,4,8" into o->ranks (each 1..100000, at most LX_ANALYZE_MAX_RANKS,
 * sorted, duplicates removed); LX_EUSAGE naming the bad item. */
lx_status lx_analyze_parse_ranks(const char *list, lx_analyze_opts *o);

lx_status lx_analyze_run(const lx_analyze_opts *o, FILE *out);

#endif

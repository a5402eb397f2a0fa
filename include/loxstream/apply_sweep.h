/* apply_sweep.h - the outputs of one apply run: a single one, or a sweep
 * over several values of --alpha and --rank (one output per pair, from one
 * factorisation per matrix at the largest rank).  Each output's options are
 * those a run writing it alone would have (its alpha, rank, factor rank),
 * with %a and %k of --output and --report replaced by its values as typed.
 * With more than one rank, or factor_rank given (--factor-rank, --factors),
 * every output has factor_rank K and stream.certify_all set (the passes
 * certify every rank 1..K): its bytes do not depend on the other ranks of
 * the run.  Otherwise factor_rank is 0 and each matrix certifies its rank.
 */
#ifndef LOXSTREAM_APPLY_SWEEP_H
#define LOXSTREAM_APPLY_SWEEP_H

#include <stddef.h>

#include "loxstream/apply.h"

typedef struct lx_sweep {
    lx_apply_opts *outs;           /* n outputs, alpha-major: the lists' order */
    size_t n;
    int factor_rank;               /* the rank each matrix is factored at (0: none) */
    char **paths;                  /* owned: the expanded --output and --report paths */
    size_t npaths;
} lx_sweep;

/* "lox-k%k-a%a" with "6" and "1.25": "lox-k6-a1.25"; %% is %, any other %
 * is kept.  *used: bit 0 set when %a occurs, bit 1 when %k does.  NULL when
 * out of memory. */
char *lx_sweep_expand(const char *tmpl, const char *a, const char *k, int *used);

/* The outputs of o.  LX_EUSAGE: more than one alpha (rank) and no %a (%k)
 * in --output, a value given twice, rank 0 among other ranks, a factor
 * rank below a rank, --report - or a --report that is not one file per
 * output, more than one output with --part... */
lx_status lx_sweep_build(lx_sweep *s, const lx_apply_opts *o);
void lx_sweep_free(lx_sweep *s);

#endif

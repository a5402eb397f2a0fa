/* analyze_int.h - what analyze.c hands to its outputs: the results of one
 * matrix (lx_arow), the means per group of matrices (analyze_means.c), the
 * JSON Lines (analyze_json.c) and the SVG chart (analyze_plot.c).  Private
 * to src/job/analyze*.c.
 */
#ifndef LOXSTREAM_ANALYZE_INT_H
#define LOXSTREAM_ANALYZE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "loxstream/analyze.h"

/* Module types, by tensor name (lx_amodule_of). */
enum {
    LX_MOD_Q, LX_MOD_K, LX_MOD_V, LX_MOD_O, LX_MOD_GATE, LX_MOD_UP, LX_MOD_DOWN,
    LX_MOD_EMBED, LX_MOD_LM_HEAD, LX_MOD_OTHER, LX_NMODULES
};
extern const char *const lx_amodule_names[LX_NMODULES];

/* The module type of tensor `name`: embeddings when not linear (--embedding),
 * lm_head for a name with a component lm_head, q_proj ... down_proj for a
 * name with that component (Mixtral's experts w1, w3, w2: gate_proj,
 * up_proj, down_proj), else other. */
int lx_amodule_of(const char *name, int linear);
/* The layer index of `name`: the number component after a component
 * layers, layer, h or blocks (model.layers.12.mlp... is 12), at most
 * 99999; -1 for none. */
long lx_alayer_of(const char *name);

/* One fine-tuned model's results on a matrix (have 0: it lacks the matrix). */
typedef struct lx_aft {
    int have;
    double frob, r_ft, retention;
} lx_aft;

/* One matrix's results. */
typedef struct lx_arow {
    const char *name;              /* the tensor (raw) */
    uint64_t matrix;               /* index in a batched tensor */
    size_t m, n;
    int linear, module;
    long layer;
    int passes, converged;
    double err_est, frob;          /* ||dW_align||_F */
    int k;                         /* singular values computed */
    const float *S;                /* S[0..k), descending */
    const double *cum;             /* cum[i] = sum_{j <= i} S[j]^2 */
    int listed;                    /* singular values listed: S[0..listed) */
    double energy[LX_ANALYZE_MAX_RANKS]; /* at o->ranks */
    double r_align;
    lx_aft ft[LX_ANALYZE_MAX_FT];
} lx_arow;

/* The column or key of fine-tuned model i (0-based) of nft: base itself
 * for one model, base_<i+1> for several. */
void lx_aft_key(char *buf, size_t len, const char *base, size_t i, size_t nft);

/* Sums over a group of matrices. */
typedef struct lx_amean {
    size_t n;
    double r_align, energy[LX_ANALYZE_MAX_RANKS];
    size_t nft[LX_ANALYZE_MAX_FT];
    double r_ft[LX_ANALYZE_MAX_FT], retention[LX_ANALYZE_MAX_FT];
} lx_amean;

/* The groups: the linear matrices (the paper's means, embedding tables
 * out), each module type (embedding tables in embeddings), each layer. */
typedef struct lx_ameans {
    size_t nranks, nft;
    lx_amean all;
    lx_amean module[LX_NMODULES];
    lx_amean *layer;               /* layer[0..nlayer); n == 0: no such layer */
    size_t nlayer;
} lx_ameans;

/* Count row r in its groups (LX_EFAIL when out of memory). */
lx_status lx_ameans_add(lx_ameans *M, const lx_arow *r);
void lx_ameans_free(lx_ameans *M);
/* The means as a TSV (header: group, name, matrices, r_align, energy_R...,
 * then per model matrices_ft, r_ft, retention, suffixed as lx_aft_key):
 * the line "all *", then "module NAME" and "layer N" per non-empty group. */
void lx_ameans_write_tsv(const lx_ameans *M, const lx_analyze_opts *o, FILE *f);

/* JSON Lines (analyze_json.c): one matrix, and the summary object;
 * LX_EFAIL when out of memory. */
lx_status lx_ajson_row(const lx_arow *r, const lx_analyze_opts *o, FILE *out);
lx_status lx_ajson_summary(const lx_ameans *M, const lx_analyze_opts *o, size_t matrices,
                           size_t unconverged, FILE *out);

/* The chart (analyze_plot.c): rows collected, written at the end. */
typedef struct lx_aplot lx_aplot;
lx_status lx_aplot_new(lx_aplot **p, int top);
lx_status lx_aplot_add(lx_aplot *p, const lx_arow *r);
/* The SVG (its subtitle names the models); LX_EFAIL when out of memory. */
lx_status lx_aplot_write(const lx_aplot *p, const lx_analyze_opts *o, FILE *f);
void lx_aplot_free(lx_aplot *p);

#endif

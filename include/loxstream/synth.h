/* synth.h - a generator of Llama- and Mixtral-shaped model triplets (base,
 * aligned, fine-tuned) in the Hugging Face layout, for the demo, the tests and the
 * benchmarks.  It streams: rows are generated from per-(tensor, row) seeds
 * and written as they are made, so memory stays at a few MB per row block
 * whatever the model's size; the same options give the same bytes.
 *
 * The model (documented in the man page):
 *   base      W_b   = N(0, init_std^2) entries (norm weights: 1 + small noise)
 *   aligned   W_a   = W_b + D_a,  D_a = U diag(s) V^T + bulk
 *             s_i   = scale * i^(-decay), i = 1..planted_rank (power law),
 *             bulk  = dense N(0, noise_std^2) entries
 *   finetuned W_f   = W_a + D_f,  D_f = -undo * (top `undone` alignment
 *             directions of D_a) + its own planted low-rank part + bulk
 * 1-D tensors (norms) get small deltas too, so copying them is observable.
 */
#ifndef LOXSTREAM_SYNTH_H
#define LOXSTREAM_SYNTH_H

#include <stdint.h>

#include "loxstream/dtype.h"
#include "loxstream/error.h"
#include "loxstream/report.h"

typedef struct lx_synth_opts {
    uint64_t hidden, intermediate, layers, vocab;
    uint64_t heads, kv_heads;      /* attention and key/value heads (grouped-query
                                    * attention: k_proj, v_proj have kv_heads *
                                    * hidden / heads rows); 0: the defaults of
                                    * lx_synth_heads (kv_heads = heads) */
    uint64_t experts;              /* experts per layer, Mixtral's layout; 0: a dense
                                    * Llama MLP */
    int fused_experts;             /* each layer's experts as 3-D tensors
                                    * [experts, out, in], transformers' fused layout */
    lx_dtype dtype;                /* BF16, F16 or F32 */
    uint64_t shard_size;           /* max bytes of tensor data per shard */
    uint64_t seed;
    int with_finetuned;            /* write OUTDIR/finetuned too */
    int quiet;                     /* no progress or status lines */
    lx_reporter report;            /* where they go (none by default) */
} lx_synth_opts;

/* Fill *o from a preset: "tiny" (seconds, for tests), "small" (the README
 * demo), "llama-7b" (Llama-2-7B's shapes: 4096, 11008, 32 layers, 32000),
 * "llama3-70b" (Llama-3-70B's: 8192, 28672, 80 layers, 128256, 64 heads
 * and 8 key/value heads), "mixtral" (Mixtral-8x7B's: 4096, 14336, 32
 * layers, 32000, 32 heads and 8 key/value heads, 8 experts per layer). */
lx_status lx_synth_preset(const char *name, lx_synth_opts *o);

/* Write OUTDIR/base, OUTDIR/aligned and (optionally) OUTDIR/finetuned.
 * OUTDIR is created if missing; existing model directories in it are
 * refused (LX_EOUTPUT) rather than overwritten. */
lx_status lx_synth_write(const char *outdir, const lx_synth_opts *o);

#endif

/* synth_int.h - internals shared by the files of the synth module:
 * synth_shapes.c (presets, the tensor list and its shards), synth_values.c
 * (the model's values, generated and written row by row), synth_files.c
 * (config.json and the other small files of a model directory) and
 * synth.c (the job: directories, shards, index).  Nothing outside the
 * module includes it.
 */
#ifndef LOXSTREAM_SYNTH_INT_H
#define LOXSTREAM_SYNTH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"
#include "loxstream/safetensors.h"
#include "loxstream/synth.h"

enum { M_BASE, M_ALIGNED, M_FINETUNED, NMODELS };
/* "base", "aligned", "finetuned": the directories, and the names of the
 * random streams (part of the values' definition) */
extern const char *const lx_synth_model_dirs[NMODELS];

/* ---- the tensors of one model (synth_shapes.c) ---------------------------- */

typedef struct synth_tensor {
    char name[96];
    int ndim;                      /* 1 (norms), 2, or 3 (fused experts) */
    uint64_t rows, cols;           /* a 1-D tensor is one row; a 3-D one
                                    * [nmat, rows / nmat, cols] is rows rows */
    uint64_t nmat;                 /* 3-D: the experts stacked; else 1 */
    uint64_t nbytes;               /* in the output dtype */
    /* The values: nparts blocks of rows / nparts rows, block i generated as
     * the 2-D tensor named lx_synth_part_name(i) would be, so that the fused
     * layout holds the same values as the unfused one: a fused tensor its
     * experts' matrices in order, the fused router the unfused router's. */
    unsigned nparts;
    char source[64];               /* "" (one part: the tensor's own name), the
                                    * name of the one part, or of several the
                                    * prefix "model.layers.L.block_sparse_moe.experts." */
    const char *part_proj[2];      /* block i: expert i / nproj, part_proj[i % nproj] */
    unsigned nproj;
} synth_tensor;

typedef struct synth_plan {
    size_t n;
    synth_tensor *t;
    size_t nshards;
    size_t *first;                 /* shard s holds tensors [first[s], first[s+1]) */
    char **shard_names;
    uint64_t model_bytes;          /* tensor bytes of one model */
} synth_plan;

/* The tensors in the order transformers lists them, cut into shards. */
lx_status lx_synth_plan_build(const lx_synth_opts *o, synth_plan *p);
void lx_synth_plan_free(synth_plan *p);
/* The name block i of t is generated under (t->name when t has one part). */
void lx_synth_part_name(const synth_tensor *t, unsigned i, char *buf, size_t len);
/* Attention heads and key/value heads of o (o->heads == 0: hidden / head_dim
 * with head_dim the largest power of two up to 128 that divides hidden;
 * o->kv_heads == 0: as many as the heads), and the head dimension. */
void lx_synth_heads(const lx_synth_opts *o, uint64_t *heads, uint64_t *kv_heads,
                    uint64_t *head_dim);

/* ---- values (synth_values.c) ------------------------------------------------ */

/* Generate tensor t of every model and write it as entry idx of the open
 * shards outs[0 .. nmodels) (base, aligned and, with o->with_finetuned,
 * finetuned). */
lx_status lx_synth_tensor_write(const synth_tensor *t, const lx_synth_opts *o, lx_st_out *outs,
                                size_t idx);

/* ---- small files (synth_files.c) -------------------------------------------- */

/* config.json, generation_config.json and the placeholder tokenizer files
 * of model directory dir (model: M_BASE, M_ALIGNED or M_FINETUNED). */
lx_status lx_synth_model_files(const char *dir, int model, const lx_synth_opts *o);

#endif

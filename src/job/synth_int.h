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
    char name[80];
    int ndim;                      /* 1 (norms) or 2 */
    uint64_t rows, cols;           /* a 1-D tensor is one row */
    uint64_t nbytes;               /* in the output dtype */
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

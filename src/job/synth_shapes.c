/* synth_shapes.c - what `loxstream synth` writes, before any value: the
 * presets (sizes and shard size of each), the tensors of one model in the
 * order transformers lists them, with Llama names and [out, in] shapes, and
 * their cut into shards with the shard file names.  The values are
 * synth_values.c's, the files synth.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/dtype.h"
#include "synth_int.h"

/* ---- presets ------------------------------------------------------------ */

lx_status lx_synth_preset(const char *name, lx_synth_opts *o)
{
    memset(o, 0, sizeof *o);
    o->dtype = LX_DT_BF16;
    o->seed = 1;
    o->with_finetuned = 1;
    if (!strcmp(name, "tiny")) {
        /* odd widths on purpose: vector tails and non-square factors */
        o->hidden = 64, o->intermediate = 172, o->layers = 2, o->vocab = 250;
        o->shard_size = 96 << 10;  /* 256 KiB per model in bf16: 4 shards */
    } else if (!strcmp(name, "small")) {
        o->hidden = 512, o->intermediate = 1376, o->layers = 4, o->vocab = 4000;
        o->shard_size = 16 << 20;  /* 32 MiB per model in bf16: 2 shards */
    } else if (!strcmp(name, "llama-7b")) {
        o->hidden = 4096, o->intermediate = 11008, o->layers = 32, o->vocab = 32000;
        o->shard_size = 2ull << 30; /* 12.55 GiB per model in bf16: 7 shards */
    } else {
        return lx_fail(LX_EUSAGE, "unknown preset '%s' (expected tiny, small or llama-7b)", name);
    }
    return LX_OK;
}

/* ---- the tensors --------------------------------------------------------- */

void lx_synth_plan_free(synth_plan *p)
{
    free(p->t);
    free(p->first);
    if (p->shard_names)
        for (size_t s = 0; s < p->nshards; s++)
            free(p->shard_names[s]);
    free(p->shard_names);
    memset(p, 0, sizeof *p);
}

static void add_tensor(synth_plan *p, size_t esize, const char *name, uint64_t rows, uint64_t cols,
                       int ndim)
{
    synth_tensor *t = &p->t[p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->rows = rows;
    t->cols = cols;
    t->nbytes = rows * cols * esize;
    p->model_bytes += t->nbytes;
}

/* The tensors in the order transformers lists them, then greedy shards:
 * a shard takes tensors while it stays within shard_size; a tensor larger
 * than shard_size gets a shard of its own. */
lx_status lx_synth_plan_build(const lx_synth_opts *o, synth_plan *p)
{
    memset(p, 0, sizeof *p);
    size_t esize = lx_dtype_bits(o->dtype) / 8;
    uint64_t h = o->hidden, in = o->intermediate, v = o->vocab;
    size_t cap = 3 + 9 * (size_t)o->layers;
    p->t = calloc(cap, sizeof *p->t);
    p->first = calloc(cap + 1, sizeof *p->first);
    if (!p->t || !p->first) {
        lx_synth_plan_free(p);
        return lx_fail(LX_EFAIL, "out of memory (%zu tensors)", cap);
    }
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    char name[80];
    add_tensor(p, esize, "model.embed_tokens.weight", v, h, 2);
    for (uint64_t l = 0; l < o->layers; l++) {
        for (int a = 0; a < 4; a++) {
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".self_attn.%s.weight", l, attn[a]);
            add_tensor(p, esize, name, h, h, 2);
        }
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.gate_proj.weight", l);
        add_tensor(p, esize, name, in, h, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.up_proj.weight", l);
        add_tensor(p, esize, name, in, h, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.down_proj.weight", l);
        add_tensor(p, esize, name, h, in, 2);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".input_layernorm.weight", l);
        add_tensor(p, esize, name, 1, h, 1);
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".post_attention_layernorm.weight", l);
        add_tensor(p, esize, name, 1, h, 1);
    }
    add_tensor(p, esize, "model.norm.weight", 1, h, 1);
    add_tensor(p, esize, "lm_head.weight", v, h, 2);

    uint64_t used = 0;
    for (size_t i = 0; i < p->n; i++) {
        if (i == 0 || used >= o->shard_size || p->t[i].nbytes > o->shard_size - used) {
            p->first[p->nshards++] = i;
            used = 0;
        }
        used += p->t[i].nbytes;
    }
    p->first[p->nshards] = p->n;

    p->shard_names = calloc(p->nshards, sizeof *p->shard_names);
    if (!p->shard_names) {
        lx_synth_plan_free(p);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (size_t s = 0; s < p->nshards; s++) {
        char buf[64];
        /* a single shard is model.safetensors without an index, as transformers writes it */
        if (p->nshards == 1)
            snprintf(buf, sizeof buf, "model.safetensors");
        else
            snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, p->nshards);
        if (!(p->shard_names[s] = strdup(buf))) {
            lx_synth_plan_free(p);
            return lx_fail(LX_EFAIL, "out of memory");
        }
    }
    return LX_OK;
}

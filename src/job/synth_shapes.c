/* synth_shapes.c - what `loxstream synth` writes, before any value: the
 * presets (sizes and shard size of each), the tensors of one model in the
 * order transformers lists them, with Llama names and [out, in] shapes
 * (grouped-query attention; Mixtral's experts, unfused or fused into 3-D
 * tensors), and their cut into shards with the shard file names.  The values are
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
    } else if (!strcmp(name, "llama3-70b")) {
        o->hidden = 8192, o->intermediate = 28672, o->layers = 80, o->vocab = 128256;
        o->heads = 64, o->kv_heads = 8; /* k_proj, v_proj: 1024 x 8192 */
        o->shard_size = 5ull << 30; /* 131.4 GiB per model in bf16: 28 shards */
    } else if (!strcmp(name, "mixtral")) {
        o->hidden = 4096, o->intermediate = 14336, o->layers = 32, o->vocab = 32000;
        o->heads = 32, o->kv_heads = 8, o->experts = 8;
        o->shard_size = 5ull << 30; /* 86.99 GiB per model in bf16: 18 shards */
    } else {
        return lx_fail(LX_EUSAGE, "unknown preset '%s' (expected tiny, small, llama-7b, "
                       "llama3-70b or mixtral)", name);
    }
    return LX_OK;
}

void lx_synth_heads(const lx_synth_opts *o, uint64_t *heads, uint64_t *kv_heads,
                    uint64_t *head_dim)
{
    uint64_t hd = 128;
    if (o->heads) {
        hd = o->hidden / o->heads;
    } else {
        while (o->hidden % hd)
            hd /= 2;
    }
    *head_dim = hd;
    *heads = o->heads ? o->heads : o->hidden / hd;
    *kv_heads = o->kv_heads ? o->kv_heads : *heads;
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

static synth_tensor *add_tensor(synth_plan *p, size_t esize, const char *name, uint64_t rows,
                                uint64_t cols, int ndim)
{
    synth_tensor *t = &p->t[p->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->rows = rows;
    t->cols = cols;
    t->nmat = 1;
    t->nparts = 1;
    t->nbytes = rows * cols * esize;
    p->model_bytes += t->nbytes;
    return t;
}

void lx_synth_part_name(const synth_tensor *t, unsigned i, char *buf, size_t len)
{
    if (t->nparts == 1)
        snprintf(buf, len, "%s", t->source[0] ? t->source : t->name);
    else
        snprintf(buf, len, "%s%u.%s.weight", t->source, i / t->nproj, t->part_proj[i % t->nproj]);
}

/* The tensors per layer: attention, MLP or experts, two norms. */
static size_t layer_tensors(const lx_synth_opts *o)
{
    if (!o->experts)
        return 9;
    return 7 + (o->fused_experts ? 2 : 3 * (size_t)o->experts);
}

/* Layer l's mixture of experts, as Mixtral's checkpoints name it: the router
 * block_sparse_moe.gate [experts, hidden], and per expert e
 * block_sparse_moe.experts.e.w1 and w3 [intermediate, hidden] (gate and up)
 * and w2 [hidden, intermediate] (down).  Fused (transformers' layout since
 * its conversion mapping for Mixtral): the router mlp.gate, then
 * mlp.experts.gate_up_proj [experts, 2 intermediate, hidden] (each expert's
 * w1 then w3) and mlp.experts.down_proj [experts, hidden, intermediate],
 * with the values of the unfused tensors. */
static void add_experts(synth_plan *p, size_t esize, const lx_synth_opts *o, uint64_t l)
{
    uint64_t h = o->hidden, in = o->intermediate, E = o->experts;
    char name[96], prefix[64]; /* l < 4096, E <= 256 (check_opts) */
    snprintf(prefix, sizeof prefix, "model.layers.%u.block_sparse_moe.experts.", (unsigned)l);
    if (!o->fused_experts) {
        snprintf(name, sizeof name, "model.layers.%" PRIu64 ".block_sparse_moe.gate.weight", l);
        add_tensor(p, esize, name, E, h, 2);
        for (uint64_t e = 0; e < E; e++) {
            static const char *const proj[] = {"w1", "w2", "w3"};
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "%s%u.%s.weight", prefix, (unsigned)e, proj[k]);
                add_tensor(p, esize, name, k == 1 ? h : in, k == 1 ? in : h, 2);
            }
        }
        return;
    }
    snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.gate.weight", l);
    synth_tensor *gate = add_tensor(p, esize, name, E, h, 2);
    snprintf(gate->source, sizeof gate->source, "model.layers.%u.block_sparse_moe.gate.weight",
             (unsigned)l);
    snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.experts.gate_up_proj", l);
    synth_tensor *gu = add_tensor(p, esize, name, E * 2 * in, h, 3);
    gu->nmat = E, gu->nparts = (unsigned)(2 * E), gu->nproj = 2;
    gu->part_proj[0] = "w1", gu->part_proj[1] = "w3";
    snprintf(gu->source, sizeof gu->source, "%s", prefix);
    snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.experts.down_proj", l);
    synth_tensor *dn = add_tensor(p, esize, name, E * h, in, 3);
    dn->nmat = E, dn->nparts = (unsigned)E, dn->nproj = 1;
    dn->part_proj[0] = "w2";
    snprintf(dn->source, sizeof dn->source, "%s", prefix);
}

/* The tensors in the order transformers lists them, then greedy shards:
 * a shard takes tensors while it stays within shard_size; a tensor larger
 * than shard_size gets a shard of its own. */
lx_status lx_synth_plan_build(const lx_synth_opts *o, synth_plan *p)
{
    memset(p, 0, sizeof *p);
    size_t esize = lx_dtype_bits(o->dtype) / 8;
    uint64_t h = o->hidden, in = o->intermediate, v = o->vocab;
    uint64_t heads, kv_heads, head_dim;
    lx_synth_heads(o, &heads, &kv_heads, &head_dim);
    size_t cap = 3 + layer_tensors(o) * (size_t)o->layers;
    p->t = calloc(cap, sizeof *p->t);
    p->first = calloc(cap + 1, sizeof *p->first);
    if (!p->t || !p->first) {
        lx_synth_plan_free(p);
        return lx_fail(LX_EFAIL, "out of memory (%zu tensors)", cap);
    }
    static const char *const attn[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    char name[96];
    add_tensor(p, esize, "model.embed_tokens.weight", v, h, 2);
    for (uint64_t l = 0; l < o->layers; l++) {
        for (int a = 0; a < 4; a++) {
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".self_attn.%s.weight", l, attn[a]);
            /* grouped-query attention: k and v have kv_heads heads */
            add_tensor(p, esize, name, a == 1 || a == 2 ? kv_heads * head_dim : h, h, 2);
        }
        if (o->experts) {
            add_experts(p, esize, o, l);
        } else {
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.gate_proj.weight", l);
            add_tensor(p, esize, name, in, h, 2);
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.up_proj.weight", l);
            add_tensor(p, esize, name, in, h, 2);
            snprintf(name, sizeof name, "model.layers.%" PRIu64 ".mlp.down_proj.weight", l);
            add_tensor(p, esize, name, h, in, 2);
        }
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

/* apply_layout.c - the layouts of apply's output shards (see
 * apply_writer.h): which shard each tensor goes to, at which offset, and
 * each shard's __metadata__.
 *
 * By default the output keeps the aligned model's shard names, tensor
 * order and offsets.  With --out-shard-size SIZE the tensors, in the
 * aligned checkpoint's order, are cut into shards holding at most SIZE
 * bytes of tensor data each (a larger tensor gets a shard of its own), as
 * transformers' save_pretrained and mergekit do, named
 * model-0000i-of-0000N.safetensors (model.safetensors when one is enough).
 * Either way each shard's header is known before the first byte of data.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "loxstream/apply_writer.h"
#include "loxstream/fs.h"

static char *method_string(const lx_apply_opts *o)
{
    char *s = NULL;
    int rc;
    if (o->rank == 0)
        rc = asprintf(&s, "full-rank extrapolation");
    else if (o->stream.svd.exact)
        rc = asprintf(&s, "exact SVD");
    else if (o->stream.svd.passes > 0)
        rc = asprintf(&s, "randomized SVD, %d passes, oversample %d, seed %" PRIu64,
                      o->stream.svd.passes, o->stream.svd.oversample, o->stream.svd.seed);
    else
        rc = asprintf(&s, "randomized SVD, tol %g (max %d passes), oversample %d, seed %" PRIu64,
                      o->stream.svd.tol, o->stream.svd.max_passes, o->stream.svd.oversample,
                      o->stream.svd.seed);
    return rc < 0 ? NULL : s;
}

/* The keys of this run in every shard's metadata, and whether each is
 * set.  The anchor, the factor rank, the tol and the seed only when not
 * the default, so that a default run's bytes are what they were before
 * these keys (loxstream_method spells tol and seed in full anyway). */
enum { K_FORMAT, K_VERSION, K_RANK, K_ALPHA, K_METHOD, K_INCLUDE, K_EXCLUDE, K_ANCHOR, K_FRANK,
       K_TOL, K_SEED, K_COUNT };
static const char *const own_keys[K_COUNT] = {
    "format", "loxstream_version", "loxstream_rank", "loxstream_alpha", "loxstream_method",
    "loxstream_include", "loxstream_exclude", "loxstream_anchor", "loxstream_factor_rank",
    "loxstream_tol", "loxstream_seed"};

typedef struct own_meta {
    char rank[32], alpha[64], frank[32], tol[64], seed[32];
    char *method;
    const char *vals[K_COUNT];
    int set[K_COUNT];
} own_meta;

static lx_status own_meta_build(own_meta *m, const lx_apply_opts *o)
{
    lx_rsvd_opts def;
    lx_rsvd_opts_default(&def);
    const lx_rsvd_opts *svd = &o->stream.svd;
    int randomized = o->rank > 0 && !svd->exact;
    snprintf(m->rank, sizeof m->rank, "%d", o->rank);
    snprintf(m->alpha, sizeof m->alpha, "%.17g", o->alpha);
    snprintf(m->frank, sizeof m->frank, "%d", o->factor_rank);
    snprintf(m->tol, sizeof m->tol, "%.17g", svd->tol);
    snprintf(m->seed, sizeof m->seed, "%" PRIu64, svd->seed);
    if (!(m->method = method_string(o)))
        return lx_fail(LX_EFAIL, "out of memory");
    const char *vals[K_COUNT] = {"pt", PACKAGE_VERSION, m->rank, m->alpha, m->method,
                                 o->stream.include ? o->stream.include : "",
                                 o->stream.exclude ? o->stream.exclude : "", "base", m->frank,
                                 m->tol, m->seed};
    for (int k = 0; k < K_COUNT; k++) {
        m->vals[k] = vals[k];
        m->set[k] = 1;
    }
    m->set[K_ANCHOR] = o->anchor_base;
    m->set[K_FRANK] = o->factor_rank > 0;
    m->set[K_TOL] = randomized && svd->passes == 0 && svd->tol != def.tol;
    m->set[K_SEED] = randomized && svd->seed != def.seed;
    return LX_OK;
}

/* Which output shard each tensor goes to (w->shard_of), how many there
 * are and their names. */
static lx_status assign_shards(lx_apply_writer *w, const lx_apply_opts *o,
                               const lx_checkpoint *aligned)
{
    size_t nt = aligned->ntensors;
    if (!o->out_shard_size) {
        w->nshards = aligned->nshards;
        w->has_index = aligned->has_index;
        for (size_t ti = 0; ti < nt; ti++)
            w->shard_of[ti] = aligned->tensors[ti].shard;
        return LX_OK;
    }
    size_t n = 0;
    uint64_t fill = 0;
    for (size_t ti = 0; ti < nt; ti++) {
        uint64_t b = aligned->tensors[ti].nbytes;
        if (n == 0 || (fill > 0 && fill + b > o->out_shard_size)) {
            n++;
            fill = 0;
        }
        w->shard_of[ti] = n - 1;
        fill += b;
    }
    if (n == 0)
        n = 1; /* no tensors: one empty shard, as the aligned model's */
    w->nshards = n;
    w->has_index = n > 1;
    return LX_OK;
}

static lx_status shard_name(lx_out_shard *os, size_t s, size_t n)
{
    int rc = n == 1 ? asprintf(&os->own_name, "model.safetensors")
                    : asprintf(&os->own_name, "model-%05zu-of-%05zu.safetensors", s + 1, n);
    if (rc < 0) {
        os->own_name = NULL;
        return lx_fail(LX_EFAIL, "out of memory");
    }
    os->name = os->own_name;
    return LX_OK;
}

lx_status lx_writer_layouts(lx_apply_writer *J, const lx_apply_opts *o,
                            const lx_checkpoint *aligned)
{
    own_meta m;
    memset(&m, 0, sizeof m);
    /* another layout than the aligned model's (factor.h): its own metadata only */
    int own = aligned == J->in->aligned;
    size_t nt = aligned->ntensors ? aligned->ntensors : 1;
    J->slot = calloc(nt, sizeof *J->slot);
    J->shard_of = calloc(nt, sizeof *J->shard_of);
    lx_status st = J->slot && J->shard_of ? own_meta_build(&m, o)
                                          : lx_fail(LX_EFAIL, "out of memory");
    if (st == LX_OK)
        st = assign_shards(J, o, aligned);
    if (st == LX_OK && !(J->shards = calloc(J->nshards, sizeof *J->shards)))
        st = lx_fail(LX_EFAIL, "out of memory");
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        /* the aligned shard's own metadata; re-sharded: the first shard's */
        const lx_shard *in = &aligned->shards[o->out_shard_size ? 0 : s];
        lx_out_shard *os = &J->shards[s];
        size_t maxmeta = in->header.nmeta + K_COUNT, count = 0;
        for (size_t ti = 0; ti < aligned->ntensors; ti++)
            count += J->shard_of[ti] == s;
        os->entries = calloc(count ? count : 1, sizeof *os->entries);
        const char **keys = calloc(maxmeta, sizeof *keys), **vals = calloc(maxmeta, sizeof *vals);
        if (!os->entries || !keys || !vals) {
            free(keys);
            free(vals);
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        size_t nmeta = 0;
        for (int k = 0; k < K_COUNT && own; k++)
            if (m.set[k]) {
                keys[nmeta] = own_keys[k];
                vals[nmeta++] = m.vals[k];
            }
        for (size_t k = 0; k < in->header.nmeta; k++) {
            int ours = 0;
            for (int q = 0; q < K_COUNT && own; q++)
                ours |= !strcmp(in->header.meta_keys[k], own_keys[q]);
            if (!ours) {
                keys[nmeta] = in->header.meta_keys[k];
                vals[nmeta++] = in->header.meta_values[k];
            }
        }
        /* Entries in file order: by default the offsets equal the aligned
         * shard's; re-sharded, the aligned checkpoint's order. */
        size_t e = 0;
        for (size_t ti = 0; ti < aligned->ntensors; ti++) {
            const lx_tensor *t = &aligned->tensors[ti];
            if (J->shard_of[ti] != s)
                continue;
            J->slot[ti] = e;
            lx_st_entry *en = &os->entries[e++];
            en->name = t->name;
            en->dtype = t->dtype;
            en->ndim = t->ndim;
            for (int d = 0; d < t->ndim; d++)
                en->shape[d] = t->shape[d];
        }
        st = lx_st_layout_build(&os->layout, os->entries, e, keys, vals, nmeta);
        free(keys);
        free(vals);
        if (st != LX_OK)
            break;
        if (o->out_shard_size)
            st = shard_name(os, s, J->nshards);
        else
            os->name = in->name;
        if (st != LX_OK)
            break;
        os->final_path = lx_path_join(o->output_path, os->name);
        if (os->final_path && asprintf(&os->partial_path, "%s" LX_PARTIAL_SUFFIX, os->final_path) < 0)
            os->partial_path = NULL;
        if (!os->final_path || !os->partial_path)
            st = lx_fail(LX_EFAIL, "out of memory");
    }
    free(m.method);
    return st;
}

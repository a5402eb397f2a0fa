/* factor.c - the factor job (see factor.h): every transformed matrix
 * factored by the engine at rank K, its factors written to
 * OUTDIR/factors.safetensors through apply's writer, journal, identity,
 * output-directory, resumption and completion modules.
 *
 * The output's tensors are a layout of their own (apply_writer.h): five per
 * transformed tensor, in the plan's order.  The run's plan has one item per
 * output tensor, each a copy of the engine's item it comes from, so that the
 * writer records and resumes each output tensor against the inputs it is
 * computed from, as apply does for a tensor of its output.  The factors of
 * one tensor (all its matrices) are computed once, when the first of its
 * five output tensors is written, and kept until the last one is queued;
 * on two lanes where the engine's policy allows (lanes.h), a lane hashing
 * an engine item's inputs for its five output tensors.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "loxstream/apply.h"
#include "loxstream/apply_finish.h"
#include "loxstream/apply_identity.h"
#include "loxstream/apply_resume.h"
#include "loxstream/apply_writer.h"
#include "loxstream/factor.h"
#include "loxstream/lanes.h"
#include "loxstream/linalg.h"
#include "loxstream/parse.h"
#include "loxstream/progress.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"

#include "config.h"

enum { K_U, K_S, K_V, K_INFO, K_INPUTS, K_COUNT };
#define FACTOR_BUFFER (1u << 20)    /* bytes of each of the writer's buffers */
static const char *const suffix[K_COUNT] = {".lox_U", ".lox_S", ".lox_V", ".lox_info",
                                            ".lox_inputs"};

void lx_factor_opts_default(lx_factor_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    lx_engine_opts_default(&o->stream);
    o->part = o->nparts = 1;
}

typedef struct job {
    const lx_factor_opts *o;
    lx_apply_opts ao;              /* what the writer, identity and engine read */
    lx_inputs in;                  /* in.plan: one item per output tensor */
    lx_plan engine_plan;           /* the engine's plan (one item per input tensor) */
    size_t *from;                  /* output tensor -> engine item */
    /* the layout */
    lx_checkpoint layout;
    lx_shard shard;
    char **names, **meta_keys, **meta_vals;
    uint64_t *shapes;              /* LX_MAX_NDIM per output tensor */
    /* the run */
    lx_apply_writer w;
    lx_apply_identity id;
    lx_locks locks;
    lx_apply_resume rs;
    lx_apply_finish fin;
    lx_part part;
    lx_progress progress;
    uint64_t done_bytes;
    lx_factor_stats svd;
    lx_budget budget;              /* read-ahead within the memory limit */
    uint64_t need_max;             /* check_memory's largest need */
    lx_read_ahead ra;
    lx_lanes *lanes;               /* NULL: factored on this thread (lx_lanes_get) */
    unsigned char *keep;           /* output tensor -> the next one of the part is made from
                                    * the same engine item (w.keep_inputs) */
    /* the factors of engine item cur (batch of them) */
    size_t cur;
    lx_factors *fac;
    double *info;
} job;

static lx_status oom(void)
{
    return lx_fail(LX_EFAIL, "out of memory");
}

static lx_status add_meta(job *J, size_t *n, const char *key, const char *val)
{
    J->meta_keys[*n] = strdup(key);
    J->meta_vals[*n] = strdup(val);
    return J->meta_keys[(*n)++] && J->meta_vals[*n - 1] ? LX_OK : oom();
}

/* The header metadata: the identity of the run (factor.h). */
static lx_status build_meta(job *J)
{
    const lx_rsvd_opts *so = &J->o->stream.svd;
    size_t cap = 16 + J->in.base->nshards + J->in.aligned->nshards, n = 0;
    J->meta_keys = calloc(cap, sizeof *J->meta_keys);
    J->meta_vals = calloc(cap, sizeof *J->meta_vals);
    if (!J->meta_keys || !J->meta_vals)
        return oom();
    char v[128], key[4200], h[LX_HEX64], q[LX_NAME_QUOTE];
    lx_status st = add_meta(J, &n, "format", "pt");
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_factors", LX_FACTOR_FORMAT);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_version", PACKAGE_VERSION);
    snprintf(v, sizeof v, "%d", J->o->rank);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_rank", v);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_svd", so->exact ? "exact" : "randomized");
    snprintf(v, sizeof v, "%" PRIu64, so->seed);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_seed", v);
    snprintf(v, sizeof v, "%d", so->oversample);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_oversample", v);
    snprintf(v, sizeof v, "%.17g", so->tol);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_tol", v);
    snprintf(v, sizeof v, "%d", so->max_passes);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_max_passes", v);
    snprintf(v, sizeof v, "%d", so->passes);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_passes", v);
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_include", J->o->stream.include ? J->o->stream.include : "");
    if (st == LX_OK)
        st = add_meta(J, &n, "loxstream_exclude", J->o->stream.exclude ? J->o->stream.exclude : "");
    const struct { const char *role; const lx_checkpoint *ck; } ins[] = {
        {"base", J->in.base}, {"aligned", J->in.aligned}};
    for (int r = 0; r < 2 && st == LX_OK; r++) {
        for (size_t s = 0; s < ins[r].ck->nshards && st == LX_OK; s++) {
            const lx_shard *sh = &ins[r].ck->shards[s];
            snprintf(key, sizeof key, "loxstream_input %s/%s", ins[r].role,
                     lx_st_escape_name(sh->name, q, sizeof q));
            snprintf(v, sizeof v, "%" PRIu64 " %s", sh->size, lx_hex64(sh->header_xxh3, h));
            st = add_meta(J, &n, key, v);
        }
    }
    J->shard.header.nmeta = n;
    J->shard.header.meta_keys = J->meta_keys;
    J->shard.header.meta_values = J->meta_vals;
    return st;
}

/* Output tensor o (kind k of engine item it, k = the rank at it) in the layout. */
static lx_status layout_tensor(job *J, size_t o, const lx_plan_item *it, int kind, uint64_t k)
{
    lx_tensor *t = &J->layout.tensors[o];
    uint64_t *sh = J->shapes + o * LX_MAX_NDIM;
    const lx_tensor *a = it->aligned;
    int lead = a->ndim - 2, nd = 0;
    if (kind != K_INPUTS)
        for (; nd < lead; nd++)
            sh[nd] = a->shape[nd];
    static const lx_dtype dt[K_COUNT] = {LX_DT_F32, LX_DT_F32, LX_DT_F32, LX_DT_F64, LX_DT_U64};
    switch (kind) {
    case K_U: sh[nd++] = it->m; sh[nd++] = k; break;
    case K_S: sh[nd++] = k; break;
    case K_V: sh[nd++] = it->n; sh[nd++] = k; break;
    case K_INFO: sh[nd++] = LX_FACTOR_INFO_AT(k); break;
    default: sh[nd++] = 2; break;
    }
    size_t len = strlen(a->name) + strlen(suffix[kind]) + 1;
    if (!(J->names[o] = malloc(len)))
        return oom();
    snprintf(J->names[o], len, "%s%s", a->name, suffix[kind]);
    t->name = J->names[o];
    t->dtype = dt[kind];
    t->ndim = nd;
    t->shape = sh;
    t->nelem = 1;
    for (int d = 0; d < nd; d++)
        t->nelem *= sh[d];
    t->nbytes = t->nelem * (lx_dtype_bits(t->dtype) / 8);
    t->shard = 0;
    J->layout.total_bytes += t->nbytes;
    J->layout.total_params += t->nelem;
    return LX_OK;
}

/* The layout and the run's plan, from the engine's plan. */
static lx_status build_layout(job *J)
{
    lx_plan *ep = &J->engine_plan;
    size_t nt = 0;
    for (size_t i = 0; i < ep->n; i++)
        nt += ep->items[i].action == LX_ACT_LOWRANK ? K_COUNT : 0;
    if (nt == 0)
        return lx_fail(LX_EINPUT, "factor: no matrix to factor in %s (every tensor is copied%s)",
                       J->o->stream.aligned_path,
                       J->o->stream.include || J->o->stream.exclude ? ": see --include/--exclude" : "");
    J->layout.tensors = calloc(nt, sizeof *J->layout.tensors);
    J->names = calloc(nt, sizeof *J->names);
    J->shapes = calloc(nt * LX_MAX_NDIM, sizeof *J->shapes);
    J->from = calloc(nt, sizeof *J->from);
    J->in.plan.items = calloc(nt, sizeof *J->in.plan.items);
    if (!J->layout.tensors || !J->names || !J->shapes || !J->from || !J->in.plan.items)
        return oom();
    J->layout.ntensors = J->in.plan.n = J->shard.header.ntensors = nt;
    J->layout.nshards = 1;
    J->layout.shards = &J->shard;
    J->shard.name = (char *)LX_FACTOR_FILE;
    size_t o = 0;
    lx_status st = LX_OK;
    for (size_t i = 0; i < ep->n && st == LX_OK; i++) {
        const lx_plan_item *it = &ep->items[i];
        if (it->action != LX_ACT_LOWRANK)
            continue;
        uint64_t k = (uint64_t)lx_engine_rank(it, J->o->rank);
        for (int kind = 0; kind < K_COUNT && st == LX_OK; kind++, o++) {
            st = layout_tensor(J, o, it, kind, k);
            J->from[o] = i;
            J->in.plan.items[o] = *it;
            J->in.plan.transform_bytes += it->aligned->nbytes + it->base->nbytes;
        }
    }
    J->in.plan.ntransform = nt;
    return st == LX_OK ? build_meta(J) : st;
}

/* The factors of engine item e (all its matrices) in J->fac, unless they
 * are there already. */
static lx_status factors_of(job *J, size_t e)
{
    const lx_plan_item *it = &J->engine_plan.items[e];
    if (J->fac && J->cur == e)
        return LX_OK;
    lx_status st = LX_OK; /* the writer has copies of the old ones (put_bytes) */
    if (J->fac) {
        for (uint64_t b = 0; b < J->engine_plan.items[J->cur].batch; b++)
            lx_factors_free(&J->fac[b]);
        free(J->fac);
        free(J->info);
        J->fac = NULL;
        J->info = NULL;
    }
    if (st != LX_OK)
        return st;
    J->fac = calloc(it->batch, sizeof *J->fac);
    size_t ni = LX_FACTOR_INFO_AT(lx_engine_rank(it, J->o->rank));
    J->info = calloc(it->batch * ni, sizeof *J->info);
    if (!J->fac || !J->info)
        return oom();
    J->cur = e;
    int k = lx_engine_rank(it, J->o->rank);
    if (k < J->o->rank)
        lx_warn("tensor '%s': rank %d exceeds min(%" PRIu64 ", %" PRIu64 "): using rank %d%s",
                it->aligned->name, J->o->rank, it->m, it->n, k,
                it->batch > 1 ? " for each of its matrices" : "");
    for (uint64_t b = 0; b < it->batch && st == LX_OK; b++) {
        lx_factors *f = &J->fac[b];
        st = lx_lanes_get(J->lanes, &J->ao.stream, it, b, k, f, &J->svd);
        if (st == LX_OK && f->k != k)
            st = lx_fail(LX_EFAIL, "tensor '%s': %d triplets computed, %d expected",
                         it->aligned->name, f->k, k);
        double *in = J->info + b * ni;
        in[0] = f->err_est;
        in[1] = f->gap;
        in[2] = f->frob2;
        in[3] = f->passes;
        in[4] = f->exact;
        in[5] = f->converged;
        for (int r = 0; r <= k; r++) {
            in[LX_FACTOR_INFO + r] = f->err_at ? f->err_at[r] : NAN;
            in[LX_FACTOR_INFO + k + 1 + r] = f->err_at ? f->gap_at[r] : NAN;
        }
    }
    if (st == LX_OK)
        lx_test_pause("factored", it->aligned->name);
    return st;
}

/* Whether a lane hashes engine item e's inputs (it is listed). */
static int lanes_hash(const job *J, size_t e)
{
    return J->lanes && lx_lanes_find(J->lanes, &J->engine_plan.items[e], 0) != SIZE_MAX;
}

/* The lanes' before(): engine item it's inputs hashed on the lane's
 * thread, for each of the part's output tensors made from it. */
static void lane_hash(void *ctx, const lx_plan_item *it)
{
    job *J = ctx;
    size_t e = (size_t)(it - J->engine_plan.items);
    uint64_t h[2];
    lx_plan_item_hash(it, h, 1);
    for (size_t i = J->part.lo; i < J->part.hi; i++)
        if (J->from[i] == e) {
            J->w.in_xxh3[2 * i] = h[0];
            J->w.in_xxh3[2 * i + 1] = h[1];
        }
}

/* The engine items the lanes factor ahead (lanes.h: whether they run):
 * those of the part's output tensors that are computed (have no record to
 * keep), in the order run_items reaches them. */
static void lanes_start(job *J)
{
    lx_lane_item *items = malloc((J->engine_plan.n + 1) * sizeof *items);
    if (!items)
        return; /* without lanes, as with -j 1 */
    size_t n = 0;
    for (size_t i = J->part.lo; i < J->part.hi; i++) {
        const lx_plan_item *it = &J->engine_plan.items[J->from[i]];
        if (it->action != LX_ACT_LOWRANK || (J->rs.resuming && J->rs.rec[i]) ||
            (n && items[n - 1].it == it))
            continue;
        items[n++] = (lx_lane_item){it, lx_engine_rank(it, J->o->rank)};
    }
    J->lanes = lx_lanes_open(&J->o->stream, &J->budget, J->need_max, items, n, lane_hash, J);
    free(items);
}

/* len bytes at off of output entry idx, copied into the writer's buffers
 * (so that the factors can go as soon as they are queued). */
static lx_status put_bytes(job *J, size_t idx, uint64_t off, const void *src, size_t len)
{
    lx_status st = LX_OK;
    for (size_t at = 0; at < len && st == LX_OK; at += FACTOR_BUFFER) {
        size_t n = len - at < FACTOR_BUFFER ? len - at : FACTOR_BUFFER;
        int slot;
        unsigned char *buf = lx_writer_buffer_at(&J->w, &J->w.shards[0], idx, off + at, &slot);
        if (!buf) {
            st = lx_writer_drain(&J->w);
            return st != LX_OK ? st : lx_fail(LX_EFAIL, "%s: the writer stopped",
                                              J->o->output_path);
        }
        memcpy(buf, (const unsigned char *)src + at, n);
        st = lx_writer_put(&J->w, &J->w.shards[0], idx, off + at, buf, n, slot);
    }
    return st;
}

/* Output tensor i: its bytes queued from the factors (or, for
 * NAME.lox_inputs, the inputs' checksums). */
static lx_status write_tensor(job *J, size_t i)
{
    const lx_plan_item *it = &J->in.plan.items[i];
    int kind = (int)(i % K_COUNT); /* five per engine item, in order */
    size_t idx = J->w.slot[i];
    uint64_t k = (uint64_t)lx_engine_rank(it, J->o->rank), off = 0;
    /* a lane hashes the inputs before it factors them: the hash is there
     * once the factors are */
    if (kind == K_INPUTS && lanes_hash(J, J->from[i])) {
        lx_status st = factors_of(J, J->from[i]);
        if (st != LX_OK)
            return st;
    }
    if (kind == K_INPUTS)
        return put_bytes(J, idx, 0, J->w.in_xxh3 + 2 * i, 2 * sizeof *J->w.in_xxh3);
    lx_status st = factors_of(J, J->from[i]);
    if (kind == K_INFO)
        return st == LX_OK ? put_bytes(J, idx, 0, J->info,
                                       it->batch * LX_FACTOR_INFO_AT(k) * sizeof(double))
                           : st;
    for (uint64_t b = 0; b < it->batch && st == LX_OK; b++) {
        const lx_factors *f = &J->fac[b];
        const float *src = kind == K_U ? f->U : kind == K_S ? f->S : f->V;
        size_t len = (kind == K_U ? it->m : kind == K_V ? it->n : 1) * k * sizeof(float);
        st = put_bytes(J, idx, off, src, len);
        off += len;
    }
    return st;
}

/* Engine item e's inputs read ahead, and those of the next transformed ones. */
static void read_ahead(job *J, size_t e)
{
    const lx_plan_item *next[LX_PREFETCH_MAX / 2];
    size_t nn = 0;
    for (size_t j = e; j < J->engine_plan.n && nn < LX_PREFETCH_MAX / 2; j++)
        if (J->engine_plan.items[j].action == LX_ACT_LOWRANK)
            next[nn++] = &J->engine_plan.items[j];
    lx_read_ahead_set(&J->ra, next, nn);
}

static lx_status run_items(job *J)
{
    lx_status st = LX_OK;
    for (size_t i = J->part.lo; i < J->part.hi && st == LX_OK; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        int need = 0;
        if (i == J->part.lo || J->from[i] != J->from[i - 1])
            read_ahead(J, J->from[i]);
        st = lx_resume_item_begin(&J->rs, &J->in, &J->w, i, &J->w.shards[0], &need);
        if (st == LX_OK && need) {
            /* the inputs hashed once per engine item; a listed one's by
             * the lane that factors it (lane_hash) */
            if (!lanes_hash(J, J->from[i])) {
                if (i > J->part.lo && J->from[i - 1] == J->from[i] && J->w.in_xxh3[2 * (i - 1)]) {
                    J->w.in_xxh3[2 * i] = J->w.in_xxh3[2 * (i - 1)];
                    J->w.in_xxh3[2 * i + 1] = J->w.in_xxh3[2 * (i - 1) + 1];
                } else {
                    lx_writer_hash_inputs(&J->w, i);
                }
            }
            st = write_tensor(J, i);
            if (st == LX_OK)
                st = lx_writer_end_item(&J->w, i, &J->w.shards[0], J->w.slot[i]);
        }
        /* kept: its pages stay for the next output tensor of its item
         * (mapping let go only); else done, as apply's (the prefetcher
         * stopped before they are dropped) */
        if (st == LX_OK && !need && J->keep[i])
            lx_plan_item_release(it, 0);
        else if (st == LX_OK && !need)
            lx_read_ahead_done(&J->ra, it);
        J->done_bytes += lx_writer_out(&J->w, i)->nbytes;
        lx_progress_update(&J->progress, i - J->part.lo + 1, J->done_bytes, it->aligned->name);
    }
    return lx_writer_end_items(&J->w, st);
}

/* The largest need: the SVD at rank K and a tensor's factors. */
static lx_status check_memory(job *J)
{
    uint64_t worst = 0;
    const char *worst_name = NULL;
    for (size_t i = 0; i < J->engine_plan.n; i++) {
        const lx_plan_item *it = &J->engine_plan.items[i];
        if (it->action != LX_ACT_LOWRANK)
            continue;
        uint64_t k = (uint64_t)lx_engine_rank(it, J->o->rank);
        uint64_t need = lx_engine_svd_bytes(&J->o->stream, it, J->o->rank) +
                        it->batch * ((it->m + 2 * it->n + 1) * k * 4 + 8 * LX_FACTOR_INFO_AT(k)) +
                        3 * (uint64_t)FACTOR_BUFFER; /* the writer's (apply_writer.c) */
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    J->need_max = worst;
    lx_status st = lx_engine_check_memory(&J->o->stream, &J->engine_plan, worst, worst_name,
                                          &J->budget);
    lx_budget_reserve_writes(&J->budget);
    return st;
}

static lx_status run(job *J)
{
    const lx_factor_opts *o = J->o;
    lx_status st = lx_engine_filter(&J->in, &o->stream);
    if (st == LX_OK)
        st = lx_engine_open(&J->in, &o->stream, o->rank, 0);
    if (st != LX_OK)
        return st;
    J->engine_plan = J->in.plan;
    memset(&J->in.plan, 0, sizeof J->in.plan);
    if ((st = check_memory(J)) != LX_OK || (st = build_layout(J)) != LX_OK ||
        (st = lx_linalg_init(o->stream.threads)) != LX_OK ||
        (st = lx_part_init(&J->part, &J->in.plan, o->part, o->nparts)) != LX_OK ||
        (st = lx_resume_init(&J->rs, J->in.plan.n)) != LX_OK ||
        (st = lx_writer_init_layout(&J->w, &J->ao, &J->in, &J->layout, o->nparts)) != LX_OK ||
        (st = lx_apply_identity_build(&J->id, &J->ao, J->in.base, J->in.aligned, &J->w)) !=
            LX_OK ||
        (st = lx_resume_prepare(&J->rs, &J->ao, &J->in, &J->part, &J->w, &J->id, &J->locks)) !=
            LX_OK)
        return st;
    if (J->rs.complete_already) {
        if (!o->stream.quiet)
            lx_say(&o->stream.report, "factor: %s is complete and intact: nothing to do",
                   o->output_path);
        return LX_OK;
    }
    const lx_part *pt = &J->part;
    lx_progress_begin(&J->progress, "factor", pt->hi - pt->lo, J->layout.total_bytes,
                      o->stream.quiet, &o->stream.report);
    /* with evict, an engine item's input pages go once the last of its
     * output tensors is done: each one's record hashes the inputs again */
    if (!(J->keep = calloc(J->in.plan.n + 1, 1)))
        return oom();
    for (size_t i = pt->lo; i + 1 < pt->hi; i++)
        J->keep[i] = J->from[i + 1] == J->from[i];
    lx_read_ahead_start(&J->ra, &J->budget);
    J->w.evict = J->budget.evict;
    J->w.behind_window = J->budget.behind;
    J->w.keep_inputs = J->keep;
    st = lx_writer_start(&J->w, FACTOR_BUFFER);
    if (st == LX_OK) {
        lanes_start(J);
        st = run_items(J);
    }
    lx_lanes_stop(J->lanes);
    J->lanes = NULL;
    lx_writer_stop(&J->w);
    lx_read_ahead_stop(&J->ra);
    if (st == LX_OK && ((st = lx_checkpoint_unchanged(J->in.base)) != LX_OK ||
                        (st = lx_checkpoint_unchanged(J->in.aligned)) != LX_OK))
        st = lx_fail_append(st, "; the output is not completed: run the same command again once "
                            "the inputs no longer change");
    if (st == LX_OK)
        st = pt->nparts > 1
                 ? lx_finish_part(&J->fin, &J->in, pt, &J->w, &J->id, &J->rs, &J->locks)
                 : lx_finish_run(&J->fin, &J->in, pt, &J->w, &J->id, &J->rs, &J->locks);
    if (st != LX_OK)
        return st;
    lx_progress_end(&J->progress);
    if (!o->stream.quiet) {
        if (J->rs.resuming)
            lx_say(&o->stream.report, "factor: %zu output tensors kept from the earlier run",
                   J->rs.kept);
        lx_say(&o->stream.report, "factor: %zu matrices factored at rank %d; SVD %.2f s; "
               "output %s", J->svd.matrices, o->rank, J->svd.seconds, o->output_path);
        if (J->fin.msg[0])
            lx_say(&o->stream.report, "%s", J->fin.msg);
    }
    lx_engine_warn_unconverged(&o->stream, "factor", &J->svd);
    return LX_OK;
}

static void job_free(job *J)
{
    if (J->fac)
        for (uint64_t b = 0; b < J->engine_plan.items[J->cur].batch; b++)
            lx_factors_free(&J->fac[b]);
    free(J->fac);
    free(J->info);
    lx_writer_free(&J->w);
    lx_resume_free(&J->rs);
    lx_apply_identity_free(&J->id);
    lx_locks_close(&J->locks);
    lx_part_free(&J->part);
    for (size_t i = 0; J->names && i < J->layout.ntensors; i++)
        free(J->names[i]);
    for (size_t i = 0; J->meta_keys && i < J->shard.header.nmeta; i++) {
        free(J->meta_keys[i]);
        free(J->meta_vals[i]);
    }
    free(J->names);
    free(J->meta_keys);
    free(J->meta_vals);
    free(J->shapes);
    free(J->from);
    free(J->keep);
    free(J->layout.tensors);
    free(J->in.plan.items);
    J->in.plan = J->engine_plan; /* freed with the inputs */
    lx_inputs_free(&J->in);
}

lx_status lx_factor_run(const lx_factor_opts *o)
{
    if (o->rank < 1)
        return lx_fail(LX_EUSAGE, "factor: --rank %d: expected at least 1", o->rank);
    job J;
    memset(&J, 0, sizeof J);
    J.o = o;
    lx_apply_opts_default(&J.ao);
    J.ao.stream = o->stream;
    J.ao.stream.certify_all = 1; /* every rank up to K, for any later run */
    J.ao.output_path = o->output_path;
    J.ao.rank = o->rank;
    J.ao.alpha = 0;
    J.ao.restart = o->restart;
    J.ao.part = o->part;
    J.ao.nparts = o->nparts;
    lx_locks_init(&J.locks);
    J.w.journal.fd = -1;
    J.fin.o = &J.ao;
    lx_status st = run(&J);
    if (st == LX_EFAIL && J.rs.prepared && !J.fin.final_message)
        lx_fail_append(st, "; the output is incomplete: fix the cause and run the same command "
                       "again to resume");
    job_free(&J);
    return st;
}

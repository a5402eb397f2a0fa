/* apply.c - the LoX job (see apply.h): the transform and the run loop.
 *
 * Data flow per tensor: the two mmapped inputs -> row panels of
 * dW = aligned - base in f32 (plan.c: converted and subtracted on the fly,
 * checked finite) -> randomized SVD (rsvd.c) -> output pass: rows of
 * anchor (aligned, or base) + alpha * U_k S_k V_k^T, rounded to the stored dtype and handed
 * to the writer thread (apply_writer.c) at their final offsets.  The output
 * keeps the aligned model's shard names, tensor order and offsets (or is
 * re-sharded, apply_layout.c), so each output header is known before the
 * first byte of data is written.
 *
 * A run writes one output or, for a sweep (apply_sweep.c), several: each
 * matrix is factored once and every output that still needs it gets its
 * rows from the same factors, with its own alpha, rank and anchor.
 * The run loop holds the parts, each with its own state: the inputs and
 * the plan with this process's part of it (plan.c); per output, the writer
 * and its shards (apply_writer.c), the identity (apply_identity.c), the
 * output directory's locks (outdir.c), the preparation and resumption
 * (apply_resume.c) and the completion (apply_finish.c).
 */
#include "config.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loxstream/apply.h"
#include "loxstream/apply_finish.h"
#include "loxstream/apply_identity.h"
#include "loxstream/apply_resume.h"
#include "loxstream/apply_sweep.h"
#include "loxstream/apply_writer.h"
#include "loxstream/dtype.h"
#include "loxstream/engine.h"
#include "loxstream/lanes.h"
#include "loxstream/linalg.h"
#include "loxstream/outdir.h"
#include "loxstream/parse.h"
#include "loxstream/plan.h"
#include "loxstream/prefetch.h"
#include "loxstream/progress.h"
#include "loxstream/report_file.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"

#define COPY_CHUNK (16u << 20)      /* bytes per write when copying a tensor */
#define OUT_BUFFERS 3               /* output panels in flight to the writer (apply_writer.c) */

/* ---- options ----------------------------------------------------------- */

void lx_apply_opts_default(lx_apply_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    o->alpha = 1.25;
    lx_engine_opts_default(&o->stream);
    o->part = o->nparts = 1;
}

/* One output of the run (a sweep writes several, each complete and
 * resumable on its own, as a run writing it alone would). */
typedef struct output {
    lx_apply_opts o;               /* its options: path, alpha, rank, factor rank */
    lx_apply_writer w;
    lx_apply_identity id;
    lx_locks locks;
    lx_apply_resume rs;
    lx_apply_finish fin;
    FILE *report;
    int active;                    /* not found complete already */
    int need;                      /* the current item is written for it */
    size_t computed;
    lx_factor_stats conv;          /* its matrices against --tol, at its rank */
} output;

typedef struct job {
    const lx_apply_opts *o;        /* the run's (the first output's, for a sweep) */
    output *outs;
    size_t nouts;
    _Atomic unsigned *users;       /* a sweep's: per item, its writers yet to finish it */
    int factor_rank;               /* each matrix is factored at this rank */
    lx_inputs in;                  /* checkpoints, filters, plan */
    lx_part part;                  /* this process's items [lo, hi) */
    /* the transform */
    float *fbuf;                   /* PANEL x n_full f32; NULL without full-rank items */
    size_t n_max;                  /* widest transformed matrix (the writer's buffers) */
    size_t n_full;                 /* widest full-rank one (fbuf), 0 if none */
    lx_progress progress;
    uint64_t done_bytes;           /* of every output */
    lx_budget budget;              /* read-ahead within the memory limit */
    uint64_t need_max;             /* the largest need of the run (check_memory) */
    lx_lanes *lanes;               /* matrices factored ahead (NULL: here, in turn) */
    int two_lanes;                 /* lanes ran (--stats) */
    lx_read_ahead ra;
    const lx_plan_item **ahead;    /* prefetch_from's list: plan.n entries */
    lx_factor_stats svd;           /* the factorisations of this run */
    double out_seconds;            /* output rows: rank-k GEMM, add, rounding */
} job;

/* Output rows [r0, r0+h) of a matrix (h <= LX_RSVD_PANEL_ROWS) into obuf
 * (a buffer of the writer's pool):
 * round(anchor + alpha * U_kk S_kk V_kk^T rows), or with f == NULL (full
 * rank) round(anchor + alpha * dW) from the dW rows already in fbuf (which
 * are scaled in place).  Tiles of OUT_TILE rows are shared out among the
 * threads; each tile's f32 rows are made in its own part of fbuf and
 * rounded while still in cache, rather than in a pass over the whole panel
 * after the GEMM.  The tiles depend on the shape only, so the bits do not
 * depend on the thread count.  Each tile's rounded rows are checked for
 * Inf/NaN (an overflow of the dtype: the inputs are finite), with factors
 * as they are rounded (lx_factors_add_rows); returns the index in obuf of
 * the first one, or h * n. */
#define OUT_TILE 8
static size_t output_rows(job *J, lx_dtype dt, const lx_factors *f, int kk, float alpha,
                          const unsigned char *anchor, size_t r0, size_t h, size_t n,
                          size_t esize, unsigned char *obuf)
{
    long tiles = (long)((h + OUT_TILE - 1) / OUT_TILE);
    size_t first = h * n;
#pragma omp parallel for schedule(static) num_threads(J->o->stream.threads) if (J->o->stream.threads > 1 && h * n >= (1u << 16)) reduction(min:first)
    for (long ti = 0; ti < tiles; ti++) {
        size_t i0 = (size_t)ti * OUT_TILE, th = h - i0 < OUT_TILE ? h - i0 : OUT_TILE;
        size_t bad;
        if (f) {
            bad = lx_factors_add_rows(f, kk, alpha, r0 + i0, th, dt,
                                      anchor + (r0 + i0) * n * esize, obuf + i0 * n * esize);
        } else {
            float *d = J->fbuf + i0 * n;
            for (size_t i = 0; i < th * n; i++)
                d[i] *= alpha;
            for (size_t i = 0; i < th; i++)
                lx_add_f32(dt, anchor + (r0 + i0 + i) * n * esize, d + i * n,
                           obuf + (i0 + i) * n * esize, n);
            bad = lx_find_nonfinite(dt, obuf + i0 * n * esize, th * n);
        }
        if (bad < th * n && i0 * n + bad < first)
            first = i0 * n + bad;
    }
    return first;
}

/* Output element (r, c) of matrix b rounded to Inf or NaN (output_rows). */
static lx_status overflow_error(const lx_plan_item *it, uint64_t b, const unsigned char *anchor,
                                int anchor_base, size_t r, size_t c)
{
    const lx_tensor *t = it->aligned;
    float a;
    lx_to_f32(t->dtype, anchor + (r * it->n + c) * (lx_dtype_bits(t->dtype) / 8), &a, 1);
    char where[64] = "";
    if (it->batch > 1)
        snprintf(where, sizeof where, "matrix %" PRIu64 ", ", b);
    return lx_fail(LX_EINPUT, "tensor '%s': %srow %zu, column %zu: %s %g plus the update "
                   "overflows %s (largest finite value %.9g); lower --alpha",
                   t->name, where, r, c, anchor_base ? "base" : "aligned", a,
                   lx_dtype_name(t->dtype), lx_dtype_max(t->dtype));
}

/* The report's row for matrix b of it in output u: f's top kk triplets
 * (f NULL: no factors), with what they promise (lx_engine_prefix). */
static void report_line(output *u, const lx_plan_item *it, uint64_t b, const lx_factors *f,
                        int kk, double seconds)
{
    FILE *rp = u->report;
    const lx_tensor *t = it->aligned;
    const char *act = it->action == LX_ACT_LOWRANK ? "lowrank"
                      : it->action == LX_ACT_FULL  ? "full"
                                                   : "copy";
    double err = 0, gap = 0;
    int conv = 1;
    if (f) {
        kk = kk < f->k ? kk : f->k;
        lx_engine_prefix(f, kk, u->o.stream.svd.tol, &err, &gap, &conv);
        lx_engine_count(&u->conv, conv, gap);
    }
    if (!rp)
        return;
    /* the whole name, escaped as everywhere (one TSV field, one line); out
     * of memory: as stored */
    char *q = lx_st_escape_dup(t->name);
    fprintf(rp, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s", q ? q : t->name, b,
            it->m, it->n, lx_dtype_name(t->dtype), it->action == LX_ACT_COPY ? it->why : act);
    free(q);
    if (f) {
        double top = 0;
        for (int j = 0; j < kk; j++)
            top += (double)f->S[j] * f->S[j];
        fprintf(rp, "\t%d\t%d\t%s\t%.3g\t%.6g\t%.6f\t", kk, f->passes, conv ? "yes" : "no",
                err, sqrt(f->frob2), f->frob2 > 0 ? top / f->frob2 : 0.0);
        for (int j = 0; j < kk; j++)
            fprintf(rp, "%s%.6g", j ? "," : "", f->S[j]);
        fprintf(rp, "\t%.3f\t%s\t%.3g\n", seconds, f->exact ? "exact" : "randomized", gap);
    } else {
        fprintf(rp, "\t\t\t\t\t\t\t\t%.3f\t\t\n", seconds);
    }
}

static lx_status write_copy(job *J, output *u, lx_out_shard *os, size_t idx,
                            const lx_plan_item *it)
{
    const lx_tensor *t = lx_writer_copy_source(&u->w, it);
    for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
        uint64_t len = t->nbytes - off < COPY_CHUNK ? t->nbytes - off : COPY_CHUNK;
        lx_status st = lx_writer_put(&u->w, os, idx, off, t->data + off, (size_t)len, -1);
        if (st != LX_OK)
            return st;
        J->done_bytes += len;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    return LX_OK;
}

/* Panel [r0, r0+h) of matrix b for output u: rows made, checked, queued. */
static lx_status output_panel(job *J, output *u, const lx_plan_item *it, uint64_t b,
                              const lx_factors *f, size_t r0, size_t h, size_t idx)
{
    const lx_tensor *t = it->aligned;
    size_t esize = lx_dtype_bits(t->dtype) / 8, n = it->n;
    uint64_t mat_bytes = (uint64_t)it->m * n * esize;
    const unsigned char *anchor = (u->o.anchor_base ? it->base : t)->data + b * mat_bytes;
    lx_status st = LX_OK;
    /* full rank: dW's rows for each output, as output_rows scales them */
    if (!f && (st = lx_delta_rows(it, b, r0, h, J->fbuf, n)) != LX_OK)
        return st;
    lx_out_shard *os = &u->w.shards[u->w.shard_of[t - J->in.aligned->tensors]];
    uint64_t off = b * mat_bytes + r0 * n * esize;
    int slot;
    unsigned char *obuf = lx_writer_buffer_at(&u->w, os, idx, off, &slot);
    if (!obuf) {
        st = lx_writer_drain(&u->w);
        return st != LX_OK ? st : lx_fail(LX_EFAIL, "%s: the writer stopped", u->o.output_path);
    }
    double o0 = lx_now();
    size_t bad = output_rows(J, t->dtype, f, u->o.rank, (float)u->o.alpha, anchor, r0, h, n,
                             esize, obuf);
    J->out_seconds += lx_now() - o0;
    /* before the put: the tensor is never finished, so never journaled */
    if (bad < h * n)
        return overflow_error(it, b, anchor, u->o.anchor_base, r0 + bad / n, bad % n);
    st = lx_writer_put(&u->w, os, idx, off, obuf, h * n * esize, slot);
    J->done_bytes += h * n * esize;
    lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    return st;
}

/* Matrix b of it: factored once (at the factor rank), then each output
 * that needs it written panel by panel from the same factors. */
static lx_status transform_matrix(job *J, const lx_plan_item *it, size_t idx, uint64_t b)
{
    const lx_tensor *t = it->aligned;
    size_t m = it->m, n = it->n;
    double t0 = lx_now();
    lx_factors f;
    memset(&f, 0, sizeof f);
    lx_status st = LX_OK;
    int have_factors = 0;
    if (it->action == LX_ACT_LOWRANK) {
        int rank = lx_engine_rank(it, J->factor_rank);
        if (rank < J->factor_rank && b == 0) /* once per tensor, not per matrix */
            lx_warn("tensor '%s': rank %d exceeds min(%zu, %zu): using rank %d%s", t->name,
                    J->factor_rank, m, n, rank, it->batch > 1 ? " for each of its matrices" : "");
        st = lx_lanes_get(J->lanes, &J->o->stream, it, b, rank, &f, &J->svd);
        if (st != LX_OK)
            return st;
        have_factors = 1;
        lx_test_pause("factored", t->name);
    }
    for (size_t r0 = 0; r0 < m && st == LX_OK; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        for (size_t q = 0; q < J->nouts && st == LX_OK; q++)
            if (J->outs[q].need)
                st = output_panel(J, &J->outs[q], it, b, have_factors ? &f : NULL, r0, h, idx);
    }
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++)
        if (J->outs[q].need)
            report_line(&J->outs[q], it, b, have_factors ? &f : NULL, J->outs[q].o.rank,
                        lx_now() - t0);
    lx_factors_free(&f);
    return st;
}

/* Read item i's inputs ahead and those of the next items of the part
 * (items every output recorded in an earlier run are likely kept: skipped). */
static void prefetch_from(job *J, size_t i)
{
    size_t n = 0;
    for (size_t j = i; j < J->part.hi; j++) {
        int kept = j > i;
        for (size_t q = 0; q < J->nouts && kept; q++)
            kept = !J->outs[q].active || (J->outs[q].rs.resuming && J->outs[q].rs.rec[j]);
        J->ahead[n++] = kept ? NULL : &J->in.plan.items[j];
    }
    lx_read_ahead_set(&J->ra, J->ahead, n);
}

/* Item i for every output that needs it. */
static lx_status process_item(job *J, size_t i)
{
    const lx_plan_item *it = &J->in.plan.items[i];
    /* Where the output bytes go: the same shard and slot in every output */
    size_t idx = J->outs[0].w.slot[i];
    lx_status st = LX_OK;
    prefetch_from(J, i);
    if (it->action == LX_ACT_COPY) {
        for (size_t q = 0; q < J->nouts && st == LX_OK; q++) {
            output *u = &J->outs[q];
            double t0 = lx_now();
            if (u->need)
                st = write_copy(J, u, &u->w.shards[u->w.shard_of[i]], idx, it);
            if (u->need && st == LX_OK)
                report_line(u, it, 0, NULL, 0, lx_now() - t0);
        }
    } else {
        for (uint64_t b = 0; b < it->batch && st == LX_OK; b++)
            st = transform_matrix(J, it, idx, b);
    }
    return st;
}

/* Bytes of one output panel: LX_RSVD_PANEL_ROWS rows of the widest
 * transformed matrix, 8 bytes per element at most (F64). */
static size_t out_buffer_bytes(const job *J)
{
    return (size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1) * 8;
}

/* The largest need of the run: fbuf, every output's writer buffers and
 * read-back buffer beyond the first's (the fixed overhead holds one), and
 * the SVD at the factor rank. */
static lx_status check_memory(job *J)
{
    const lx_apply_opts *o = J->o;
    uint64_t worst = 0;
    const char *worst_name = NULL;
    J->n_max = J->n_full = 0;
    for (size_t i = 0; i < J->in.plan.n; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        if (it->action == LX_ACT_COPY)
            continue;
        if (it->n > J->n_max)
            J->n_max = it->n;
        if (it->action == LX_ACT_FULL && it->n > J->n_full)
            J->n_full = it->n;
        uint64_t need = (uint64_t)LX_RSVD_PANEL_ROWS * it->n *
                        (sizeof(float) + 8 * OUT_BUFFERS * (uint64_t)J->nouts);
        need += (uint64_t)(J->nouts - 1) * LX_RESUME_CHECK_CHUNK;
        if (it->action == LX_ACT_LOWRANK)
            need += lx_engine_svd_bytes(&o->stream, it, J->factor_rank);
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    J->need_max = worst;
    lx_status st = lx_engine_check_memory(&o->stream, &J->in.plan, worst, worst_name,
                                            &J->budget);
    lx_budget_reserve_writes(&J->budget);
    if (st != LX_OK && J->nouts > 1)
        st = lx_fail_append(st, "; the sweep writes %zu outputs at once, each with its own "
                            "output buffers: sweep fewer values per run", J->nouts);
    return st;
}

/* --anchor base adds the update to the base tensor, rounded to the aligned
 * dtype: only when both have that dtype (a mixed pair is refused). */
static lx_status check_anchor(job *J)
{
    for (size_t q = 0; q < J->nouts; q++) {
        if (!J->outs[q].o.anchor_base)
            continue;
        for (size_t i = 0; i < J->in.plan.n; i++) {
            const lx_plan_item *it = &J->in.plan.items[i];
            if (it->action != LX_ACT_COPY && it->base->dtype != it->aligned->dtype)
                return lx_fail(LX_EUSAGE, "--anchor base: tensor '%s' is %s in base and %s in "
                               "aligned: the base anchor needs one dtype (use the default "
                               "anchor, or --exclude it)", it->aligned->name,
                               lx_dtype_name(it->base->dtype), lx_dtype_name(it->aligned->dtype));
        }
        break;
    }
    return LX_OK;
}

static void job_free(job *J)
{
    free(J->users);
    for (size_t q = 0; q < J->nouts; q++) {
        output *u = &J->outs[q];
        lx_writer_free(&u->w);
        lx_resume_free(&u->rs);
        lx_apply_identity_free(&u->id);
        lx_locks_close(&u->locks);
        if (u->report && u->report != stdout)
            fclose(u->report);
    }
    free(J->fbuf);
    free(J->ahead);
    lx_part_free(&J->part);
    lx_inputs_free(&J->in);
}

static void print_stats(job *J)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double wall = lx_now() - J->progress.start;
    unsigned long long rd = 0, wr = 0;
    FILE *io = fopen("/proc/self/io", "r");
    if (io) {
        char key[64];
        unsigned long long v;
        while (fscanf(io, "%63s %llu", key, &v) == 2) {
            if (!strcmp(key, "read_bytes:"))
                rd = v;
            else if (!strcmp(key, "write_bytes:"))
                wr = v;
        }
        fclose(io);
    }
    double ws = 0, hs = 0, ss = 0;
    uint64_t direct = 0;
    for (size_t q = 0; q < J->nouts; q++) {
        ws += J->outs[q].w.write_seconds;
        direct += J->outs[q].w.direct_bytes;
        hs += J->outs[q].w.hash_seconds + J->outs[q].w.in_hash_seconds;
        ss += J->outs[q].w.sync_seconds;
    }
    uint64_t in_bytes = J->part.transform_bytes * 2 + J->part.copy_bytes;
    char mem[700];
    lx_budget_describe(&J->budget, mem, sizeof mem);
    lx_say(&J->o->stream.report,
            "stats: wall %.2f s; inputs %.3f GB, output %.3f GB (%.2f GB/s in+out); "
            "storage read %.3f GB, written %.3f GB; SVD %.2f s on %s, %.1f GFLOP (%.1f GFLOP/s); "
            "output rows %.3f s, write %.2f s (%.3f GB direct), hash %.2f s, sync %.2f s; "
            "peak RSS %ld MiB; %s; %s",
            wall, (double)in_bytes / 1e9, (double)J->done_bytes / 1e9,
            wall > 0 ? (double)(in_bytes + J->done_bytes) / 1e9 / wall : 0.0, (double)rd / 1e9,
            (double)wr / 1e9, J->svd.seconds, J->two_lanes ? "two lanes" : "one lane",
            J->svd.flops / 1e9,
            J->svd.seconds > 0 ? J->svd.flops / 1e9 / J->svd.seconds : 0.0, J->out_seconds,
            ws, (double)direct / 1e9, hs, ss, ru.ru_maxrss / 1024, mem, lx_linalg_describe());
}

/* Item i in output u: its shard open, and whether the earlier run's bytes
 * are kept (u->need = 0) or it is written now (u->need = 1). */
static lx_status item_begin(job *J, output *u, size_t i)
{
    const lx_plan_item *it = &J->in.plan.items[i];
    u->need = 0;
    if (!u->active)
        return LX_OK;
    lx_status st = lx_resume_item_begin(&u->rs, &J->in, &u->w, i,
                                        &u->w.shards[u->w.shard_of[i]], &u->need);
    if (st == LX_OK && !u->need)
        J->done_bytes += it->aligned->nbytes;
    return st;
}

/* Item i's inputs hashed once before the passes read them, for every
 * output that computes it (lx_writer_hash_inputs); for the items the lanes
 * factor, by the lane that claims the item (lane_hash). */
static void hash_inputs(job *J, size_t i)
{
    if (J->lanes && lx_lanes_find(J->lanes, &J->in.plan.items[i], 0) != SIZE_MAX)
        return;
    lx_apply_writer *first = NULL;
    for (size_t q = 0; q < J->nouts; q++) {
        lx_apply_writer *w = &J->outs[q].w;
        if (!J->outs[q].need)
            continue;
        if (!first) {
            lx_writer_hash_inputs(w, i);
            first = w;
        } else {
            w->in_xxh3[2 * i] = first->in_xxh3[2 * i];
            w->in_xxh3[2 * i + 1] = first->in_xxh3[2 * i + 1];
        }
    }
}

/* The lanes' before(): item it's inputs hashed on the lane's thread, for
 * every active output (which of them need it is decided later, in turn). */
static void lane_hash(void *ctx, const lx_plan_item *it)
{
    job *J = ctx;
    size_t i = (size_t)(it - J->in.plan.items);
    uint64_t h[2];
    lx_plan_item_hash(it, h, 1);
    for (size_t q = 0; q < J->nouts; q++) {
        J->outs[q].w.in_xxh3[2 * i] = h[0];
        J->outs[q].w.in_xxh3[2 * i + 1] = h[1];
    }
}

/* The matrices the lanes factor ahead (lanes.h: whether they run): every
 * matrix of the part's transformed items that some output will compute
 * (has no record to keep), in order. */
static lx_status lanes_start(job *J)
{
    lx_lane_item *items = malloc((J->part.hi - J->part.lo + 1) * sizeof *items);
    if (!items)
        return LX_OK; /* without lanes, as with -j 1 */
    size_t n = 0;
    for (size_t i = J->part.lo; i < J->part.hi; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        int computed = 0;
        for (size_t q = 0; q < J->nouts; q++)
            computed |= J->outs[q].active && !(J->outs[q].rs.resuming && J->outs[q].rs.rec[i]);
        if (it->action == LX_ACT_LOWRANK && computed)
            items[n++] = (lx_lane_item){it, lx_engine_rank(it, J->factor_rank)};
    }
    J->lanes = lx_lanes_open(&J->o->stream, &J->budget, J->need_max, items, n, lane_hash, J);
    J->two_lanes = J->lanes != NULL;
    free(items);
    return LX_OK;
}

static lx_status run_items(job *J)
{
    lx_status st = LX_OK;
    for (size_t i = J->part.lo; i < J->part.hi && st == LX_OK; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        int any = 0;
        for (size_t q = 0; q < J->nouts && st == LX_OK; q++) {
            st = item_begin(J, &J->outs[q], i);
            any |= J->outs[q].need;
        }
        if (st == LX_OK && !any)
            lx_read_ahead_done(&J->ra, it);
        if (st == LX_OK && any && it->action != LX_ACT_COPY)
            hash_inputs(J, i);
        if (st == LX_OK && any)
            st = process_item(J, i);
        if (J->users) {
            unsigned n = 0;
            for (size_t q = 0; q < J->nouts; q++)
                n += J->outs[q].need != 0;
            atomic_store(&J->users[i], n);
        }
        for (size_t q = 0; q < J->nouts && st == LX_OK; q++) {
            output *u = &J->outs[q];
            if (u->need) {
                st = lx_writer_end_item(&u->w, i, &u->w.shards[u->w.shard_of[i]],
                                        u->w.slot[i]);
                u->computed++;
            }
        }
        lx_progress_update(&J->progress, i - J->part.lo + 1, J->done_bytes, it->aligned->name);
    }
    /* every output's writer drained and its last tensor recorded, whatever
     * happened: the first failure is returned */
    for (size_t q = 0; q < J->nouts; q++) {
        lx_status ust = J->outs[q].active ? lx_writer_end_items(&J->outs[q].w, st) : st;
        if (st == LX_OK)
            st = ust;
    }
    return st;
}

/* Output u's state: writer layouts, identity, the output directory
 * prepared or resumed, its report opened. */
static lx_status output_prepare(job *J, output *u)
{
    const lx_apply_opts *o = &u->o;
    lx_inputs *in = &J->in;
    lx_status st;
    if ((st = lx_resume_init(&u->rs, in->aligned->ntensors)) != LX_OK ||
        (st = lx_writer_init(&u->w, o, in, J->part.nparts)) != LX_OK ||
        (st = lx_apply_identity_build(&u->id, o, in->base, in->aligned, &u->w)) != LX_OK ||
        (st = lx_resume_prepare(&u->rs, o, in, &J->part, &u->w, &u->id, &u->locks)) != LX_OK)
        return st;
    u->active = !u->rs.complete_already;
    if (!u->active) {
        if (!o->stream.quiet)
            lx_say(&o->stream.report, "apply: %s is complete and intact (%zu tensors checked): "
                   "nothing to do", o->output_path, in->plan.n);
        return LX_OK;
    }
    if (o->report_path) {
        if ((st = lx_report_open("--report", o->report_path, in, o->output_path, &u->report)) !=
            LX_OK)
            return st;
        fputs("tensor\tmatrix\trows\tcols\tdtype\taction\trank\tpasses\tconverged\terr_est\t"
              "frobenius\tenergy\tsingular_values\tseconds\tmethod\tgap\n",
              u->report);
    }
    const lx_part *pt = &J->part;
    char part[64] = "";
    if (pt->nparts > 1)
        snprintf(part, sizeof part, "part %u/%u: ", pt->part, pt->nparts);
    if (u->rs.resuming && !o->stream.quiet && pt->nparts == 1)
        lx_say(&o->stream.report, "apply: resuming the run in %s (%zu tensors recorded)",
               o->output_path, u->rs.recorded);
    else if (u->rs.own_recorded && !o->stream.quiet)
        lx_say(&o->stream.report, "apply: %sresuming in %s (%zu of its %zu tensors recorded)",
               part, o->output_path, u->rs.own_recorded, pt->hi - pt->lo);
    return LX_OK;
}

/* Output u after the items: its report flushed, the output completed (or
 * the part's work recorded). */
static lx_status output_finish(job *J, output *u)
{
    const lx_apply_opts *o = &u->o;
    const lx_part *pt = &J->part;
    lx_inputs *in = &J->in;
    lx_status st = LX_OK;
    u->fin.o = o;
    if (u->report && fflush(u->report) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot write report", o->report_path);
    if (st == LX_OK && pt->nparts > 1)
        st = lx_finish_part(&u->fin, in, pt, &u->w, &u->id, &u->rs, &u->locks);
    else if (st == LX_OK)
        st = lx_finish_run(&u->fin, in, pt, &u->w, &u->id, &u->rs, &u->locks);
    return st;
}

/* Output u's last lines. */
static void output_say(job *J, output *u)
{
    const lx_apply_opts *o = &u->o;
    const lx_part *pt = &J->part;
    char part[64] = "";
    if (pt->nparts > 1)
        snprintf(part, sizeof part, "part %u/%u: ", pt->part, pt->nparts);
    if (!o->stream.quiet && (pt->nparts == 1 ? u->rs.resuming : u->rs.own_recorded > 0))
        lx_say(&o->stream.report, "apply: %s%zu tensors kept from the earlier run, %zu computed "
               "(%zu of them again)", part, u->rs.kept, u->computed, u->rs.redone);
    if (!o->stream.quiet)
        lx_say(&o->stream.report, "apply: %s%zu tensors transformed, %zu copied; SVD %.2f s; "
               "output %s", part, pt->ntransform, pt->hi - pt->lo - pt->ntransform,
               J->svd.seconds, o->output_path);
    if (!o->stream.quiet && u->fin.msg[0])
        lx_say(&o->stream.report, "%s", u->fin.msg);
    lx_engine_warn_unconverged(&o->stream, "apply", &u->conv);
}

static lx_status run(job *J)
{
    const lx_apply_opts *o = J->o;
    lx_inputs *in = &J->in;
    lx_status st = lx_engine_filter(in, &o->stream);
    if (st == LX_OK)
        st = lx_engine_open(in, &o->stream, o->rank, o->copy_unmatched);
    if (st == LX_OK)
        st = check_anchor(J);
    if (st == LX_OK)
        st = check_memory(J);
    /* before the output directory is touched: a report onto an input or
     * into the output is a usage error (checked again when it is opened) */
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++) {
        const lx_apply_opts *uo = &J->outs[q].o;
        if (uo->report_path && strcmp(uo->report_path, "-"))
            st = lx_report_check("--report", uo->report_path, in, uo->output_path);
    }
    if (st == LX_OK)
        st = lx_linalg_init(o->stream.threads);
    /* this part's items (all of them without --part) */
    if (st == LX_OK)
        st = lx_part_init(&J->part, &in->plan, o->part ? o->part : 1, o->nparts ? o->nparts : 1);
    if (st != LX_OK)
        return st;
    const lx_part *pt = &J->part;
    /* fbuf holds full-rank items' dW rows only (output_panel): a run of
     * low-rank items alone has none (28 MiB at the 70B's width of 28672,
     * zeroed by lx_falloc, was resident beside every SVD); padded, as it
     * was when it was a GEMM operand (linalg.h) */
    J->fbuf = J->n_full ? lx_falloc((size_t)LX_RSVD_PANEL_ROWS * J->n_full) : NULL;
    J->ahead = malloc((in->plan.n ? in->plan.n : 1) * sizeof *J->ahead);
    if ((J->n_full && !J->fbuf) || !J->ahead)
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    size_t active = 0;
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++) {
        st = output_prepare(J, &J->outs[q]);
        active += J->outs[q].active;
    }
    if (st != LX_OK || active == 0)
        return st;
    lx_progress_begin(&J->progress, "apply", pt->hi - pt->lo,
                      (pt->transform_bytes + pt->copy_bytes) * active, o->stream.quiet,
                      &o->stream.report);
    /* with evict, a sweep's last writer to finish an item drops its pages:
     * each output's record hashes the inputs again */
    if (J->nouts > 1 && J->budget.evict &&
        !(J->users = calloc(J->in.plan.n + 1, sizeof *J->users)))
        return lx_fail(LX_EFAIL, "out of memory");
    lx_read_ahead_start(&J->ra, &J->budget); /* stopped below, whatever happens */
    for (size_t q = 0; q < J->nouts; q++) {
        J->outs[q].w.evict = J->budget.evict;
        J->outs[q].w.behind_window = J->budget.behind / active; /* the writers that run */
        J->outs[q].w.users = J->users;
    }
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++)
        if (J->outs[q].active)
            st = lx_writer_start(&J->outs[q].w, out_buffer_bytes(J));
    if (st == LX_OK)
        st = lanes_start(J);
    if (st == LX_OK)
        st = run_items(J);
    lx_lanes_stop(J->lanes);
    J->lanes = NULL;
    for (size_t q = 0; q < J->nouts; q++)
        lx_writer_stop(&J->outs[q].w);
    lx_read_ahead_stop(&J->ra);
    /* every record names the bytes its tensor was computed from; an input
     * changed since it was opened may have fed a tensor that was kept or
     * copied before the change: not completed */
    if (st == LX_OK && ((st = lx_checkpoint_unchanged(in->base)) != LX_OK ||
                        (st = lx_checkpoint_unchanged(in->aligned)) != LX_OK))
        st = lx_fail_append(st, "; the output is not completed: run the same command again once "
                            "the inputs no longer change (the tensors whose inputs changed are "
                            "computed again)");
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++)
        if (J->outs[q].active)
            st = output_finish(J, &J->outs[q]);
    if (st == LX_OK && o->stats)
        print_stats(J);
    if (st == LX_OK)
        lx_progress_end(&J->progress);
    for (size_t q = 0; q < J->nouts && st == LX_OK; q++)
        if (J->outs[q].active)
            output_say(J, &J->outs[q]);
    return st;
}

lx_status lx_apply_run(const lx_apply_opts *o)
{
    unsigned part = o->part ? o->part : 1, nparts = o->nparts ? o->nparts : 1;
    lx_status st = LX_OK;
    if (part < 1 || part > nparts || nparts > LX_MAX_PARTS)
        st = lx_fail(LX_EUSAGE, "--part %u/%u: expected I/N with 1 <= I <= N <= %d", part,
                     nparts, LX_MAX_PARTS);
    else if (o->restart && nparts > 1)
        st = lx_fail(LX_EUSAGE, "--restart with --part %u/%u would discard the other parts' "
                     "work: run it without --part", part, nparts);
    lx_sweep sw;
    memset(&sw, 0, sizeof sw);
    if (st == LX_OK)
        st = lx_sweep_build(&sw, o);
    job J;
    memset(&J, 0, sizeof J);
    if (st == LX_OK && !(J.outs = calloc(sw.n, sizeof *J.outs)))
        st = lx_fail(LX_EFAIL, "out of memory");
    if (st != LX_OK) {
        free(J.outs);
        lx_sweep_free(&sw);
        return st;
    }
    J.o = &sw.outs[0];
    J.nouts = sw.n;
    J.factor_rank = sw.factor_rank;
    for (size_t q = 0; q < J.nouts; q++) {
        J.outs[q].o = sw.outs[q];
        lx_locks_init(&J.outs[q].locks);
        J.outs[q].w.journal.fd = -1;
    }
    st = run(&J);
    /* A failure once the output exists (a full disk, EIO, a file-size
     * limit): say that the state on disk is resumable. */
    int prepared = 0, final = 0;
    for (size_t q = 0; q < J.nouts; q++) {
        prepared |= J.outs[q].rs.prepared;
        final |= J.outs[q].fin.final_message;
    }
    if (st == LX_EFAIL && prepared && !final)
        lx_fail_append(st, "; the output is incomplete: fix the cause and run the same command "
                       "again to resume");
    job_free(&J);
    free(J.outs);
    lx_sweep_free(&sw);
    return st;
}

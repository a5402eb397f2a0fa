/* apply.c - the LoX job (see apply.h): the transform and the run loop.
 *
 * Data flow per tensor: the two mmapped inputs -> row panels of
 * dW = aligned - base in f32 (plan.c: converted and subtracted on the fly,
 * checked finite) -> randomized SVD (rsvd.c) -> output pass: rows of
 * aligned + alpha * U_k S_k V_k^T, rounded to the stored dtype and handed
 * to the writer thread (apply_writer.c) at their final offsets.  The output
 * keeps the aligned model's shard names, tensor order and offsets, so each
 * output header is known before the first byte of data is written.
 *
 * The run loop holds the parts, each with its own state: the inputs and
 * the plan with this process's part of it (plan.c), the writer and its
 * shards (apply_writer.c), the identity (apply_identity.c), the output
 * directory's locks (outdir.c), the preparation and resumption
 * (apply_resume.c) and the completion (apply_finish.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loxstream/apply.h"
#include "loxstream/apply_finish.h"
#include "loxstream/apply_identity.h"
#include "loxstream/apply_resume.h"
#include "loxstream/apply_writer.h"
#include "loxstream/dtype.h"
#include "loxstream/engine.h"
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

typedef struct job {
    const lx_apply_opts *o;
    lx_inputs in;                  /* checkpoints, filters, plan */
    lx_part part;                  /* this process's items [lo, hi) */
    lx_apply_writer w;
    lx_apply_identity id;
    lx_locks locks;
    lx_apply_resume rs;
    lx_apply_finish fin;
    /* the transform */
    float *fbuf;                   /* PANEL x n_max f32 */
    size_t n_max;
    FILE *report;
    lx_progress progress;
    uint64_t done_bytes;
    lx_read_ahead ra;
    const lx_plan_item **ahead;    /* prefetch_from's list: plan.n entries */
    size_t computed;
    lx_factor_stats svd;           /* the factorisations of this run */
    double out_seconds;            /* output rows: rank-k GEMM, add, rounding */
} job;

/* Output rows [r0, r0+h) of a matrix (h <= LX_RSVD_PANEL_ROWS) into obuf
 * (a buffer of the writer's pool):
 * round(aligned + alpha * U_k S_k V_k^T rows), or with f == NULL (full rank)
 * round(aligned + alpha * dW) from the dW rows already in fbuf.  Tiles of
 * OUT_TILE rows are shared out among the threads; each tile's f32 rows are
 * made in its own part of fbuf and rounded while still in cache, rather
 * than in a pass over the whole panel after the GEMM.  The tiles depend on
 * the shape only, so the bits do not depend on the thread count.  Each
 * tile's rounded rows are scanned for Inf/NaN (an overflow of the dtype:
 * the inputs are finite); returns the index in obuf of the first one, or
 * h * n. */
#define OUT_TILE 8
static size_t output_rows(job *J, lx_dtype dt, const lx_factors *f, float alpha,
                        const unsigned char *al, size_t r0, size_t h, size_t n, size_t esize,
                        unsigned char *obuf)
{
    long tiles = (long)((h + OUT_TILE - 1) / OUT_TILE);
    size_t first = h * n;
#pragma omp parallel for schedule(static) num_threads(J->o->stream.threads) if (J->o->stream.threads > 1 && h * n >= (1u << 16)) reduction(min:first)
    for (long ti = 0; ti < tiles; ti++) {
        size_t i0 = (size_t)ti * OUT_TILE, th = h - i0 < OUT_TILE ? h - i0 : OUT_TILE;
        if (f) {
            lx_factors_add_rows(f, f->k, alpha, r0 + i0, th, dt, al + (r0 + i0) * n * esize,
                                obuf + i0 * n * esize);
        } else {
            float *d = J->fbuf + i0 * n;
            for (size_t i = 0; i < th * n; i++)
                d[i] *= alpha;
            for (size_t i = 0; i < th; i++)
                lx_add_f32(dt, al + (r0 + i0 + i) * n * esize, d + i * n,
                           obuf + (i0 + i) * n * esize, n);
        }
        size_t bad = lx_find_nonfinite(dt, obuf + i0 * n * esize, th * n);
        if (bad < th * n && i0 * n + bad < first)
            first = i0 * n + bad;
    }
    return first;
}

/* Output element (r, c) of matrix b rounded to Inf or NaN (output_rows). */
static lx_status overflow_error(const lx_plan_item *it, uint64_t b, const unsigned char *al,
                                size_t r, size_t c)
{
    const lx_tensor *t = it->aligned;
    float a;
    lx_to_f32(t->dtype, al + (r * it->n + c) * (lx_dtype_bits(t->dtype) / 8), &a, 1);
    char where[64] = "";
    if (it->batch > 1)
        snprintf(where, sizeof where, "matrix %" PRIu64 ", ", b);
    return lx_fail(LX_EINPUT, "tensor '%s': %srow %zu, column %zu: aligned %g plus the update "
                   "overflows %s (largest finite value %.9g); lower --alpha",
                   t->name, where, r, c, a, lx_dtype_name(t->dtype), lx_dtype_max(t->dtype));
}

static void report_line(job *J, const lx_plan_item *it, uint64_t b, const lx_factors *f,
                        double seconds)
{
    if (!J->report)
        return;
    const lx_tensor *t = it->aligned;
    const char *act = it->action == LX_ACT_LOWRANK ? "lowrank"
                      : it->action == LX_ACT_FULL  ? "full"
                                                   : "copy";
    /* the whole name, escaped as everywhere (one TSV field, one line); out
     * of memory: as stored */
    char *q = lx_st_escape_dup(t->name);
    fprintf(J->report, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s", q ? q : t->name, b,
            it->m, it->n, lx_dtype_name(t->dtype), it->action == LX_ACT_COPY ? it->why : act);
    free(q);
    if (f) {
        double top = 0;
        for (int j = 0; j < f->k; j++)
            top += (double)f->S[j] * f->S[j];
        fprintf(J->report, "\t%d\t%d\t%s\t%.3g\t%.6g\t%.6f\t", f->k, f->passes,
                f->converged ? "yes" : "no", f->err_est, sqrt(f->frob2),
                f->frob2 > 0 ? top / f->frob2 : 0.0);
        for (int j = 0; j < f->k; j++)
            fprintf(J->report, "%s%.6g", j ? "," : "", f->S[j]);
        fprintf(J->report, "\t%.3f\t%s\t%.3g\n", seconds, f->exact ? "exact" : "randomized",
                f->gap);
    } else {
        fprintf(J->report, "\t\t\t\t\t\t\t\t%.3f\t\t\n", seconds);
    }
}

static lx_status write_copy(job *J, lx_out_shard *os, size_t idx, const lx_tensor *t)
{
    for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
        uint64_t len = t->nbytes - off < COPY_CHUNK ? t->nbytes - off : COPY_CHUNK;
        lx_status st = lx_writer_put(&J->w, os, idx, off, t->data + off, (size_t)len, -1);
        if (st != LX_OK)
            return st;
        J->done_bytes += len;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    return LX_OK;
}

static lx_status transform_matrix(job *J, const lx_plan_item *it, lx_out_shard *os, size_t idx,
                                  uint64_t b)
{
    const lx_tensor *t = it->aligned;
    size_t esize = lx_dtype_bits(t->dtype) / 8;
    size_t m = it->m, n = it->n;
    uint64_t mat_bytes = (uint64_t)m * n * esize;
    const unsigned char *al = t->data + b * mat_bytes;
    double t0 = lx_now();
    lx_factors f;
    memset(&f, 0, sizeof f);
    lx_status st = LX_OK;
    int have_factors = 0;
    if (it->action == LX_ACT_LOWRANK) {
        int rank = lx_engine_rank(it, J->o->rank);
        if (rank < J->o->rank && b == 0) /* once per tensor, not per matrix */
            lx_warn("tensor '%s': rank %d exceeds min(%zu, %zu): using rank %d%s", t->name,
                    J->o->rank, m, n, rank, it->batch > 1 ? " for each of its matrices" : "");
        st = lx_engine_factor(&J->o->stream, it, b, rank, &f, &J->svd);
        if (st != LX_OK)
            return st;
        have_factors = 1;
        lx_test_pause("factored", t->name);
    }
    float alpha = (float)J->o->alpha;
    for (size_t r0 = 0; r0 < m && st == LX_OK; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        if (!have_factors) {
            st = lx_delta_rows(it, b, r0, h, J->fbuf, n);
            if (st != LX_OK)
                break;
        }
        int slot;
        unsigned char *obuf = lx_writer_buffer(&J->w, &slot);
        if (!obuf) {
            st = lx_writer_drain(&J->w);
            break;
        }
        double o0 = lx_now();
        size_t bad = output_rows(J, t->dtype, have_factors ? &f : NULL, alpha, al, r0, h, n,
                                 esize, obuf);
        J->out_seconds += lx_now() - o0;
        if (bad < h * n) {
            /* before the put: the tensor is never finished, so never journaled */
            st = overflow_error(it, b, al, r0 + bad / n, bad % n);
            break;
        }
        st = lx_writer_put(&J->w, os, idx, b * mat_bytes + r0 * n * esize, obuf, h * n * esize, slot);
        J->done_bytes += h * n * esize;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    if (st == LX_OK)
        report_line(J, it, b, have_factors ? &f : NULL, lx_now() - t0);
    lx_factors_free(&f);
    return st;
}

/* Read item i's inputs ahead and those of the next items of the part
 * (items an earlier run recorded are likely kept: skipped). */
static void prefetch_from(job *J, size_t i)
{
    size_t n = 0;
    for (size_t j = i; j < J->part.hi; j++)
        J->ahead[n++] = j > i && J->rs.resuming && J->rs.rec[j] ? NULL : &J->in.plan.items[j];
    lx_read_ahead_set(&J->ra, J->ahead, n);
}

static lx_status process_item(job *J, size_t i)
{
    const lx_plan_item *it = &J->in.plan.items[i];
    /* Where the output bytes go: the aligned tensor's shard, same slot. */
    lx_out_shard *os = &J->w.shards[it->aligned->shard];
    size_t idx = J->w.slot[it->aligned - J->in.aligned->tensors];
    lx_status st = LX_OK;
    prefetch_from(J, i);
    if (it->action == LX_ACT_COPY) {
        double t0 = lx_now();
        st = write_copy(J, os, idx, it->aligned);
        if (st == LX_OK)
            report_line(J, it, 0, NULL, lx_now() - t0);
    } else {
        for (uint64_t b = 0; b < it->batch && st == LX_OK; b++)
            st = transform_matrix(J, it, os, idx, b);
    }
    return st;
}

/* Bytes of one output panel: LX_RSVD_PANEL_ROWS rows of the widest
 * transformed matrix, 8 bytes per element at most (F64). */
static size_t out_buffer_bytes(const job *J)
{
    return (size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1) * 8;
}

static lx_status check_memory(job *J)
{
    const lx_apply_opts *o = J->o;
    uint64_t worst = 0;
    const char *worst_name = NULL;
    J->n_max = 0;
    for (size_t i = 0; i < J->in.plan.n; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        if (it->action == LX_ACT_COPY)
            continue;
        if (it->n > J->n_max)
            J->n_max = it->n;
        /* fbuf (f32) and the writer's output buffers */
        uint64_t need = (uint64_t)LX_RSVD_PANEL_ROWS * it->n * (sizeof(float) + 8 * OUT_BUFFERS);
        if (it->action == LX_ACT_LOWRANK)
            need += lx_engine_svd_bytes(&o->stream, it, o->rank);
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    return lx_engine_check_memory(&o->stream, worst, worst_name);
}

static void job_free(job *J)
{
    lx_writer_free(&J->w);
    lx_resume_free(&J->rs);
    lx_apply_identity_free(&J->id);
    lx_locks_close(&J->locks);
    free(J->fbuf);
    free(J->ahead);
    if (J->report && J->report != stdout)
        fclose(J->report);
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
    uint64_t in_bytes = J->part.transform_bytes * 2 + J->part.copy_bytes;
    lx_say(&J->o->stream.report,
            "stats: wall %.2f s; inputs %.3f GB, output %.3f GB (%.2f GB/s in+out); "
            "storage read %.3f GB, written %.3f GB; SVD %.2f s, %.1f GFLOP (%.1f GFLOP/s); "
            "output rows %.2f s, write %.2f s, hash %.2f s, sync %.2f s; "
            "peak RSS %ld MiB; %s",
            wall, (double)in_bytes / 1e9, (double)J->done_bytes / 1e9,
            wall > 0 ? (double)(in_bytes + J->done_bytes) / 1e9 / wall : 0.0, (double)rd / 1e9,
            (double)wr / 1e9, J->svd.seconds, J->svd.flops / 1e9,
            J->svd.seconds > 0 ? J->svd.flops / 1e9 / J->svd.seconds : 0.0, J->out_seconds,
            J->w.write_seconds, J->w.hash_seconds + J->w.in_hash_seconds, J->w.sync_seconds, ru.ru_maxrss / 1024,
            lx_linalg_describe());
}

static lx_status run_items(job *J)
{
    lx_status st = LX_OK;
    for (size_t i = J->part.lo; i < J->part.hi && st == LX_OK; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        lx_out_shard *os = &J->w.shards[it->aligned->shard];
        size_t idx = J->w.slot[i];
        int keep = 0;
        /* opening a shard and checking a kept tensor touch the writer's
         * state: only with the writer idle */
        if (!os->open || (J->rs.resuming && J->rs.rec[i]))
            st = lx_writer_drain(&J->w);
        if (st == LX_OK && !os->open && (st = lx_writer_flush(&J->w)) == LX_OK)
            st = lx_writer_shard_open(&J->w, os);
        if (st == LX_OK && J->rs.resuming)
            st = lx_resume_check_kept(&J->rs, &J->in, &J->w, i, os, &keep);
        if (st == LX_OK && keep) {
            J->rs.kept++;
            J->done_bytes += it->aligned->nbytes;
            lx_plan_item_advise(it, MADV_DONTNEED);
        } else if (st == LX_OK) {
            if (it->action != LX_ACT_COPY)
                lx_writer_hash_inputs(&J->w, i);
            st = lx_writer_begin(&J->w);
            if (st == LX_OK)
                st = process_item(J, i);
            if (st == LX_OK)
                st = lx_writer_end_item(&J->w, i, os, idx);
            J->computed++;
        }
        lx_progress_update(&J->progress, i - J->part.lo + 1, J->done_bytes, it->aligned->name);
    }
    /* the writer's failure, if it had one, comes before the computation's
     * (it happened first); then the writer is idle */
    lx_status wst = lx_writer_drain(&J->w);
    if (wst != LX_OK)
        st = wst;
    if (st == LX_OK)
        return lx_writer_flush(&J->w);
    /* keep what was done before the failure: a later run resumes from it */
    if (J->w.pending && J->w.pending_shard->open) {
        char *msg = lx_err_save();
        lx_writer_flush(&J->w);
        lx_err_restore(st, msg);
    }
    return st;
}

static lx_status run(job *J)
{
    const lx_apply_opts *o = J->o;
    lx_inputs *in = &J->in;
    lx_status st = lx_engine_filter(in, &o->stream);
    if (st == LX_OK)
        st = lx_engine_open(in, &o->stream, o->rank, o->copy_unmatched);
    if (st == LX_OK)
        st = check_memory(J);
    /* before the output directory is touched: a report onto an input or
     * into the output is a usage error (checked again when it is opened) */
    if (st == LX_OK && o->report_path && strcmp(o->report_path, "-"))
        st = lx_report_check("--report", o->report_path, in, o->output_path);
    if (st == LX_OK)
        st = lx_linalg_init(o->stream.threads);
    /* this part's items (all of them without --part) */
    if (st == LX_OK)
        st = lx_part_init(&J->part, &in->plan, o->part ? o->part : 1, o->nparts ? o->nparts : 1);
    if (st != LX_OK)
        return st;
    const lx_part *pt = &J->part;
    /* fbuf is a GEMM operand (lx_factors_rows): padded, see linalg.h */
    J->fbuf = lx_falloc((size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1));
    J->ahead = malloc((in->plan.n ? in->plan.n : 1) * sizeof *J->ahead);
    if (!J->fbuf || !J->ahead)
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    if ((st = lx_resume_init(&J->rs, in->aligned->ntensors)) != LX_OK ||
        (st = lx_writer_init(&J->w, o, in, pt->nparts)) != LX_OK ||
        (st = lx_apply_identity_build(&J->id, o, in->base, in->aligned, &J->w)) != LX_OK ||
        (st = lx_resume_prepare(&J->rs, o, in, pt, &J->w, &J->id, &J->locks)) != LX_OK)
        return st;
    if (J->rs.complete_already) {
        if (!o->stream.quiet)
            lx_say(&o->stream.report, "apply: %s is complete and intact (%zu tensors checked): nothing "
                   "to do", o->output_path, in->plan.n);
        return LX_OK;
    }
    if (o->report_path) {
        if ((st = lx_report_open("--report", o->report_path, in, o->output_path, &J->report)) !=
            LX_OK)
            return st;
        fputs("tensor\tmatrix\trows\tcols\tdtype\taction\trank\tpasses\tconverged\terr_est\t"
              "frobenius\tenergy\tsingular_values\tseconds\tmethod\tgap\n",
              J->report);
    }
    char part[64] = "";
    if (pt->nparts > 1)
        snprintf(part, sizeof part, "part %u/%u: ", pt->part, pt->nparts);
    if (J->rs.resuming && !o->stream.quiet && pt->nparts == 1)
        lx_say(&o->stream.report, "apply: resuming the run in %s (%zu tensors recorded)", o->output_path,
               J->rs.recorded);
    else if (J->rs.own_recorded && !o->stream.quiet)
        lx_say(&o->stream.report, "apply: %sresuming in %s (%zu of its %zu tensors recorded)", part,
               o->output_path, J->rs.own_recorded, pt->hi - pt->lo);
    lx_progress_begin(&J->progress, "apply", pt->hi - pt->lo,
                      pt->transform_bytes + pt->copy_bytes, o->stream.quiet, &o->stream.report);
    lx_read_ahead_start(&J->ra);
    st = lx_writer_start(&J->w, out_buffer_bytes(J));
    if (st == LX_OK)
        st = run_items(J);
    lx_writer_stop(&J->w);
    lx_read_ahead_stop(&J->ra);
    if (st == LX_OK && J->report && fflush(J->report) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot write report", o->report_path);
    /* every record names the bytes its tensor was computed from; an input
     * changed since it was opened may have fed a tensor that was kept or
     * copied before the change: not completed */
    if (st == LX_OK && ((st = lx_checkpoint_unchanged(in->base)) != LX_OK ||
                        (st = lx_checkpoint_unchanged(in->aligned)) != LX_OK))
        st = lx_fail_append(st, "; the output is not completed: run the same command again once "
                            "the inputs no longer change (the tensors whose inputs changed are "
                            "computed again)");
    if (st == LX_OK && pt->nparts > 1)
        st = lx_finish_part(&J->fin, in, pt, &J->w, &J->id, &J->rs, &J->locks);
    else if (st == LX_OK)
        st = lx_finish_run(&J->fin, in, pt, &J->w, &J->id, &J->rs, &J->locks);
    if (st == LX_OK && o->stats)
        print_stats(J);
    if (st == LX_OK) {
        lx_progress_end(&J->progress);
        if (!o->stream.quiet && (pt->nparts == 1 ? J->rs.resuming : J->rs.own_recorded > 0))
            lx_say(&o->stream.report, "apply: %s%zu tensors kept from the earlier run, %zu computed (%zu "
                   "of them again)", part, J->rs.kept, J->computed, J->rs.redone);
        if (!o->stream.quiet)
            lx_say(&o->stream.report, "apply: %s%zu tensors transformed, %zu copied; SVD %.2f s; output "
                   "%s", part, pt->ntransform, pt->hi - pt->lo - pt->ntransform, J->svd.seconds,
                   o->output_path);
        if (!o->stream.quiet && J->fin.msg[0])
            lx_say(&o->stream.report, "%s", J->fin.msg);
        lx_engine_warn_unconverged(&o->stream, "apply", &J->svd);
    }
    return st;
}

lx_status lx_apply_run(const lx_apply_opts *o)
{
    job J;
    memset(&J, 0, sizeof J);
    J.o = o;
    lx_locks_init(&J.locks);
    J.w.journal.fd = -1;
    unsigned part = o->part ? o->part : 1, nparts = o->nparts ? o->nparts : 1;
    lx_status st = LX_OK;
    if (part < 1 || part > nparts || nparts > LX_MAX_PARTS)
        st = lx_fail(LX_EUSAGE, "--part %u/%u: expected I/N with 1 <= I <= N <= %d", part,
                     nparts, LX_MAX_PARTS);
    else if (o->restart && nparts > 1)
        st = lx_fail(LX_EUSAGE, "--restart with --part %u/%u would discard the other parts' "
                     "work: run it without --part", part, nparts);
    if (st != LX_OK)
        return st;
    st = run(&J);
    /* A failure once the output exists (a full disk, EIO, a file-size
     * limit): say that the state on disk is resumable. */
    if (st == LX_EFAIL && J.rs.prepared && !J.fin.final_message)
        lx_fail_append(st, "; the output is incomplete: fix the cause and run the same command "
                       "again to resume");
    job_free(&J);
    return st;
}

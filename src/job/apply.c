/* apply.c - the LoX job (see apply.h).
 *
 * Data flow per tensor: the two mmapped inputs -> row panels of
 * dW = aligned - base in f32 (converted and subtracted on the fly, checked
 * finite) -> randomized SVD (rsvd.c) -> output pass: rows of
 * aligned + alpha * U_k S_k V_k^T, rounded to the stored dtype and written
 * at their final offsets.  The output keeps the aligned model's shard
 * names, tensor order and offsets, so each output header is known before
 * the first byte of data is written.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "loxstream/apply.h"
#include "loxstream/dtype.h"
#include "loxstream/linalg.h"
#include "loxstream/progress.h"
#include "loxstream/util.h"

#define COPY_CHUNK (16u << 20)      /* bytes per write when copying a tensor */
#define FIXED_OVERHEAD (48u << 20)  /* tables, stdio, libraries: counted against --max-memory */
#define INDEX_NAME "model.safetensors.index.json"

/* ---- filters and plan -------------------------------------------------- */

lx_status lx_filter_init(lx_filter *f, const char *include, const char *exclude)
{
    memset(f, 0, sizeof *f);
    char msg[256];
    int rc;
    if (include) {
        if ((rc = regcomp(&f->include, include, REG_EXTENDED | REG_NOSUB)) != 0) {
            regerror(rc, &f->include, msg, sizeof msg);
            return lx_fail(LX_EUSAGE, "--include '%s': invalid regular expression: %s", include,
                           msg);
        }
        f->has_include = 1;
    }
    if (exclude) {
        if ((rc = regcomp(&f->exclude, exclude, REG_EXTENDED | REG_NOSUB)) != 0) {
            regerror(rc, &f->exclude, msg, sizeof msg);
            lx_filter_free(f);
            return lx_fail(LX_EUSAGE, "--exclude '%s': invalid regular expression: %s", exclude,
                           msg);
        }
        f->has_exclude = 1;
    }
    return LX_OK;
}

void lx_filter_free(lx_filter *f)
{
    if (f->has_include)
        regfree(&f->include);
    if (f->has_exclude)
        regfree(&f->exclude);
    f->has_include = f->has_exclude = 0;
}

static int filter_selects(const lx_filter *f, const char *name)
{
    if (f && f->has_include && regexec(&f->include, name, 0, NULL, 0) != 0)
        return 0;
    if (f && f->has_exclude && regexec(&f->exclude, name, 0, NULL, 0) == 0)
        return 0;
    return 1;
}

static void shape_string(const lx_tensor *t, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int d = 0; d < t->ndim && at < len; d++)
        at += (size_t)snprintf(buf + at, len - at, "%s%" PRIu64, d ? "x" : "", t->shape[d]);
    if (t->ndim == 0)
        snprintf(buf, len, "scalar");
}

static int same_shape(const lx_tensor *a, const lx_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

lx_status lx_plan_build(const lx_checkpoint *base, const lx_checkpoint *aligned,
                        const lx_filter *filter, int rank, int copy_unmatched, lx_plan *out)
{
    memset(out, 0, sizeof *out);
    out->items = calloc(aligned->ntensors ? aligned->ntensors : 1, sizeof *out->items);
    if (!out->items)
        return lx_fail(LX_EFAIL, "out of memory planning %zu tensors", aligned->ntensors);
    out->n = aligned->ntensors;
    lx_status st = LX_OK;
    for (size_t i = 0; i < aligned->ntensors && st == LX_OK; i++) {
        const lx_tensor *t = &aligned->tensors[i];
        lx_plan_item *it = &out->items[i];
        it->aligned = t;
        it->base = lx_checkpoint_find(base, t->name);
        it->action = LX_ACT_COPY;
        char sa[160], sb[160];
        if (!it->base) {
            if (!copy_unmatched) {
                st = lx_fail(LX_EINPUT,
                             "tensor '%s' is in the aligned model (%s) but not in the base model "
                             "(%s); use --copy-unmatched to copy it unchanged",
                             t->name, aligned->path, base->path);
                break;
            }
            lx_warn("tensor '%s' is not in the base model: copied unchanged", t->name);
            it->why = "not in base";
        } else if (t->ndim < 2) {
            it->why = t->ndim == 0 ? "scalar" : "1-D";
        } else if (!filter_selects(filter, t->name)) {
            it->why = "filtered out";
        } else if (!lx_dtype_is_transformable(t->dtype)) {
            if (filter && filter->has_include) {
                st = lx_fail(LX_EUSAGE,
                             "tensor '%s' matches --include but has dtype %s, which cannot be "
                             "transformed (only F16, BF16, F32, F64)",
                             t->name, lx_dtype_name(t->dtype));
                break;
            }
            it->why = "not a float dtype";
        } else if (it->base->dtype != t->dtype || !same_shape(it->base, t)) {
            shape_string(t, sa, sizeof sa);
            shape_string(it->base, sb, sizeof sb);
            if (!copy_unmatched) {
                st = lx_fail(LX_EINPUT,
                             "tensor '%s': aligned is %s [%s] but base is %s [%s]; use "
                             "--copy-unmatched to copy it unchanged",
                             t->name, lx_dtype_name(t->dtype), sa, lx_dtype_name(it->base->dtype),
                             sb);
                break;
            }
            lx_warn("tensor '%s': aligned %s [%s] differs from base %s [%s]: copied unchanged",
                    t->name, lx_dtype_name(t->dtype), sa, lx_dtype_name(it->base->dtype), sb);
            it->why = "differs from base";
        } else if (t->nelem == 0) {
            it->why = "empty";
        } else {
            it->action = rank > 0 ? LX_ACT_LOWRANK : LX_ACT_FULL;
            it->m = t->shape[t->ndim - 2];
            it->n = t->shape[t->ndim - 1];
            it->batch = t->nelem / (it->m * it->n);
        }
        if (it->action == LX_ACT_COPY) {
            out->copy_bytes += t->nbytes;
        } else {
            out->transform_bytes += t->nbytes;
            out->ntransform++;
        }
    }
    /* Tensors only in base would silently vanish from the result. */
    for (size_t i = 0; i < base->ntensors && st == LX_OK; i++) {
        const char *name = base->tensors[i].name;
        if (lx_checkpoint_find(aligned, name))
            continue;
        if (!copy_unmatched)
            st = lx_fail(LX_EINPUT,
                         "tensor '%s' is in the base model (%s) but not in the aligned model "
                         "(%s) (tied weights?); use --copy-unmatched to ignore it",
                         name, base->path, aligned->path);
        else
            lx_warn("tensor '%s' is only in the base model: ignored", name);
    }
    if (st != LX_OK)
        lx_plan_free(out);
    return st;
}

void lx_plan_free(lx_plan *p)
{
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* ---- options ----------------------------------------------------------- */

void lx_apply_opts_default(lx_apply_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    o->alpha = 1.25;
    lx_rsvd_opts_default(&o->svd);
    o->max_memory = (uint64_t)1 << 30;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = n > 0 ? (int)n : 1;
}

/* ---- the job ----------------------------------------------------------- */

typedef struct out_shard {
    lx_st_entry *entries;
    lx_st_layout layout;
    lx_st_out file;
    char *final_path, *partial_path;
    int open;
} out_shard;

typedef struct job {
    const lx_apply_opts *o;
    lx_checkpoint *base, *aligned;
    lx_plan plan;
    lx_filter filter;
    out_shard *shards;
    size_t nshards;
    size_t *slot;                  /* aligned tensor index -> entry index in its shard */
    float *fbuf;                   /* PANEL x n_max f32 */
    unsigned char *obuf;           /* PANEL x n_max output dtype */
    size_t n_max;
    FILE *report;
    lx_progress progress;
    uint64_t done_bytes;
    double svd_seconds, svd_flops;
} job;

/* dW rows of one matrix of a tensor, for the randomized SVD. */
typedef struct delta_src {
    const lx_plan_item *item;
    const unsigned char *al, *ba;  /* start of the matrix in each input */
    size_t esize;
    uint64_t batch_index;
} delta_src;

static size_t first_nonfinite(const float *x, size_t n)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    if (!bad)
        return n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return i;
    return n;
}

/* Convert and subtract rows [r0, r0+h) of one matrix; reject NaN/Inf. */
static lx_status delta_rows(const lx_plan_item *it, const unsigned char *al,
                            const unsigned char *ba, size_t esize, uint64_t batch_index,
                            size_t r0, size_t h, float *dst, size_t ld)
{
    size_t n = it->n;
    long bad_row = -1;
#pragma omp parallel for schedule(static) if (h * n >= (1u << 16))
    for (size_t i = 0; i < h; i++) {
        size_t off = (r0 + i) * n * esize;
        float *row = dst + i * ld;
        lx_sub_to_f32(it->aligned->dtype, al + off, ba + off, row, n);
        if (first_nonfinite(row, n) != n) {
#pragma omp critical
            if (bad_row < 0 || (long)i < bad_row)
                bad_row = (long)i;
        }
    }
    if (bad_row >= 0) {
        size_t r = r0 + (size_t)bad_row;
        float *row = dst + (size_t)bad_row * ld;
        size_t c = first_nonfinite(row, n);
        float a, b;
        lx_to_f32(it->aligned->dtype, al + (r * n + c) * esize, &a, 1);
        lx_to_f32(it->aligned->dtype, ba + (r * n + c) * esize, &b, 1);
        char where[64] = "";
        if (it->batch > 1)
            snprintf(where, sizeof where, "matrix %" PRIu64 ", ", batch_index);
        return lx_fail(LX_EINPUT,
                       "tensor '%s': %srow %zu, column %zu: aligned %g, base %g: the difference "
                       "is not finite (NaN or Inf in an input)",
                       it->aligned->name, where, r, c, a, b);
    }
    return LX_OK;
}

static lx_status delta_src_rows(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    delta_src *d = ctx;
    return delta_rows(d->item, d->al, d->ba, d->esize, d->batch_index, r0, h, dst, ld);
}

static void advise(const void *p, uint64_t len, int advice)
{
    if (!p || !len)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(page - 1);
    uintptr_t e = ((uintptr_t)p + len + page - 1) & ~(page - 1);
    madvise((void *)a, e - a, advice);
}

static void advise_item(const lx_plan_item *it, int advice)
{
    advise(it->aligned->data, it->aligned->nbytes, advice);
    if (it->base && it->action != LX_ACT_COPY)
        advise(it->base->data, it->base->nbytes, advice);
}

/* Parallel out = round(aligned + delta) for h rows. */
static void add_rows(lx_dtype dt, const unsigned char *al, const float *delta, unsigned char *out,
                     size_t h, size_t n, size_t esize)
{
#pragma omp parallel for schedule(static) if (h * n >= (1u << 16))
    for (size_t i = 0; i < h; i++)
        lx_add_f32(dt, al + i * n * esize, delta + i * n, out + i * n * esize, n);
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
    fprintf(J->report, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s", t->name, b, it->m,
            it->n, lx_dtype_name(t->dtype), it->action == LX_ACT_COPY ? it->why : act);
    if (f) {
        double top = 0;
        for (int j = 0; j < f->k; j++)
            top += (double)f->S[j] * f->S[j];
        fprintf(J->report, "\t%d\t%d\t%s\t%.3g\t%.6g\t%.6f\t", f->k, f->passes,
                f->converged ? "yes" : "no", f->change, sqrt(f->frob2),
                f->frob2 > 0 ? top / f->frob2 : 0.0);
        for (int j = 0; j < f->k; j++)
            fprintf(J->report, "%s%.6g", j ? "," : "", f->S[j]);
    } else {
        fputs("\t\t\t\t\t\t\t", J->report);
    }
    fprintf(J->report, "\t%.3f\n", seconds);
}

static lx_status write_copy(job *J, out_shard *os, size_t idx, const lx_tensor *t)
{
    for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
        uint64_t len = t->nbytes - off < COPY_CHUNK ? t->nbytes - off : COPY_CHUNK;
        lx_status st = lx_st_out_write(&os->file, idx, off, t->data + off, (size_t)len);
        if (st != LX_OK)
            return st;
        J->done_bytes += len;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    return LX_OK;
}

static lx_status transform_matrix(job *J, const lx_plan_item *it, out_shard *os, size_t idx,
                                  uint64_t b)
{
    const lx_tensor *t = it->aligned;
    size_t esize = lx_dtype_bits(t->dtype) / 8;
    size_t m = it->m, n = it->n;
    uint64_t mat_bytes = (uint64_t)m * n * esize;
    const unsigned char *al = t->data + b * mat_bytes, *ba = it->base->data + b * mat_bytes;
    double t0 = lx_now();
    lx_factors f;
    memset(&f, 0, sizeof f);
    lx_status st = LX_OK;
    int have_factors = 0;
    if (it->action == LX_ACT_LOWRANK) {
        lx_rsvd_opts so = J->o->svd;
        size_t mn = m < n ? m : n;
        so.rank = J->o->rank;
        if ((size_t)so.rank > mn) {
            lx_warn("tensor '%s': rank %d exceeds min(%zu, %zu): using rank %zu", t->name,
                    so.rank, m, n, mn);
            so.rank = (int)mn;
        }
        so.seed = lx_matrix_seed(J->o->svd.seed, t->name, b);
        delta_src ds = {it, al, ba, esize, b};
        lx_rowsrc src = {m, n, delta_src_rows, &ds};
        double s0 = lx_now();
        st = lx_rsvd_topk(&src, &so, &f);
        J->svd_seconds += lx_now() - s0;
        if (st != LX_OK)
            return st;
        /* two GEMMs of m x n x l per pass (Y = A V, Z += A^T Y) */
        J->svd_flops += 4.0 * (double)f.passes * (double)m * (double)n * (double)f.l;
        have_factors = 1;
    }
    float alpha = (float)J->o->alpha;
    for (size_t r0 = 0; r0 < m && st == LX_OK; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        if (have_factors) {
            lx_factors_rows(&f, f.k, alpha, r0, h, J->fbuf, n);
        } else {
            st = delta_rows(it, al, ba, esize, b, r0, h, J->fbuf, n);
            if (st != LX_OK)
                break;
            for (size_t i = 0; i < h * n; i++)
                J->fbuf[i] *= alpha;
        }
        add_rows(t->dtype, al + r0 * n * esize, J->fbuf, J->obuf, h, n, esize);
        st = lx_st_out_write(&os->file, idx, b * mat_bytes + r0 * n * esize, J->obuf,
                             h * n * esize);
        J->done_bytes += h * n * esize;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    if (st == LX_OK)
        report_line(J, it, b, have_factors ? &f : NULL, lx_now() - t0);
    lx_factors_free(&f);
    return st;
}

static lx_status process_item(job *J, size_t i)
{
    const lx_plan_item *it = &J->plan.items[i];
    /* Where the output bytes go: the aligned tensor's shard, same slot. */
    out_shard *os = &J->shards[it->aligned->shard];
    size_t idx = J->slot[it->aligned - J->aligned->tensors];
    lx_status st = LX_OK;
    if (i + 1 < J->plan.n)
        advise_item(&J->plan.items[i + 1], MADV_WILLNEED);
    if (it->action == LX_ACT_COPY) {
        double t0 = lx_now();
        st = write_copy(J, os, idx, it->aligned);
        if (st == LX_OK)
            report_line(J, it, 0, NULL, lx_now() - t0);
    } else {
        for (uint64_t b = 0; b < it->batch && st == LX_OK; b++)
            st = transform_matrix(J, it, os, idx, b);
    }
    advise_item(it, MADV_DONTNEED);
    return st;
}

static char *method_string(const lx_apply_opts *o)
{
    char *s = NULL;
    int rc;
    if (o->rank == 0)
        rc = asprintf(&s, "full-rank extrapolation");
    else if (o->svd.exact)
        rc = asprintf(&s, "exact SVD");
    else if (o->svd.passes > 0)
        rc = asprintf(&s, "randomized SVD, %d passes, oversample %d, seed %" PRIu64,
                      o->svd.passes, o->svd.oversample, o->svd.seed);
    else
        rc = asprintf(&s, "randomized SVD, tol %g (max %d passes), oversample %d, seed %" PRIu64,
                      o->svd.tol, o->svd.max_passes, o->svd.oversample, o->svd.seed);
    return rc < 0 ? NULL : s;
}

/* Header metadata of every output shard: the aligned shard's own, with
 * format=pt and the parameters of this run. */
static lx_status build_layouts(job *J)
{
    const lx_apply_opts *o = J->o;
    char rank[32], alpha[64];
    snprintf(rank, sizeof rank, "%d", o->rank);
    snprintf(alpha, sizeof alpha, "%.17g", o->alpha);
    char *method = method_string(o);
    if (!method)
        return lx_fail(LX_EFAIL, "out of memory");
    const char *own_keys[] = {"format", "loxstream_version", "loxstream_rank", "loxstream_alpha",
                              "loxstream_method", "loxstream_include", "loxstream_exclude"};
    const char *own_vals[] = {"pt", PACKAGE_VERSION, rank, alpha, method,
                              o->include ? o->include : "", o->exclude ? o->exclude : ""};
    size_t nown = sizeof own_keys / sizeof own_keys[0];
    lx_status st = LX_OK;
    J->nshards = J->aligned->nshards;
    J->shards = calloc(J->nshards, sizeof *J->shards);
    J->slot = calloc(J->aligned->ntensors ? J->aligned->ntensors : 1, sizeof *J->slot);
    if (!J->shards || !J->slot) {
        free(method);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        const lx_shard *in = &J->aligned->shards[s];
        out_shard *os = &J->shards[s];
        size_t nt = in->header.ntensors;
        os->entries = calloc(nt ? nt : 1, sizeof *os->entries);
        size_t maxmeta = in->header.nmeta + nown;
        const char **keys = calloc(maxmeta, sizeof *keys), **vals = calloc(maxmeta, sizeof *vals);
        if (!os->entries || !keys || !vals) {
            free(keys);
            free(vals);
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        size_t nmeta = 0;
        for (size_t k = 0; k < nown; k++) {
            keys[nmeta] = own_keys[k];
            vals[nmeta++] = own_vals[k];
        }
        for (size_t k = 0; k < in->header.nmeta; k++) {
            int ours = 0;
            for (size_t q = 0; q < nown; q++)
                ours |= !strcmp(in->header.meta_keys[k], own_keys[q]);
            if (!ours) {
                keys[nmeta] = in->header.meta_keys[k];
                vals[nmeta++] = in->header.meta_values[k];
            }
        }
        /* Entries in file order, so offsets equal the aligned shard's. */
        size_t e = 0;
        for (size_t ti = 0; ti < J->aligned->ntensors; ti++) {
            const lx_tensor *t = &J->aligned->tensors[ti];
            if (t->shard != s)
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
        os->final_path = lx_path_join(o->output_path, in->name);
        if (os->final_path && asprintf(&os->partial_path, "%s.partial", os->final_path) < 0)
            os->partial_path = NULL;
        if (!os->final_path || !os->partial_path)
            st = lx_fail(LX_EFAIL, "out of memory");
    }
    free(method);
    return st;
}

static int is_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    return !strncmp(inner, outer, n) && (inner[n] == '/' || inner[n] == '\0' ||
                                         (n > 0 && outer[n - 1] == '/'));
}

/* The output directory must be new or empty, and not an input directory or
 * inside one.  Resuming a run is the journal's job (not yet). */
static lx_status prepare_output(job *J)
{
    const char *out = J->o->output_path;
    struct stat sb;
    if (stat(out, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return lx_fail(LX_EOUTPUT, "%s: output exists and is not a directory", out);
        DIR *d = opendir(out);
        if (!d)
            return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot open output directory", out);
        struct dirent *de;
        int empty = 1;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                empty = 0;
        closedir(d);
        if (!empty)
            return lx_fail(LX_EOUTPUT,
                           "%s: output directory is not empty; loxstream does not overwrite "
                           "files: choose a new directory",
                           out);
    }
    lx_status st = lx_mkdir_p(out);
    if (st != LX_OK)
        return st;
    char ro[PATH_MAX], ri[PATH_MAX];
    if (!realpath(out, ro))
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot resolve", out);
    const lx_checkpoint *ins[2] = {J->base, J->aligned};
    for (int i = 0; i < 2; i++) {
        if (!realpath(ins[i]->dir, ri))
            continue;
        if (is_within(ro, ri)) {
            rmdir(out);
            return lx_fail(LX_EOUTPUT, "%s: output directory is inside the input %s", out,
                           ins[i]->dir);
        }
    }
    return LX_OK;
}

static lx_status check_memory(job *J)
{
    const lx_apply_opts *o = J->o;
    uint64_t worst = 0;
    const char *worst_name = NULL;
    J->n_max = 0;
    for (size_t i = 0; i < J->plan.n; i++) {
        const lx_plan_item *it = &J->plan.items[i];
        if (it->action == LX_ACT_COPY)
            continue;
        if (it->n > J->n_max)
            J->n_max = it->n;
        uint64_t need = (uint64_t)LX_RSVD_PANEL_ROWS * it->n * (sizeof(float) + 8);
        if (it->action == LX_ACT_LOWRANK) {
            lx_rsvd_opts so = o->svd;
            so.rank = o->rank;
            need += lx_rsvd_workspace_bytes(it->m, it->n, &so);
        }
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    if (worst + FIXED_OVERHEAD > o->max_memory) {
        char a[32], b[32];
        return lx_fail(LX_EUSAGE,
                       "--max-memory %s is too small: tensor '%s' needs %s of working memory "
                       "(with %s of fixed overhead)",
                       lx_format_size(o->max_memory, a, sizeof a), worst_name,
                       lx_format_size(worst + FIXED_OVERHEAD, b, sizeof b),
                       lx_format_size(FIXED_OVERHEAD, a, sizeof a));
    }
    return LX_OK;
}

/* Copy config.json, tokenizer files etc. of the aligned model directory. */
static lx_status copy_side_files(job *J)
{
    struct stat sb;
    if (stat(J->aligned->path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return LX_OK;
    DIR *d = opendir(J->aligned->dir);
    if (!d)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", J->aligned->dir);
    lx_status st = LX_OK;
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (nm[0] == '.' || !strcmp(nm, INDEX_NAME) ||
            (len > 12 && !strcmp(nm + len - 12, ".safetensors")))
            continue;
        char *src = lx_path_join(J->aligned->dir, nm), *dst = lx_path_join(J->o->output_path, nm);
        if (!src || !dst)
            st = lx_fail(LX_EFAIL, "out of memory");
        else if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode))
            st = lx_copy_file(src, dst);
        free(src);
        free(dst);
    }
    closedir(d);
    return st;
}

static lx_status write_index(job *J)
{
    if (!J->aligned->has_index)
        return LX_OK;
    size_t n = J->aligned->ntensors;
    const char **tn = malloc((n ? n : 1) * sizeof *tn), **sn = malloc((n ? n : 1) * sizeof *sn);
    if (!tn || !sn) {
        free(tn);
        free(sn);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        tn[i] = J->aligned->tensors[i].name;
        sn[i] = J->aligned->shards[J->aligned->tensors[i].shard].name;
    }
    char *path = lx_path_join(J->o->output_path, INDEX_NAME);
    lx_status st = path ? lx_index_write(path, J->aligned->total_bytes, n, tn, sn)
                        : lx_fail(LX_EFAIL, "out of memory");
    free(path);
    free(tn);
    free(sn);
    return st;
}

static lx_status finish_shards(job *J)
{
    for (size_t s = 0; s < J->nshards; s++) {
        out_shard *os = &J->shards[s];
        lx_status st = lx_st_out_sync(&os->file);
        if (st == LX_OK)
            st = lx_st_out_close(&os->file);
        os->open = 0;
        if (st != LX_OK)
            return st;
    }
    for (size_t s = 0; s < J->nshards; s++) {
        out_shard *os = &J->shards[s];
        if (rename(os->partial_path, os->final_path) != 0)
            return lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", os->partial_path,
                                 os->final_path);
    }
    int dfd = open(J->o->output_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return LX_OK;
}

static void job_free(job *J)
{
    for (size_t s = 0; s < J->nshards; s++) {
        out_shard *os = &J->shards[s];
        if (os->open)
            lx_st_out_close(&os->file);
        lx_st_layout_free(&os->layout);
        free(os->entries);
        free(os->final_path);
        free(os->partial_path);
    }
    free(J->shards);
    free(J->slot);
    free(J->fbuf);
    free(J->obuf);
    if (J->report && J->report != stdout)
        fclose(J->report);
    lx_plan_free(&J->plan);
    lx_filter_free(&J->filter);
    if (J->base)
        lx_checkpoint_close(J->base);
    if (J->aligned)
        lx_checkpoint_close(J->aligned);
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
    uint64_t in_bytes = J->plan.transform_bytes * 2 + J->plan.copy_bytes;
    fprintf(stderr,
            "stats: wall %.2f s; inputs %.3f GB, output %.3f GB (%.2f GB/s in+out); "
            "storage read %.3f GB, written %.3f GB; SVD %.2f s, %.1f GFLOP (%.1f GFLOP/s); "
            "peak RSS %ld MiB; %s\n",
            wall, (double)in_bytes / 1e9, (double)J->done_bytes / 1e9,
            wall > 0 ? (double)(in_bytes + J->done_bytes) / 1e9 / wall : 0.0, (double)rd / 1e9,
            (double)wr / 1e9, J->svd_seconds, J->svd_flops / 1e9,
            J->svd_seconds > 0 ? J->svd_flops / 1e9 / J->svd_seconds : 0.0, ru.ru_maxrss / 1024,
            lx_linalg_describe());
}

static lx_status run(job *J)
{
    const lx_apply_opts *o = J->o;
    lx_status st = lx_filter_init(&J->filter, o->include, o->exclude);
    if (st == LX_OK)
        st = lx_checkpoint_open(o->base_path, &J->base);
    if (st == LX_OK)
        st = lx_checkpoint_open(o->aligned_path, &J->aligned);
    if (st == LX_OK)
        st = lx_plan_build(J->base, J->aligned, &J->filter, o->rank, o->copy_unmatched, &J->plan);
    if (st == LX_OK)
        st = check_memory(J);
    if (st == LX_OK)
        st = lx_linalg_init(o->threads);
    if (st != LX_OK)
        return st;
    J->fbuf = malloc((size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1) * sizeof(float));
    J->obuf = malloc((size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1) * 8);
    if (!J->fbuf || !J->obuf)
        return lx_fail(LX_EFAIL, "out of memory allocating panel buffers");
    if ((st = prepare_output(J)) != LX_OK || (st = build_layouts(J)) != LX_OK)
        return st;
    if (o->report_path) {
        J->report = strcmp(o->report_path, "-") ? fopen(o->report_path, "w") : stdout;
        if (!J->report)
            return lx_fail_errno(LX_EFAIL, errno, "%s: cannot create report", o->report_path);
        fputs("tensor\tmatrix\trows\tcols\tdtype\taction\trank\tpasses\tconverged\tchange\t"
              "frobenius\tenergy\tsingular_values\tseconds\n",
              J->report);
    }
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        st = lx_st_out_open(&J->shards[s].file, J->shards[s].partial_path, &J->shards[s].layout, 0);
        J->shards[s].open = st == LX_OK;
    }
    if (st != LX_OK)
        return st;
    lx_progress_begin(&J->progress, "apply", J->plan.n,
                      J->plan.transform_bytes + J->plan.copy_bytes, o->quiet);
    for (size_t i = 0; i < J->plan.n && st == LX_OK; i++) {
        st = process_item(J, i);
        lx_progress_update(&J->progress, i + 1, J->done_bytes, J->plan.items[i].aligned->name);
    }
    if (st == LX_OK)
        st = finish_shards(J);
    if (st == LX_OK)
        st = write_index(J);
    if (st == LX_OK)
        st = copy_side_files(J);
    if (st == LX_OK && J->report && fflush(J->report) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot write report", o->report_path);
    if (st == LX_OK && o->stats)
        print_stats(J);
    if (st == LX_OK) {
        lx_progress_end(&J->progress);
        if (!o->quiet)
            fprintf(stderr, "apply: %zu tensors transformed, %zu copied; SVD %.2f s; output %s\n",
                    J->plan.ntransform, J->plan.n - J->plan.ntransform, J->svd_seconds,
                    o->output_path);
    }
    return st;
}

lx_status lx_apply_run(const lx_apply_opts *o)
{
    job J;
    memset(&J, 0, sizeof J);
    J.o = o;
    lx_status st = run(&J);
    job_free(&J);
    return st;
}

/* apply.c - the LoX job (see apply.h).
 *
 * Data flow per tensor: the two mmapped inputs -> row panels of
 * dW = aligned - base in f32 (converted and subtracted on the fly, checked
 * finite) -> randomized SVD (rsvd.c) -> output pass: rows of
 * aligned + alpha * U_k S_k V_k^T, rounded to the stored dtype and written
 * at their final offsets.  The output keeps the aligned model's shard
 * names, tensor order and offsets, so each output header is known before
 * the first byte of data is written.
 *
 * Durability (journal.h): the output directory first gets its identity;
 * each shard is filled as NAME.partial; after each tensor its bytes are
 * fdatasync'ed, then its journal record is appended and fdatasync'ed.  A
 * later run with the same identity keeps every tensor whose record still
 * matches its output bytes and its inputs, and computes the rest; as each
 * tensor's bytes are a function of its inputs and the options only, the
 * result is the same bytes as an uninterrupted run's.  Completion: side
 * files, renames, index, checksum list, marker, each step durable before
 * the next.  Tensors are processed in file order, so each shard's
 * whole-file XXH3 for the list is accumulated on the way (kept tensors are
 * read back for their check anyway); a shard not streamed in order is read
 * back at the end.
 *
 * Parts (--part I/N, journal.h): the plan is split by lx_plan_partition;
 * a part computes its items only, into the shards it shares with the other
 * parts, with its own journal, and the last part to finish completes the
 * output (finish_part), reading each shard back whole for its checksum, as
 * the other parts' bytes never pass through this process.
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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif


#include "config.h"
#include "loxstream/xxh.h"
#include "loxstream/apply.h"
#include "loxstream/dtype.h"
#include "loxstream/journal.h"
#include "loxstream/linalg.h"
#include "loxstream/prefetch.h"
#include "loxstream/progress.h"
#include "loxstream/simd.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/parse.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"
#include "loxstream/verify.h"
#include "loxstream/wqueue.h"

#define COPY_CHUNK (16u << 20)      /* bytes per write when copying a tensor */
#define CHECK_CHUNK (4u << 20)      /* bytes per read when checking a kept tensor */
#define WRITEBACK_MIN (1u << 20)    /* start writeback for writes at least this large */
#define OUT_BUFFERS 3               /* output panels in flight to the writer */
#define WRITER_JOBS 64              /* jobs queued to the writer at most */
#define PREFETCH_AHEAD (512u << 20) /* input bytes read ahead beyond the current tensor */
#define STREAM_BROKEN UINT64_MAX
#define FIXED_OVERHEAD (48u << 20)  /* tables, stdio, libraries, CHECK_CHUNK: counted against --max-memory */
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

/* See apply.h.  (2 C_j + w_j) N / (2 W) in 128 bits: 2 W N can pass 2^64
 * for a few TB of work and thousands of parts. */
static unsigned item_part(uint64_t cum, uint64_t w, uint64_t total, unsigned nparts)
{
#ifdef __SIZEOF_INT128__
    unsigned __int128 q = ((unsigned __int128)cum * 2 + w) * nparts / ((unsigned __int128)total * 2);
#else
    long double q = ((long double)cum * 2 + w) * nparts / ((long double)total * 2);
#endif
    return q >= nparts ? nparts - 1 : (unsigned)q;
}

void lx_plan_partition(const lx_plan *p, unsigned nparts, size_t *bounds)
{
    size_t n = p->n;
    uint64_t total = 0;
    for (size_t j = 0; j < n; j++)
        total += p->items[j].aligned->nbytes * (p->items[j].action == LX_ACT_COPY ? 1 : 2);
    /* bounds[q] = the first item of a part >= q + 1 (0-based parts) */
    for (unsigned q = 0; q <= nparts; q++)
        bounds[q] = n;
    bounds[0] = 0;
    uint64_t cum = 0;
    unsigned next = 1; /* the next boundary to set */
    for (size_t j = 0; j < n && next < nparts; j++) {
        const lx_plan_item *it = &p->items[j];
        uint64_t w = it->aligned->nbytes * (it->action == LX_ACT_COPY ? 1 : 2);
        unsigned owner = total ? item_part(cum, w, total, nparts)
                               : (unsigned)((uint64_t)j * nparts / n);
        while (next <= owner && next < nparts)
            bounds[next++] = j;
        cum += w;
    }
    if (n < nparts)
        return;
    /* no empty part: each boundary one past the previous at least, and
     * leaving one item to each later part */
    for (unsigned q = 1; q < nparts; q++) {
        if (bounds[q] < bounds[q - 1] + 1)
            bounds[q] = bounds[q - 1] + 1;
        if (bounds[q] > n - (nparts - q))
            bounds[q] = n - (nparts - q);
    }
}

/* ---- options ----------------------------------------------------------- */

void lx_apply_opts_default(lx_apply_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    o->alpha = 1.25;
    lx_rsvd_opts_default(&o->svd);
    o->max_memory = (uint64_t)1 << 30;
    o->threads = lx_online_cpus();
    o->part = o->nparts = 1;
}

/* ---- the job ----------------------------------------------------------- */

typedef struct out_shard {
    const char *name;              /* the aligned shard's file name */
    lx_st_entry *entries;
    lx_st_layout layout;
    lx_st_out file;
    char *final_path, *partial_path;
    int open;
    int fresh;                     /* created by this process: nothing earlier to keep */
    XXH3_state_t *stream;          /* whole-file XXH3 while bytes arrive in file order */
    uint64_t stream_at;            /* file offset reached; STREAM_BROKEN when out of order */
    uint64_t xxh3;                 /* whole-file checksum, at completion */
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
    lx_wqueue *wq;                 /* the writer thread: every write, checksum and sync */
    size_t n_max;
    FILE *report;
    lx_progress progress;
    uint64_t done_bytes;
    double svd_seconds, svd_flops;
    /* --stats: the rest of the time, by phase */
    double out_seconds;            /* output rows: rank-k GEMM, add, rounding */
    double write_seconds;          /* pwrite of output bytes (page-cache copy),
                                    * with the output's XXH3 alongside */
    double hash_seconds;           /* XXH3 of inputs, and of output written alone */
    double sync_seconds;           /* writeback start and fdatasync */
    /* durability and resumption */
    char **side;                   /* side files of the aligned directory, sorted */
    size_t nside;
    lx_identity identity;
    uint64_t identity_hash;
    int lock_fd;
    lx_journal journal;
    const lx_journal_record **rec; /* aligned tensor index -> its latest record or NULL */
    XXH3_state_t *tstate, *snap;   /* the tensor being written; a stream snapshot */
    /* the last computed tensor, written but not yet synced and recorded
     * (flush_pending); its names are borrowed from the checkpoint */
    int pending;
    out_shard *pending_shard;
    lx_journal_record pending_rec;
    unsigned char *rbuf;           /* CHECK_CHUNK bytes for reading kept tensors back */
    lx_prefetch *pf;               /* reads the inputs ahead (NULL: none) */
    int resuming, complete_already, prepared;
    size_t recorded;               /* tensors with a journal record when the run started */
    size_t kept, computed, redone;
    /* --part I/N: this process computes items [lo, hi) of the plan */
    unsigned part, nparts;
    size_t *bounds;                /* lx_plan_partition: nparts + 1 entries */
    size_t lo, hi;
    uint64_t own_transform_bytes, own_copy_bytes;
    size_t own_transform;          /* transformed items among [lo, hi) */
    size_t own_recorded;           /* of them, with a record when the run started */
    lx_journal *others;            /* the output's other journals, by name (index_records) */
    size_t nothers;
    int part_lock_fd, complete_fd; /* journal.h: the part's lock, the completion lock */
    int completed;                 /* this process completed the output */
    char finish_msg[1024];         /* a part's last line: completed, or what it waits for */
    int final_message;             /* the error message needs no "run again to resume" */
    size_t matrices;               /* factored in this run */
    size_t unconverged, ungapped;  /* of them: err_est > tol; and with no gap seen */
} job;


static int in_parallel(void)
{
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return 0;
#endif
}

/* Index of the first NaN/Inf in x[0..n), or n.  Blocks of fixed length so
 * that GCC -O2 vectorises the test (it leaves loops of unknown length
 * alone: this loop cost more than the conversion before). */
#define FINITE_BLOCK 256
LX_VECTOR_CLONES
static size_t first_nonfinite(const float *x, size_t n)
{
    size_t i = 0;
    for (; i + FINITE_BLOCK <= n; i += FINITE_BLOCK) {
        uint32_t bad = 0;
        for (size_t j = 0; j < FINITE_BLOCK; j++) {
            uint32_t u;
            memcpy(&u, &x[i + j], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            break;
    }
    for (; i < n; i++)
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
    /* serial when called by one of the threads of a pass (rsvd.c) */
#pragma omp parallel for schedule(static) if (h * n >= (1u << 16) && !in_parallel())
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
                       "tensor '%s': %srow %zu, column %zu: %s %g, base %g: the difference "
                       "is not finite (NaN or Inf in an input)",
                       it->aligned->name, where, r, c, it->role ? it->role : "aligned", a, b);
    }
    return LX_OK;
}

lx_status lx_delta_rows(const lx_plan_item *it, uint64_t b, size_t r0, size_t h, float *dst,
                        size_t ld)
{
    size_t esize = lx_dtype_bits(it->aligned->dtype) / 8;
    uint64_t mat_bytes = it->m * it->n * esize;
    return delta_rows(it, it->aligned->data + b * mat_bytes, it->base->data + b * mat_bytes,
                      esize, b, r0, h, dst, ld);
}

/* The row source of the randomized SVD: called by several threads at once
 * (rsvd.h), so it does not hash; finish_item hashes the inputs afterwards. */
static lx_status delta_src_rows(void *ctx, size_t r0, size_t h, float *dst, size_t ld)
{
    const lx_delta_src *d = ctx;
    return lx_delta_rows(d->item, d->b, r0, h, dst, ld);
}

lx_rowsrc lx_delta_rowsrc(lx_delta_src *ctx, const lx_plan_item *it, uint64_t b)
{
    ctx->item = it;
    ctx->b = b;
    lx_rowsrc src = {(size_t)it->m, (size_t)it->n, delta_src_rows, ctx};
    return src;
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

void lx_plan_item_advise(const lx_plan_item *it, int advice)
{
    advise(it->aligned->data, it->aligned->nbytes, advice);
    if (it->base && it->action != LX_ACT_COPY)
        advise(it->base->data, it->base->nbytes, advice);
}

size_t lx_prefetch_item_ranges(const lx_plan_item *const *items, size_t n, uint64_t ahead,
                               lx_range *r)
{
    size_t k = 0;
    uint64_t beyond = 0;
    for (size_t j = 0; j < n && k + 2 <= LX_PREFETCH_MAX; j++) {
        const lx_plan_item *it = items[j];
        if (!it)
            continue;
        if (j > 0 && beyond >= ahead)
            break;
        uint64_t bytes = it->aligned->nbytes;
        r[k++] = (lx_range){it->aligned->data, it->aligned->nbytes};
        if (it->base && it->action != LX_ACT_COPY) {
            r[k++] = (lx_range){it->base->data, it->base->nbytes};
            bytes += it->base->nbytes;
        }
        if (j > 0)
            beyond += bytes;
    }
    return k;
}

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
#pragma omp parallel for schedule(static) num_threads(J->o->threads) if (J->o->threads > 1 && h * n >= (1u << 16)) reduction(min:first)
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
    fprintf(J->report, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s", t->name, b, it->m,
            it->n, lx_dtype_name(t->dtype), it->action == LX_ACT_COPY ? it->why : act);
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

/* Feed the shard's whole-file checksum, if the bytes continue it. */
static void stream_feed(out_shard *os, uint64_t file_off, const void *buf, size_t len)
{
    if (os->stream_at != file_off) {
        os->stream_at = STREAM_BROKEN;
        return;
    }
    XXH3_64bits_update(os->stream, buf, len);
    os->stream_at += len;
}

static uint64_t file_offset(const out_shard *os, size_t idx, uint64_t off)
{
    return os->layout.header_size + os->layout.entries[idx].begin + off;
}

/* Make the pending tensor's bytes durable, then append its record.  This
 * is deferred from finish_item to just before the next tensor writes (or
 * a shard is opened, or the run ends): by then the kernel has written the
 * bytes back during the next tensor's SVD (out_put starts the writeback),
 * so the fdatasync finds little to do instead of stalling the
 * computation; a crash meanwhile costs one more tensor to redo. */
static lx_status flush_pending(job *J)
{
    if (!J->pending)
        return LX_OK;
    J->pending = 0;
    double t0 = lx_now();
    lx_status st = lx_st_out_sync(&J->pending_shard->file);
    J->sync_seconds += lx_now() - t0;
    if (st != LX_OK)
        return st;
    lx_test_point("data-sync");
    return lx_journal_append(&J->journal, &J->pending_rec);
}

/* Write output bytes of tensor idx and account for them in the tensor's
 * and the shard's checksums; start writeback of large writes so that the
 * tensor's fdatasync has little left to do. */
static lx_status out_put(job *J, out_shard *os, size_t idx, uint64_t off, const void *buf,
                         size_t len)
{
    lx_status st = flush_pending(J);
    if (st != LX_OK)
        return st;
    double t0 = lx_now();
    st = lx_st_out_write(&os->file, idx, off, buf, len);
    double t1 = lx_now();
    J->write_seconds += t1 - t0;
    if (st != LX_OK)
        return st;
    XXH3_64bits_update(J->tstate, buf, len);
    stream_feed(os, file_offset(os, idx, off), buf, len);
    J->hash_seconds += lx_now() - t1;
    if (st != LX_OK)
        return st;
    double t2 = lx_now();
    st = len >= WRITEBACK_MIN ? lx_st_out_writeback(&os->file, idx, off, len) : LX_OK;
    J->sync_seconds += lx_now() - t2;
    return st;
}

/* ---- the writer thread (wqueue.h) ----
 * Everything that writes, hashes output, syncs or appends to the journal
 * runs there, in push order: W_BEGIN (a tensor starts: its checksum is
 * reset), W_PUT (out_put), W_FINISH (finish_item, then the tensor's input
 * pages are let go).  The main thread touches that state only after
 * lx_wq_drain. */
enum { W_BEGIN, W_PUT, W_FINISH };

static lx_status finish_item(job *J, size_t i, out_shard *os, size_t idx);

static lx_status writer_job(void *ctx, const lx_wq_job *w)
{
    job *J = ctx;
    switch (w->kind) {
    case W_BEGIN:
        XXH3_64bits_reset(J->tstate);
        return LX_OK;
    case W_PUT:
        return out_put(J, w->p, w->a, w->off, w->buf, w->len);
    default: {
        lx_status st = finish_item(J, w->a, w->p, w->b);
        lx_plan_item_advise(&J->plan.items[w->a], MADV_DONTNEED);
        return st;
    }
    }
}

static lx_status put(job *J, out_shard *os, size_t idx, uint64_t off, const void *buf,
                     size_t len, int slot)
{
    lx_wq_job w = {W_PUT, os, idx, 0, off, buf, len, slot};
    return lx_wq_push(J->wq, &w);
}

static lx_status write_copy(job *J, out_shard *os, size_t idx, const lx_tensor *t)
{
    for (uint64_t off = 0; off < t->nbytes; off += COPY_CHUNK) {
        uint64_t len = t->nbytes - off < COPY_CHUNK ? t->nbytes - off : COPY_CHUNK;
        lx_status st = put(J, os, idx, off, t->data + off, (size_t)len, -1);
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
        lx_delta_src ds;
        lx_rowsrc src = lx_delta_rowsrc(&ds, it, b);
        double s0 = lx_now();
        st = lx_rsvd_topk(&src, &so, &f);
        J->svd_seconds += lx_now() - s0;
        if (st != LX_OK)
            return st;
        J->matrices++;
        if (!f.converged) {
            J->unconverged++;
            J->ungapped += f.gap < LX_RSVD_GAP_MIN;
        }
        /* two GEMMs of m x n x l per pass (Y = A V, Z += A^T Y) */
        J->svd_flops += 4.0 * (double)f.passes * (double)m * (double)n * (double)f.l;
        have_factors = 1;
    }
    float alpha = (float)J->o->alpha;
    for (size_t r0 = 0; r0 < m && st == LX_OK; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        if (!have_factors) {
            st = delta_rows(it, al, ba, esize, b, r0, h, J->fbuf, n);
            if (st != LX_OK)
                break;
        }
        int slot;
        unsigned char *obuf = lx_wq_buffer(J->wq, &slot);
        if (!obuf) {
            st = lx_wq_drain(J->wq);
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
        st = put(J, os, idx, b * mat_bytes + r0 * n * esize, obuf, h * n * esize, slot);
        J->done_bytes += h * n * esize;
        lx_progress_update(&J->progress, J->progress.done_items, J->done_bytes, t->name);
    }
    if (st == LX_OK)
        report_line(J, it, b, have_factors ? &f : NULL, lx_now() - t0);
    lx_factors_free(&f);
    return st;
}

/* Have the prefetcher read item i's inputs and those of the next items, up
 * to PREFETCH_AHEAD bytes beyond item i (items an earlier run recorded are
 * likely kept: skipped).  Without a prefetcher: MADV_WILLNEED on the next
 * item. */
static void prefetch_from(job *J, size_t i)
{
    if (!J->pf) {
        if (i + 1 < J->hi)
            lx_plan_item_advise(&J->plan.items[i + 1], MADV_WILLNEED);
        return;
    }
    lx_range r[LX_PREFETCH_MAX];
    size_t n = 0;
    uint64_t ahead = 0;
    for (size_t j = i; j < J->hi && n + 2 <= LX_PREFETCH_MAX; j++) {
        const lx_plan_item *it = &J->plan.items[j];
        if (j > i) {
            if (ahead >= PREFETCH_AHEAD)
                break;
            if (J->resuming && J->rec[it->aligned - J->aligned->tensors])
                continue;
        }
        r[n++] = (lx_range){it->aligned->data, it->aligned->nbytes};
        uint64_t bytes = it->aligned->nbytes;
        if (it->base && it->action != LX_ACT_COPY) {
            r[n++] = (lx_range){it->base->data, it->base->nbytes};
            bytes += it->base->nbytes;
        }
        if (j > i)
            ahead += bytes;
    }
    lx_prefetch_set(J->pf, r, n);
}

static lx_status process_item(job *J, size_t i)
{
    const lx_plan_item *it = &J->plan.items[i];
    /* Where the output bytes go: the aligned tensor's shard, same slot. */
    out_shard *os = &J->shards[it->aligned->shard];
    size_t idx = J->slot[it->aligned - J->aligned->tensors];
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
        os->name = in->name;
        os->final_path = lx_path_join(o->output_path, in->name);
        if (os->final_path && asprintf(&os->partial_path, "%s" LX_PARTIAL_SUFFIX, os->final_path) < 0)
            os->partial_path = NULL;
        if (!os->final_path || !os->partial_path)
            st = lx_fail(LX_EFAIL, "out of memory");
    }
    free(method);
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
    for (size_t i = 0; i < J->plan.n; i++) {
        const lx_plan_item *it = &J->plan.items[i];
        if (it->action == LX_ACT_COPY)
            continue;
        if (it->n > J->n_max)
            J->n_max = it->n;
        /* fbuf (f32) and the writer's output buffers */
        uint64_t need = (uint64_t)LX_RSVD_PANEL_ROWS * it->n * (sizeof(float) + 8 * OUT_BUFFERS);
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

/* ---- the output directory: identity, refusals, resumption --------------- */

static int is_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    return !strncmp(inner, outer, n) && (inner[n] == '/' || inner[n] == '\0' ||
                                         (n > 0 && outer[n - 1] == '/'));
}

/* forward: defined below */
static lx_status resolve_future(const char *path, char out[PATH_MAX], size_t *existing);

lx_status lx_output_outside(const char *out, const lx_checkpoint *const *ins, size_t n,
                            char resolved[PATH_MAX], size_t *existing)
{
    char ri[PATH_MAX];
    lx_status st = resolve_future(out, resolved, existing);
    if (st != LX_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (ins[i] && realpath(ins[i]->dir, ri) && is_within(resolved, ri))
            return lx_fail(LX_EOUTPUT, "%s: output directory is %s the input %s", out,
                           strcmp(resolved, ri) ? "inside" : "the directory of", ins[i]->dir);
    return LX_OK;
}

/* The absolute, symlink-free form of a path that may not exist yet: its
 * deepest existing ancestor through realpath, then the rest lexically.
 * *existing gets the length of the part that exists. */
static lx_status resolve_future(const char *path, char out[PATH_MAX], size_t *existing)
{
    char head[PATH_MAX], rest[PATH_MAX] = "";
    if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head)
        return lx_fail(LX_EOUTPUT, "%s: path too long", path);
    for (;;) {
        if (realpath(*head ? head : ".", out))
            break;
        if (errno != ENOENT || !*head)
            return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot resolve", *head ? head : ".");
        size_t n = strlen(head);
        while (n > 1 && head[n - 1] == '/')
            head[--n] = '\0';
        char *slash = strrchr(head, '/');
        const char *last = slash ? slash + 1 : head;
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s%s%s", last, *rest ? "/" : "", rest);
        snprintf(rest, sizeof rest, "%s", tmp);
        if (slash)
            slash[slash == head ? 1 : 0] = '\0';
        else
            head[0] = '\0';
    }
    *existing = strlen(out);
    /* append the components that do not exist yet; ".." pops lexically */
    for (char *save, *c = strtok_r(rest, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t n = strlen(out);
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(out, '/');
            if (slash)
                slash[slash == out ? 1 : 0] = '\0';
            if (strlen(out) < *existing)
                *existing = strlen(out);
            continue;
        }
        if (n + 1 + strlen(c) >= PATH_MAX)
            return lx_fail(LX_EOUTPUT, "%s: path too long", path);
        snprintf(out + n, PATH_MAX - n, "%s%s", n > 1 ? "/" : "", c);
    }
    return LX_OK;
}

typedef enum out_state { OUT_NEW, OUT_EMPTY, OUT_OURS, OUT_FOREIGN } out_state;

/* Only loxstream's own leftovers of a run stopped before its identity was
 * written: lock files and temporary files. */
static int state_dir_is_bare(const char *out)
{
    char *sdir = lx_path_join(out, LX_STATE_DIR);
    DIR *d = sdir ? opendir(sdir) : NULL;
    free(sdir);
    if (!d)
        return 0;
    int bare = 1;
    struct dirent *de;
    while (bare && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        bare = !strcmp(nm, ".") || !strcmp(nm, "..") || !strcmp(nm, "lock") ||
               !strcmp(nm, "complete.lock") ||
               !strncmp(nm, LX_PART_LOCK_PREFIX, strlen(LX_PART_LOCK_PREFIX)) ||
               (len > 4 && !strcmp(nm + len - 4, ".tmp"));
    }
    closedir(d);
    return bare;
}

static lx_status classify_output(const char *out, out_state *state)
{
    struct stat sb;
    if (stat(out, &sb) != 0) {
        if (errno == ENOENT) {
            *state = OUT_NEW;
            return LX_OK;
        }
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot access the output directory", out);
    }
    if (!S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: output exists and is not a directory", out);
    char *id = lx_path_join(out, LX_IDENTITY_PATH);
    if (!id)
        return lx_fail(LX_EFAIL, "out of memory");
    int ours = lstat(id, &sb) == 0;
    free(id);
    if (ours) {
        *state = OUT_OURS;
        return LX_OK;
    }
    DIR *d = opendir(out);
    if (!d)
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot open output directory", out);
    int others = 0, state_dir = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strcmp(de->d_name, LX_STATE_DIR))
            state_dir = 1;
        else
            others = 1;
    }
    closedir(d);
    *state = !others && (!state_dir || state_dir_is_bare(out)) ? OUT_EMPTY : OUT_FOREIGN;
    /* a part that started meanwhile writes the identity before any other file */
    if (!(id = lx_path_join(out, LX_IDENTITY_PATH)))
        return lx_fail(LX_EFAIL, "out of memory");
    if (lstat(id, &sb) == 0)
        *state = OUT_OURS;
    free(id);
    return LX_OK;
}

/* classify_output, refusing a directory that is not ours. */
static lx_status classify_ours(const char *out, out_state *state)
{
    lx_status st = classify_output(out, state);
    if (st == LX_OK && *state == OUT_FOREIGN)
        st = lx_fail(LX_EOUTPUT, "%s: not empty and not a loxstream output; loxstream does not "
                     "overwrite files: choose a new or empty directory", out);
    return st;
}

static int flock_wait(int fd, int op)
{
    while (flock(fd, op) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static lx_status open_lock(const char *path, int *fd)
{
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
    return *fd < 0 ? lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", path) : LX_OK;
}

static const char *part_lock_name(unsigned part, unsigned nparts, char *buf, size_t len)
{
    snprintf(buf, len, LX_PART_LOCK_PREFIX "%04u-of-%04u", part, nparts);
    return buf;
}

/* The locks of journal.h, flock(2)s that the kernel releases when the
 * process ends, however it ends: with --part, the part's own lock
 * (exclusive: one process per part); the completion lock, waited for (it
 * is held only while a process prepares or completes the output); then the
 * output lock, exclusive for a run without --part, shared by parts.  The
 * completion lock is released at the end of prepare_output. */
static lx_status lock_output(job *J)
{
    if (J->lock_fd >= 0)
        return LX_OK;
    const char *out = J->o->output_path;
    char *sdir = lx_path_join(out, LX_STATE_DIR), *path = NULL;
    lx_status st = !sdir ? lx_fail(LX_EFAIL, "out of memory") : lx_mkdir_p(sdir);
    if (st == LX_OK && J->nparts > 1) {
        char name[64];
        path = lx_path_join(sdir, part_lock_name(J->part, J->nparts, name, sizeof name));
        st = path ? open_lock(path, &J->part_lock_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK && flock(J->part_lock_fd, LOCK_EX | LOCK_NB) != 0)
            st = errno == EWOULDBLOCK
                     ? lx_fail(LX_EOUTPUT, "%s: another loxstream process is writing part %u/%u "
                               "of this output (%s is locked)", out, J->part, J->nparts, path)
                     : lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
        free(path);
        path = NULL;
    }
    if (st == LX_OK) {
        path = lx_path_join(out, LX_COMPLETE_LOCK_PATH);
        st = path ? open_lock(path, &J->complete_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK && flock_wait(J->complete_fd, LOCK_EX) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
        free(path);
        path = NULL;
    }
    if (st == LX_OK) {
        path = lx_path_join(out, LX_LOCK_PATH);
        st = path ? open_lock(path, &J->lock_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK &&
            flock(J->lock_fd, (J->nparts > 1 ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0)
            st = errno == EWOULDBLOCK
                     ? lx_fail(LX_EOUTPUT, "%s: another loxstream process is writing this output "
                               "(%s is locked%s)", out, path,
                               J->nparts > 1 ? " by a run without --part" : "")
                     : lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
    }
    free(sdir);
    free(path);
    return st;
}

static void release_completion_lock(job *J)
{
    if (J->complete_fd >= 0)
        flock(J->complete_fd, LOCK_UN);
}

/* config.json, tokenizer files etc. of the aligned model directory: the
 * regular files that are not safetensors, not the index, not dot files. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static lx_status list_side_files(job *J)
{
    struct stat sb;
    if (stat(J->aligned->path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return LX_OK;
    DIR *d = opendir(J->aligned->dir);
    if (!d)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", J->aligned->dir);
    lx_status st = LX_OK;
    size_t cap = 0;
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (nm[0] == '.' || !strcmp(nm, INDEX_NAME) || !strcmp(nm, LX_LIST_NAME) ||
            (len > 12 && !strcmp(nm + len - 12, ".safetensors")))
            continue;
        char *src = lx_path_join(J->aligned->dir, nm);
        if (!src) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        int regular = stat(src, &sb) == 0 && S_ISREG(sb.st_mode);
        free(src);
        if (!regular)
            continue;
        if (J->nside == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(J->side, cap * sizeof *p);
            if (!p) {
                st = lx_fail(LX_EFAIL, "out of memory");
                break;
            }
            J->side = p;
        }
        if (!(J->side[J->nside] = strdup(nm)))
            st = lx_fail(LX_EFAIL, "out of memory");
        else
            J->nside++;
    }
    closedir(d);
    if (st == LX_OK && J->nside > 1)
        qsort(J->side, J->nside, sizeof *J->side, cmp_str);
    return st;
}

static lx_status add_named(lx_identity *id, const char *prefix, const char *name, const char *value)
{
    /* an output's name goes on a line of loxstream.xxh3: refuse it before any work */
    if (!strncmp(prefix, "output ", 7) && strpbrk(name, "\n\r")) {
        char q[LX_NAME_QUOTE];
        return lx_fail(LX_EINPUT, "file name '%s' holds a line break, which the checksum list "
                       "%s cannot hold", lx_st_escape_name(name, q, sizeof q), LX_LIST_NAME);
    }
    size_t cap = strlen(prefix) + 4 * strlen(name) + 1;
    char *key = malloc(cap);
    if (!key)
        return lx_fail(LX_EFAIL, "out of memory");
    size_t pl = strlen(prefix);
    memcpy(key, prefix, pl);
    lx_st_escape_name(name, key + pl, cap - pl);
    lx_status st = lx_identity_add(id, key, value);
    free(key);
    return st;
}

/* The shortest decimal that reads back as the same double ("0.0003", not
 * "0.00029999999999999997"). */
static const char *format_double(double x, char *buf, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    return buf;
}

static lx_status add_escaped(lx_identity *id, const char *key, const char *value)
{
    char *v = lx_st_escape_dup(value);
    if (!v)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_identity_add(id, key, v);
    free(v);
    return st;
}

/* What the output's bytes are a function of (compared on resumption), and
 * the files the run writes (recorded only). */
static lx_status build_identity(job *J)
{
    const lx_apply_opts *o = J->o;
    lx_identity *id = &J->identity;
    char v[128];
    lx_status st = lx_identity_add(id, "version", PACKAGE_VERSION);
    snprintf(v, sizeof v, "%d", o->rank);
    if (st == LX_OK)
        st = lx_identity_add(id, "option rank", v);
    if (st == LX_OK)
        st = lx_identity_add(id, "option alpha", format_double(o->alpha, v, sizeof v));
    const char *method = o->rank == 0 ? "full" : o->svd.exact ? "exact" : "randomized";
    if (st == LX_OK)
        st = lx_identity_add(id, "option method", method);
    if (st == LX_OK && !strcmp(method, "randomized")) {
        snprintf(v, sizeof v, "%d", o->svd.oversample);
        st = lx_identity_add(id, "option oversample", v);
        snprintf(v, sizeof v, "%" PRIu64, o->svd.seed);
        if (st == LX_OK)
            st = lx_identity_add(id, "option seed", v);
        if (o->svd.passes > 0) {
            snprintf(v, sizeof v, "%d", o->svd.passes);
            if (st == LX_OK)
                st = lx_identity_add(id, "option passes", v);
        } else {
            if (st == LX_OK)
                st = lx_identity_add(id, "option tol", format_double(o->svd.tol, v, sizeof v));
            snprintf(v, sizeof v, "%d", o->svd.max_passes);
            if (st == LX_OK)
                st = lx_identity_add(id, "option max-passes", v);
        }
    }
    if (st == LX_OK && o->include)
        st = add_escaped(id, "option include", o->include);
    if (st == LX_OK && o->exclude)
        st = add_escaped(id, "option exclude", o->exclude);
    const struct { const char *role; const lx_checkpoint *ck; } ins[] = {
        {"input base/", J->base}, {"input aligned/", J->aligned}};
    for (int r = 0; r < 2 && st == LX_OK; r++) {
        for (size_t s = 0; s < ins[r].ck->nshards && st == LX_OK; s++) {
            const lx_shard *sh = &ins[r].ck->shards[s];
            char hex[LX_HEX64];
            snprintf(v, sizeof v, "size %" PRIu64 " header %s", sh->size,
                     lx_hex64(sh->header_xxh3, hex));
            st = add_named(id, ins[r].role, sh->name, v);
        }
    }
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        snprintf(v, sizeof v, "shard size %" PRIu64 " tensors %zu", J->shards[s].layout.file_size,
                 J->shards[s].layout.n);
        st = add_named(id, "output ", J->shards[s].name, v);
    }
    if (st == LX_OK && J->aligned->has_index)
        st = add_named(id, "output ", INDEX_NAME, "index");
    for (size_t i = 0; i < J->nside && st == LX_OK; i++)
        st = add_named(id, "output ", J->side[i], "side");
    J->identity_hash = lx_identity_hash(id);
    return st;
}

/* unlink dir/name+suffix, if it exists */
static lx_status unlink_in(const char *dir, const char *name, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name, suffix) < 0)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_unlink_if(p);
    free(p);
    return st;
}

static lx_status unlink_outputs(const char *out, const lx_identity *id)
{
    lx_status st = LX_OK;
    for (size_t i = 0; i < id->n && st == LX_OK; i++) {
        if (strncmp(id->keys[i], "output ", 7))
            continue;
        char *name = lx_unescape_name(id->keys[i] + 7, strlen(id->keys[i] + 7));
        if (!name || !lx_is_plain_filename(name)) {
            free(name);
            continue; /* never follow a damaged entry outside the directory */
        }
        st = unlink_in(out, name, "");
        if (st == LX_OK)
            st = unlink_in(out, name, LX_PARTIAL_SUFFIX);
        if (st == LX_OK)
            st = unlink_in(out, name, ".tmp");
        free(name);
    }
    return st;
}

/* --restart: remove what loxstream wrote in this directory (its state, the
 * outputs named by the old and the new identity), nothing else.  The marker
 * goes first, so that no intermediate state claims to be complete. */
static lx_status remove_own_files(job *J, const lx_identity *old)
{
    const char *out = J->o->output_path;
    char *sdir = lx_path_join(out, LX_STATE_DIR);
    if (!sdir)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = unlink_in(sdir, "complete", "");
    if (st == LX_OK)
        st = lx_sync_dir(sdir);
    if (st == LX_OK)
        st = unlink_in(out, LX_LIST_NAME, "");
    if (st == LX_OK)
        st = unlink_in(out, LX_LIST_NAME, ".tmp");
    if (st == LX_OK)
        st = unlink_outputs(out, old);
    if (st == LX_OK)
        st = unlink_outputs(out, &J->identity);
    DIR *d = st == LX_OK ? opendir(sdir) : NULL;
    if (st == LX_OK && !d)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", sdir);
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (!strncmp(nm, "journal.part-", 13) || (len > 4 && !strcmp(nm + len - 4, ".tmp")))
            st = unlink_in(sdir, nm, "");
    }
    if (d)
        closedir(d);
    if (st == LX_OK)
        st = lx_sync_dir(sdir);
    if (st == LX_OK)
        st = lx_sync_dir(out);
    free(sdir);
    if (st == LX_OK)
        lx_test_point("restart");
    return st;
}

/* Free space for what is still to be written, before the first byte: the
 * blocks a shard lacks (its .partial is sparse until filled), the side
 * files, and a margin for the index, journal and list. */
static lx_status check_space(job *J, const char *resolved, size_t existing)
{
    uint64_t need = 0, total = 0;
    struct stat sb;
    for (size_t s = 0; s < J->nshards; s++) {
        const out_shard *os = &J->shards[s];
        uint64_t size = os->layout.file_size, have = 0;
        if (stat(os->partial_path, &sb) == 0 || stat(os->final_path, &sb) == 0)
            have = (uint64_t)sb.st_blocks * 512;
        total += size;
        need += size > have ? size - have : 0;
    }
    for (size_t i = 0; i < J->nside; i++) {
        char *src = lx_path_join(J->aligned->dir, J->side[i]);
        if (src && stat(src, &sb) == 0) {
            need += (uint64_t)sb.st_size;
            total += (uint64_t)sb.st_size;
        }
        free(src);
    }
    uint64_t margin = 4096 * (uint64_t)(J->nshards + J->nside + 8) + 512 * (uint64_t)J->plan.n;
    need += margin;
    total += margin;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)existing, resolved);
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot query free space", dir);
    uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    lx_test_avail(&avail); /* test-only: pretend the file system has this much */
    if (need > avail) {
        char a[32], b[32], c[32];
        return lx_fail(LX_EFAIL, "%s: not enough free space: the output needs %s more (%s in "
                       "all), the file system has %s available (%" PRIu64 " bytes needed, %"
                       PRIu64 " available)", J->o->output_path, lx_format_size(need, a, sizeof a),
                       lx_format_size(total, b, sizeof b), lx_format_size(avail, c, sizeof c),
                       need, avail);
    }
    return LX_OK;
}

/* Back to the state before completion: no marker, list or index, shards
 * under their temporary names, so that nothing looks complete while
 * tensors are done again. */
static lx_status reopen_output(job *J)
{
    const char *out = J->o->output_path;
    char *sdir = lx_path_join(out, LX_STATE_DIR), *marker = lx_path_join(out, LX_COMPLETE_PATH);
    lx_status st = !sdir || !marker ? lx_fail(LX_EFAIL, "out of memory") : LX_OK;
    struct stat sb;
    if (st == LX_OK && lstat(marker, &sb) == 0) {
        st = lx_unlink_if(marker);
        if (st == LX_OK)
            st = lx_sync_dir(sdir);
        if (st == LX_OK)
            lx_test_point("uncomplete");
    }
    if (st == LX_OK)
        st = unlink_in(out, LX_LIST_NAME, "");
    if (st == LX_OK && J->aligned->has_index)
        st = unlink_in(out, INDEX_NAME, "");
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        out_shard *os = &J->shards[s];
        if (lstat(os->partial_path, &sb) != 0 && errno == ENOENT &&
            lstat(os->final_path, &sb) == 0 && S_ISREG(sb.st_mode) &&
            rename(os->final_path, os->partial_path) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", os->final_path,
                               os->partial_path);
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    free(sdir);
    free(marker);
    return st;
}

/* J->rec from the records of the other journals, in name order, then of
 * the own one: the last record of each tensor wins.  Returns the number of
 * tensors with a record. */
static size_t index_records(job *J)
{
    size_t n = 0;
    memset(J->rec, 0, J->aligned->ntensors * sizeof *J->rec);
    for (size_t k = 0; k <= J->nothers; k++) {
        const lx_journal *j = k < J->nothers ? &J->others[k] : &J->journal;
        for (size_t r = 0; r < j->n; r++) {
            const lx_journal_record *rec = &j->records[r];
            const lx_tensor *t = lx_checkpoint_find(J->aligned, rec->tensor);
            if (t) {
                n += !J->rec[t - J->aligned->tensors];
                J->rec[t - J->aligned->tensors] = rec;
            }
        }
    }
    return n;
}

static char *journal_path(const job *J)
{
    char name[64], *path = NULL;
    lx_journal_name(J->part, J->nparts, name, sizeof name);
    if (asprintf(&path, "%s/%s/%s", J->o->output_path, LX_STATE_DIR, name) < 0)
        return NULL;
    return path;
}

static int cmp_journal_path(const void *a, const void *b)
{
    return strcmp(((const lx_journal *)a)->path, ((const lx_journal *)b)->path);
}

static void free_journals(lx_journal *js, size_t n)
{
    for (size_t k = 0; k < n; k++)
        lx_journal_close(&js[k]);
    free(js);
}

/* Load every journal of OUTDIR/.loxstream but the one at skip (NULL: all),
 * sorted by name; those of another identity give no records. */
static lx_status load_journals(job *J, const char *skip, lx_journal **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *sdir = lx_path_join(J->o->output_path, LX_STATE_DIR);
    DIR *d = sdir ? opendir(sdir) : NULL;
    if (!sdir || !d) {
        lx_status st = !sdir ? lx_fail(LX_EFAIL, "out of memory")
                             : lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", sdir);
        free(sdir);
        return st;
    }
    lx_status st = LX_OK;
    size_t cap = 0;
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (strncmp(nm, LX_JOURNAL_PREFIX, strlen(LX_JOURNAL_PREFIX)) ||
            (len > 4 && !strcmp(nm + len - 4, ".tmp")))
            continue;
        char *path = lx_path_join(sdir, nm);
        if (!path) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        if (skip && !strcmp(path, skip)) {
            free(path);
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            lx_journal *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                free(path);
                st = lx_fail(LX_EFAIL, "out of memory");
                break;
            }
            *out = p;
        }
        st = lx_journal_load(&(*out)[*n], path, J->identity_hash);
        if (st == LX_OK)
            (*n)++;
        free(path);
    }
    closedir(d);
    free(sdir);
    if (st != LX_OK) {
        free_journals(*out, *n);
        *out = NULL;
        *n = 0;
        return st;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_journal_path);
    return LX_OK;
}

/* Does record r describe tensor i where this run puts it, computed from
 * the inputs as they are now? */
static int record_fits(const job *J, size_t i, const lx_journal_record *r)
{
    const lx_plan_item *it = &J->plan.items[i];
    const lx_tensor *t = it->aligned;
    const out_shard *os = &J->shards[t->shard];
    size_t idx = J->slot[i];
    return !strcmp(r->shard, os->name) && r->offset == file_offset(os, idx, 0) &&
           r->length == t->nbytes && r->has_base == (it->action != LX_ACT_COPY);
}

static int inputs_match(const job *J, size_t i, const lx_journal_record *r)
{
    const lx_plan_item *it = &J->plan.items[i];
    if (XXH3_64bits(it->aligned->data, it->aligned->nbytes) != r->aligned_xxh3)
        return 0;
    return !r->has_base || XXH3_64bits(it->base->data, it->base->nbytes) == r->base_xxh3;
}

static void warn_problem(void *ctx, const char *msg)
{
    lx_warn("%s", msg);
}

/* A completed output: is it intact, and still what these inputs give? */
static lx_status check_complete(job *J, int *intact)
{
    *intact = 0;
    lx_verify_result res;
    lx_status st = lx_verify_output(J->o->output_path, warn_problem, NULL, &res);
    if (st == LX_EVERIFY) {
        lx_warn("%s", lx_errmsg());
        return LX_OK;
    }
    if (st != LX_OK)
        return st;
    for (size_t i = 0; i < J->plan.n; i++) {
        const lx_journal_record *r = J->rec[i];
        char q[LX_NAME_QUOTE];
        const char *why = !r                      ? "it has no journal record"
                          : !record_fits(J, i, r) ? "its journal record is not this run's"
                          : !inputs_match(J, i, r) ? "its inputs changed since the output was completed"
                                                   : NULL;
        lx_plan_item_advise(&J->plan.items[i], MADV_DONTNEED);
        if (why) {
            lx_warn("tensor '%s': %s: computing it again",
                    lx_st_escape_name(J->plan.items[i].aligned->name, q, sizeof q), why);
            return LX_OK;
        }
    }
    lx_listed_file *list;
    size_t n;
    uint64_t lh;
    if ((st = lx_list_read(J->o->output_path, &list, &n, &lh)) != LX_OK)
        return st == LX_EVERIFY ? LX_OK : st;
    int same = 1;
    for (size_t i = 0; i < J->nside && same && st == LX_OK; i++) {
        char *src = lx_path_join(J->aligned->dir, J->side[i]);
        uint64_t h = 0;
        st = src ? lx_file_xxh3(src, 0, &h) : lx_fail(LX_EFAIL, "out of memory");
        same = 0;
        for (size_t k = 0; k < n && st == LX_OK; k++)
            same |= !strcmp(list[k].name, J->side[i]) && list[k].xxh3 == h;
        if (st == LX_OK && !same)
            lx_warn("%s: changed in the aligned model since the output was completed: copying it "
                    "again", src);
        free(src);
    }
    lx_list_free(list, n);
    *intact = st == LX_OK && same;
    return st;
}

/* An output of ours: its identity against this run's (or --restart). */
static lx_status take_over(job *J, out_state *state)
{
    const lx_apply_opts *o = J->o;
    const char *out = o->output_path;
    lx_identity old;
    int exists;
    lx_status st = lx_identity_read(out, &old, &exists);
    if (st == LX_EOUTPUT && !o->restart)
        return lx_fail_append(LX_EOUTPUT, " (use --restart to discard this output)");
    if (st == LX_OK && o->restart) {
        st = remove_own_files(J, &old);
        *state = OUT_EMPTY;
    } else if (st == LX_EOUTPUT) {
        lx_identity_init(&old);
        st = remove_own_files(J, &old);
        *state = OUT_EMPTY;
    } else if (st == LX_OK) {
        char ctx[PATH_MAX + 64];
        snprintf(ctx, sizeof ctx, "%s holds a run with other options or inputs", out);
        st = lx_identity_compare(&old, &J->identity, ctx);
        if (st == LX_EOUTPUT)
            st = lx_fail_append(LX_EOUTPUT, "; use --restart to discard it, or choose another "
                                "output directory");
    }
    lx_identity_free(&old);
    return st;
}

/* The state of OUTDIR: refusals, the locks, the identity, a complete
 * output checked, the earlier runs' records indexed, the shards back under
 * their temporary names, the journal open.  The completion lock is held
 * from lock_output to the end, so that parts starting at once see each
 * other's identity and none prepares while another completes. */
static lx_status prepare_output(job *J)
{
    const lx_apply_opts *o = J->o;
    const char *out = o->output_path;
    char ro[PATH_MAX];
    size_t existing = 0;
    const lx_checkpoint *ins[2] = {J->base, J->aligned};
    lx_status st = lx_output_outside(out, ins, 2, ro, &existing);
    if (st != LX_OK)
        return st;
    out_state state;
    if ((st = classify_ours(out, &state)) != LX_OK)
        return st;
    int space_checked = 0;
    if (state != OUT_OURS) {
        /* refused for space before anything is created */
        if ((st = check_space(J, ro, existing)) != LX_OK || (st = lx_mkdir_p(out)) != LX_OK)
            return st;
        space_checked = 1;
    }
    if ((st = lock_output(J)) != LX_OK)
        return st;
    /* again under the locks: another part may have started it meanwhile */
    if ((st = classify_ours(out, &state)) != LX_OK)
        return st;
    if (state == OUT_OURS && (st = take_over(J, &state)) != LX_OK)
        return st;
    char *jpath = journal_path(J);
    if (!jpath)
        return lx_fail(LX_EFAIL, "out of memory");
    if (state == OUT_OURS) {
        int marker = 0;
        uint64_t mid, mlist;
        st = lx_journal_load(&J->journal, jpath, J->identity_hash);
        if (st == LX_OK)
            st = load_journals(J, jpath, &J->others, &J->nothers);
        if (st == LX_OK) {
            index_records(J);
            st = lx_marker_read(out, &marker, &mid, &mlist);
            if (st == LX_EVERIFY) {
                marker = 1;  /* damaged: check_complete says what and the run redoes it */
                st = LX_OK;
            }
        }
        int intact = 0;
        if (st == LX_OK && marker)
            st = check_complete(J, &intact);
        lx_journal_close(&J->journal);
        memset(J->rec, 0, J->aligned->ntensors * sizeof *J->rec);
        if (st == LX_OK && intact) {
            J->complete_already = 1;
            free(jpath);
            return LX_OK;
        }
        J->resuming = 1;
    }
    if (st == LX_OK && !space_checked)
        st = check_space(J, ro, existing);
    /* a resumed run rewrites it too: the side files may have changed */
    if (st == LX_OK)
        st = lx_identity_write(&J->identity, out);
    if (st == LX_OK)
        lx_test_point("identity");
    if (st == LX_OK && state == OUT_OURS)
        st = reopen_output(J);
    if (st == LX_OK)
        st = lx_journal_open(&J->journal, jpath, J->part, J->nparts, J->identity_hash);
    if (st == LX_OK) {
        if (J->journal.foreign)
            lx_warn("%s: written for another run: ignored", jpath);
        if (J->journal.damaged)
            lx_warn("%s: %zu damaged records ignored (their tensors are computed again)", jpath,
                    J->journal.damaged);
        J->recorded = index_records(J);
        for (size_t i = J->lo; i < J->hi; i++)
            J->own_recorded += J->rec[i] != NULL;
        J->prepared = 1;
    }
    free(jpath);
    if (st == LX_OK)
        release_completion_lock(J);
    return st;
}

/* ---- writing ------------------------------------------------------------ */

/* Open the shard's .partial on first use: reuse the earlier run's file if
 * its size and header are right, else create it (sparse). */
static lx_status shard_open(job *J, out_shard *os)
{
    struct stat sb;
    int reuse = lstat(os->partial_path, &sb) == 0;
    if (reuse && !S_ISREG(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: not a regular file", os->partial_path);
    lx_status st = LX_OK;
    if (J->nparts > 1) {
        /* shared with the other parts: created whole if absent, never
         * truncated; a file of another size or header is not replaced, as
         * other parts may be writing into it */
        char *sdir = lx_path_join(J->o->output_path, LX_STATE_DIR);
        int created = 0;
        st = sdir ? lx_st_out_open_shared(&os->file, os->partial_path, sdir, &os->layout, &created)
                  : lx_fail(LX_EFAIL, "out of memory");
        free(sdir);
        if (st == LX_EOUTPUT)
            return lx_fail_append(LX_EOUTPUT, "; parts do not replace a shard other parts may be "
                                  "filling: run apply without --part to write it again");
        /* the name must be durable before any record points into the file */
        if (st == LX_OK)
            st = lx_sync_dir(J->o->output_path);
        if (st == LX_OK && created)
            lx_test_point("create");
        if (st != LX_OK) {
            if (os->file.path)
                lx_st_out_close(&os->file);
            return st;
        }
        reuse = !created;
    } else if (reuse) {
        st = lx_st_out_open(&os->file, os->partial_path, &os->layout, 1);
        if (st == LX_EOUTPUT) {
            lx_warn("%s; writing it again", lx_errmsg());
            reuse = 0;
        } else if (st != LX_OK) {
            return st;
        }
    }
    if (!reuse && J->nparts == 1) {
        st = lx_st_out_open(&os->file, os->partial_path, &os->layout, 0);
        if (st == LX_OK)
            st = lx_sync_dir(J->o->output_path);
        if (st == LX_OK)
            lx_test_point("create");
        else if (os->file.path)
            lx_st_out_close(&os->file); /* not open for the job: close it here */
    }
    if (st != LX_OK)
        return st;
    os->open = 1;
    os->fresh = !reuse;
    XXH3_64bits_reset(os->stream);
    os->stream_at = 0;
    stream_feed(os, 0, os->layout.header, os->layout.header_size);
    return LX_OK;
}

/* Keep tensor i from the earlier run if its record fits, its inputs are
 * unchanged and its bytes in the .partial still match; its bytes then
 * continue the shard's whole-file checksum. */
static lx_status check_kept(job *J, size_t i, out_shard *os, size_t idx, int *keep)
{
    *keep = 0;
    const lx_journal_record *r = J->rec[i];
    const lx_plan_item *it = &J->plan.items[i];
    char q[LX_NAME_QUOTE];
    if (!r || os->fresh || !record_fits(J, i, r))
        return LX_OK;
    lx_st_escape_name(it->aligned->name, q, sizeof q);
    if (!inputs_match(J, i, r)) {
        lx_warn("tensor '%s': its inputs changed since it was written: computing it again", q);
        J->redone++;
        return LX_OK;
    }
    XXH3_copyState(J->snap, os->stream);
    uint64_t at0 = os->stream_at;
    XXH3_64bits_reset(J->tstate);
    for (uint64_t off = 0; off < r->length;) {
        size_t len = r->length - off < CHECK_CHUNK ? (size_t)(r->length - off) : CHECK_CHUNK;
        ssize_t got = pread(os->file.fd, J->rbuf, len, (off_t)(r->offset + off));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return lx_fail_errno(LX_EFAIL, got < 0 ? errno : EIO,
                                 "%s: tensor '%s': reading back %zu bytes at %" PRIu64 " failed",
                                 os->partial_path, q, len, r->offset + off);
        XXH3_64bits_update(J->tstate, J->rbuf, (size_t)got);
        stream_feed(os, r->offset + off, J->rbuf, (size_t)got);
        off += (uint64_t)got;
    }
    if (XXH3_64bits_digest(J->tstate) != r->out_xxh3) {
        lx_warn("%s: tensor '%s': its bytes do not match its journal record: computing it again",
                os->partial_path, q);
        XXH3_copyState(os->stream, J->snap);
        os->stream_at = at0;
        J->redone++;
        return LX_OK;
    }
    *keep = 1;
    return LX_OK;
}

/* The tensor's bytes are written: its record, to be appended once they are
 * durable (flush_pending). */
static lx_status finish_item(job *J, size_t i, out_shard *os, size_t idx)
{
    const lx_plan_item *it = &J->plan.items[i];
    lx_status st = flush_pending(J); /* a tensor without bytes wrote nothing */
    if (st != LX_OK)
        return st;
    lx_test_point("data");
    lx_journal_record r;
    memset(&r, 0, sizeof r);
    r.tensor = (char *)it->aligned->name;
    r.shard = (char *)os->name;
    r.offset = file_offset(os, idx, 0);
    r.length = it->aligned->nbytes;
    r.out_xxh3 = XXH3_64bits_digest(J->tstate);
    r.has_base = it->action != LX_ACT_COPY;
    if (!r.has_base) {
        r.aligned_xxh3 = r.out_xxh3; /* a copy: the same bytes */
    } else {
        /* read again from the mapping, just after the computation read it */
        double t0 = lx_now();
        r.aligned_xxh3 = XXH3_64bits(it->aligned->data, it->aligned->nbytes);
        r.base_xxh3 = XXH3_64bits(it->base->data, it->base->nbytes);
        J->hash_seconds += lx_now() - t0;
    }
    J->pending_rec = r;
    J->pending_shard = os;
    J->pending = 1;
    return LX_OK;
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

static lx_status list_add(lx_listed_file *files, size_t *n, const char *name, uint64_t h)
{
    if (!(files[*n].name = strdup(name)))
        return lx_fail(LX_EFAIL, "out of memory");
    files[(*n)++].xxh3 = h;
    return LX_OK;
}

/* ---- parts: checking back and completing ------------------------------- */

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

/* The part (1-based) that owns item i. */
static unsigned part_of(const job *J, size_t i)
{
    unsigned lo = 1, hi = J->nparts;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (i < J->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* "part 3" or "parts 1, 3-5, 8, 9" into buf (ps: ascending, duplicates
 * allowed), cut short with "..." when buf is full. */
static void format_parts(const unsigned *ps, size_t n, char *buf, size_t len)
{
    size_t at = 0, distinct = 0;
    for (size_t k = 0; k < n; k++)
        distinct += k == 0 || ps[k] != ps[k - 1];
    at += (size_t)snprintf(buf, len, "%s ", distinct == 1 ? "part" : "parts");
    for (size_t k = 0; k < n && at < len;) {
        size_t e = k;
        while (e + 1 < n && (ps[e + 1] == ps[e] || ps[e + 1] == ps[e] + 1))
            e++;
        if (at > len - 40) {
            snprintf(buf + at, len - at, "...");
            return;
        }
        if (ps[e] == ps[k]) {
            at += (size_t)snprintf(buf + at, len - at, "%s%u", k ? ", " : "", ps[k]);
        } else if (ps[e] == ps[k] + 1) {
            /* two in a row: "2, 3" */
            at += (size_t)snprintf(buf + at, len - at, "%s%u", k ? ", " : "", ps[k]);
            while (ps[k + 1] == ps[k])
                k++;
            k++;
            continue;
        } else {
            at += (size_t)snprintf(buf + at, len - at, "%s%u-%u", k ? ", " : "", ps[k], ps[e]);
        }
        k = e + 1;
    }
}

/* Read len bytes at off of fd into the checksums (whole file, and t if
 * not NULL); with expect, the bytes must equal it. */
static lx_status read_back(job *J, int fd, const char *path, uint64_t off, uint64_t len,
                           XXH3_state_t *whole, XXH3_state_t *t, const char *expect, int *same)
{
    for (uint64_t done = 0; done < len;) {
        size_t want = len - done < CHECK_CHUNK ? (size_t)(len - done) : CHECK_CHUNK;
        ssize_t got = pread(fd, J->rbuf, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return lx_fail_errno(LX_EFAIL, got < 0 ? errno : EIO,
                                 "%s: reading back %zu bytes at %" PRIu64 " failed", path, want,
                                 off + done);
        XXH3_64bits_update(whole, J->rbuf, (size_t)got);
        if (t)
            XXH3_64bits_update(t, J->rbuf, (size_t)got);
        if (expect && memcmp(J->rbuf, expect + done, (size_t)got))
            *same = 0;
        done += (uint64_t)got;
    }
    return LX_OK;
}

/* With several writers the shard's checksum cannot be streamed: read the
 * shard back whole for it, and check each tensor's bytes against the
 * record J->rec holds for it; the parts of those that do not match (each
 * named in a warning) are appended to bad[*nbad]. */
static lx_status readback_shard(job *J, size_t s, unsigned *bad, size_t *nbad)
{
    out_shard *os = &J->shards[s];
    const char *path = os->partial_path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", path);
    struct stat sb;
    lx_status st = LX_OK;
    int same = 1;
    if (fstat(fd, &sb) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    else if ((uint64_t)sb.st_size != os->layout.file_size)
        st = lx_fail(LX_EFAIL, "%s: %" PRIu64 " bytes, the run writes %" PRIu64, path,
                     (uint64_t)sb.st_size, os->layout.file_size);
    XXH3_64bits_reset(os->stream);
    if (st == LX_OK)
        st = read_back(J, fd, path, 0, os->layout.header_size, os->stream, NULL,
                       os->layout.header, &same);
    if (st == LX_OK && !same)
        st = lx_fail(LX_EFAIL, "%s: its header is not the one the run writes", path);
    for (size_t i = 0; i < J->plan.n && st == LX_OK; i++) {
        const lx_tensor *t = J->plan.items[i].aligned;
        if (t->shard != s)
            continue;
        XXH3_64bits_reset(J->tstate);
        st = read_back(J, fd, path, file_offset(os, J->slot[i], 0), t->nbytes, os->stream,
                       J->tstate, NULL, NULL);
        if (st == LX_OK && XXH3_64bits_digest(J->tstate) != J->rec[i]->out_xxh3) {
            char q[LX_NAME_QUOTE];
            unsigned p = part_of(J, i);
            lx_warn("%s: tensor '%s' (part %u/%u): its bytes do not match its journal record",
                    path, lx_st_escape_name(t->name, q, sizeof q), p, J->nparts);
            bad[(*nbad)++] = p;
        }
    }
    if (st == LX_OK)
        os->xxh3 = XXH3_64bits_digest(os->stream);
    close(fd);
    return st;
}

/* Leftovers of a part killed while creating a shard (lx_st_out_open_shared):
 * removed once no other process writes the output. */
static lx_status remove_stale_temps(const char *out)
{
    char *sdir = lx_path_join(out, LX_STATE_DIR);
    DIR *d = sdir ? opendir(sdir) : NULL;
    lx_status st = sdir ? LX_OK : lx_fail(LX_EFAIL, "out of memory");
    struct dirent *de;
    while (d && st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (!strncmp(nm, "shard-", 6) && len > 10 && !strcmp(nm + len - 4, ".tmp"))
            st = unlink_in(sdir, nm, "");
    }
    if (d)
        closedir(d);
    free(sdir);
    return st;
}

/* Every tensor is durable and recorded.  Side files, then the shards'
 * final names, then index, checksum list and marker: each step durable
 * before the next, the marker last.  bad: room for one part number per
 * tensor (parts, readback_shard). */
static lx_status complete_output(job *J, unsigned *bad)
{
    const char *out = J->o->output_path;
    lx_status st = remove_stale_temps(out);
    size_t nfiles = 0, nbad = 0;
    lx_listed_file *files = calloc(J->nshards + J->nside + 1, sizeof *files);
    if (!files)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        out_shard *os = &J->shards[s];
        if (!os->open)
            st = shard_open(J, os); /* a shard without tensors, or of other parts */
        if (st == LX_OK)
            st = lx_st_out_sync(&os->file);
        if (st == LX_OK)
            st = lx_st_out_close(&os->file);
        os->open = 0;
        if (st == LX_OK && J->nparts > 1)
            st = readback_shard(J, s, bad, &nbad);
        else if (st == LX_OK && os->stream_at == os->layout.file_size)
            os->xxh3 = XXH3_64bits_digest(os->stream);
        else if (st == LX_OK)
            st = lx_file_xxh3(os->partial_path, 0, &os->xxh3); /* not streamed in order */
        if (st == LX_OK)
            st = list_add(files, &nfiles, os->name, os->xxh3);
    }
    if (st == LX_OK && nbad) {
        char parts[512];
        qsort(bad, nbad, sizeof *bad, cmp_unsigned);
        format_parts(bad, nbad, parts, sizeof parts);
        st = lx_fail(LX_EFAIL, "%s: not completed: %zu tensors do not match their journal "
                     "records; run %s again (or apply without --part) to compute them again",
                     out, nbad, parts);
        J->final_message = 1;
    }
    uint64_t index_h = 0;
    for (size_t i = 0; i < J->nside && st == LX_OK; i++) {
        char *src = lx_path_join(J->aligned->dir, J->side[i]), *dst = lx_path_join(out, J->side[i]);
        uint64_t h;
        /* replaced, not written through: what is there under our name may be a link */
        st = src && dst ? lx_unlink_if(dst) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK)
            st = lx_copy_file(src, dst);
        if (st == LX_OK)
            st = lx_file_xxh3(dst, 1, &h);
        if (st == LX_OK) {
            lx_test_point("side");
            st = list_add(files, &nfiles, J->side[i], h);
        }
        free(src);
        free(dst);
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    for (size_t s = 0; s < J->nshards && st == LX_OK; s++) {
        out_shard *os = &J->shards[s];
        if (rename(os->partial_path, os->final_path) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", os->partial_path,
                               os->final_path);
        else
            lx_test_point("rename");
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    if (st == LX_OK && J->aligned->has_index) {
        char *path = lx_path_join(out, INDEX_NAME);
        st = path ? unlink_in(out, INDEX_NAME, ".tmp") : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK)
            st = write_index(J);
        if (st == LX_OK)
            st = lx_file_xxh3(path, 0, &index_h);
        if (st == LX_OK) {
            lx_test_point("index");
            st = list_add(files, &nfiles, INDEX_NAME, index_h);
        }
        free(path);
    }
    uint64_t list_h = 0;
    if (st == LX_OK)
        st = lx_list_write(out, files, nfiles, &list_h);
    if (st == LX_OK) {
        lx_test_point("list");
        st = lx_marker_write(out, J->identity_hash, list_h);
    }
    if (st == LX_OK)
        lx_test_point("marker");
    lx_list_free(files, nfiles);
    return st;
}

/* A part has made its tensors durable.  Under the completion lock: if
 * every tensor of the plan has a record in one of the journals and no other
 * process writes the output (the output lock can be taken exclusively),
 * complete it; else say which parts are missing. */
static lx_status finish_part(job *J)
{
    const lx_apply_opts *o = J->o;
    if (flock_wait(J->complete_fd, LOCK_EX) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock %s", o->output_path,
                             LX_COMPLETE_LOCK_PATH);
    /* (on Linux a refused conversion drops the shared lock: this process
     * writes nothing more, whatever happens) */
    int alone = flock(J->lock_fd, LOCK_EX | LOCK_NB) == 0;
    /* completed meanwhile?  (not while this part ran, by the locks) */
    int marker = 0;
    uint64_t mid, mlist;
    lx_status st = lx_marker_read(o->output_path, &marker, &mid, &mlist);
    if (st == LX_OK && marker && mid == J->identity_hash) {
        snprintf(J->finish_msg, sizeof J->finish_msg, "apply: part %u/%u done; %s was completed "
                 "by another process", J->part, J->nparts, o->output_path);
        return LX_OK;
    }
    /* every journal as it is now, this part's last */
    char *jpath = journal_path(J);
    if (!jpath)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_journal_close(&J->journal);
    free_journals(J->others, J->nothers);
    J->others = NULL;
    J->nothers = 0;
    st = lx_journal_load(&J->journal, jpath, J->identity_hash);
    free(jpath);
    if (st == LX_OK)
        st = load_journals(J, J->journal.path, &J->others, &J->nothers);
    if (st != LX_OK)
        return st;
    index_records(J);
    unsigned *missing = malloc((J->plan.n ? J->plan.n : 1) * sizeof *missing);
    if (!missing)
        return lx_fail(LX_EFAIL, "out of memory");
    size_t nmissing = 0;
    for (size_t i = 0; i < J->plan.n; i++)
        if (!J->rec[i] || !record_fits(J, i, J->rec[i]))
            missing[nmissing++] = part_of(J, i);
    char parts[512];
    if (nmissing) {
        format_parts(missing, nmissing, parts, sizeof parts);
        snprintf(J->finish_msg, sizeof J->finish_msg, "apply: part %u/%u done; waiting for %s; "
                 "the last part to finish completes the output", J->part, J->nparts, parts);
    } else if (!alone) {
        snprintf(J->finish_msg, sizeof J->finish_msg, "apply: part %u/%u done; every tensor is "
                 "done, but another process is still writing %s: it completes the output",
                 J->part, J->nparts, o->output_path);
    } else {
        st = complete_output(J, missing);
        if (st == LX_OK) {
            J->completed = 1;
            snprintf(J->finish_msg, sizeof J->finish_msg, "apply: part %u/%u done, the last: "
                     "%s is complete", J->part, J->nparts, o->output_path);
        }
    }
    free(missing);
    return st;
}

static void job_free(job *J)
{
    for (size_t s = 0; s < J->nshards; s++) {
        out_shard *os = &J->shards[s];
        if (os->open)
            lx_st_out_close(&os->file);
        lx_st_layout_free(&os->layout);
        XXH3_freeState(os->stream);
        free(os->entries);
        free(os->final_path);
        free(os->partial_path);
    }
    free(J->shards);
    free(J->slot);
    free(J->fbuf);
    free(J->rbuf);
    free(J->rec);
    XXH3_freeState(J->tstate);
    XXH3_freeState(J->snap);
    for (size_t i = 0; i < J->nside; i++)
        free(J->side[i]);
    free(J->side);
    lx_journal_close(&J->journal);
    free_journals(J->others, J->nothers);
    free(J->bounds);
    lx_identity_free(&J->identity);
    if (J->lock_fd >= 0)
        close(J->lock_fd);
    if (J->complete_fd >= 0)
        close(J->complete_fd);
    if (J->part_lock_fd >= 0)
        close(J->part_lock_fd);
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
    uint64_t in_bytes = J->own_transform_bytes * 2 + J->own_copy_bytes;
    fprintf(stderr,
            "stats: wall %.2f s; inputs %.3f GB, output %.3f GB (%.2f GB/s in+out); "
            "storage read %.3f GB, written %.3f GB; SVD %.2f s, %.1f GFLOP (%.1f GFLOP/s); "
            "output rows %.2f s, write %.2f s, hash %.2f s, sync %.2f s; "
            "peak RSS %ld MiB; %s\n",
            wall, (double)in_bytes / 1e9, (double)J->done_bytes / 1e9,
            wall > 0 ? (double)(in_bytes + J->done_bytes) / 1e9 / wall : 0.0, (double)rd / 1e9,
            (double)wr / 1e9, J->svd_seconds, J->svd_flops / 1e9,
            J->svd_seconds > 0 ? J->svd_flops / 1e9 / J->svd_seconds : 0.0, J->out_seconds,
            J->write_seconds, J->hash_seconds, J->sync_seconds, ru.ru_maxrss / 1024,
            lx_linalg_describe());
}

static lx_status run_items(job *J)
{
    lx_status st = LX_OK;
    for (size_t i = J->lo; i < J->hi && st == LX_OK; i++) {
        const lx_plan_item *it = &J->plan.items[i];
        out_shard *os = &J->shards[it->aligned->shard];
        size_t idx = J->slot[i];
        int keep = 0;
        /* opening a shard and checking a kept tensor touch the writer's
         * state: only with the writer idle */
        if (!os->open || (J->resuming && J->rec[i]))
            st = lx_wq_drain(J->wq);
        if (st == LX_OK && !os->open && (st = flush_pending(J)) == LX_OK)
            st = shard_open(J, os);
        if (st == LX_OK && J->resuming)
            st = check_kept(J, i, os, idx, &keep);
        if (st == LX_OK && keep) {
            J->kept++;
            J->done_bytes += it->aligned->nbytes;
            lx_plan_item_advise(it, MADV_DONTNEED);
        } else if (st == LX_OK) {
            lx_wq_job begin = {.kind = W_BEGIN, .slot = -1};
            st = lx_wq_push(J->wq, &begin);
            if (st == LX_OK)
                st = process_item(J, i);
            if (st == LX_OK) {
                lx_wq_job fin = {.kind = W_FINISH, .p = os, .a = i, .b = idx, .slot = -1};
                st = lx_wq_push(J->wq, &fin);
            }
            J->computed++;
        }
        lx_progress_update(&J->progress, i - J->lo + 1, J->done_bytes, it->aligned->name);
    }
    /* the writer's failure, if it had one, comes before the computation's
     * (it happened first); then the writer is idle */
    lx_status wst = lx_wq_drain(J->wq);
    if (wst != LX_OK)
        st = wst;
    if (st == LX_OK)
        return flush_pending(J);
    /* keep what was done before the failure: a later run resumes from it */
    if (J->pending && J->pending_shard->open) {
        char *msg = lx_err_save();
        flush_pending(J);
        lx_err_restore(st, msg);
    }
    return st;
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
    /* this part's items (all of them without --part) */
    if (!(J->bounds = calloc((size_t)J->nparts + 1, sizeof *J->bounds)))
        return lx_fail(LX_EFAIL, "out of memory");
    lx_plan_partition(&J->plan, J->nparts, J->bounds);
    J->lo = J->bounds[J->part - 1];
    J->hi = J->bounds[J->part];
    for (size_t i = J->lo; i < J->hi; i++) {
        const lx_plan_item *it = &J->plan.items[i];
        if (it->action == LX_ACT_COPY) {
            J->own_copy_bytes += it->aligned->nbytes;
        } else {
            J->own_transform_bytes += it->aligned->nbytes;
            J->own_transform++;
        }
    }
    /* fbuf is a GEMM operand (lx_factors_rows): padded, see linalg.h */
    J->fbuf = lx_falloc((size_t)LX_RSVD_PANEL_ROWS * (J->n_max ? J->n_max : 1));
    J->rbuf = malloc(CHECK_CHUNK);
    J->rec = calloc(J->aligned->ntensors ? J->aligned->ntensors : 1, sizeof *J->rec);
    J->tstate = XXH3_createState();
    J->snap = XXH3_createState();
    if (!J->fbuf || !J->rbuf || !J->rec || !J->tstate || !J->snap)
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    if ((st = build_layouts(J)) != LX_OK)
        return st;
    for (size_t s = 0; s < J->nshards; s++)
        if (!(J->shards[s].stream = XXH3_createState()))
            return lx_fail(LX_EFAIL, "out of memory");
    if ((st = list_side_files(J)) != LX_OK || (st = build_identity(J)) != LX_OK ||
        (st = prepare_output(J)) != LX_OK)
        return st;
    if (J->complete_already) {
        if (!o->quiet)
            fprintf(stderr, "apply: %s is complete and intact (%zu tensors checked): nothing to "
                    "do\n", o->output_path, J->plan.n);
        return LX_OK;
    }
    if (o->report_path) {
        J->report = strcmp(o->report_path, "-") ? fopen(o->report_path, "w") : stdout;
        if (!J->report)
            return lx_fail_errno(LX_EFAIL, errno, "%s: cannot create report", o->report_path);
        fputs("tensor\tmatrix\trows\tcols\tdtype\taction\trank\tpasses\tconverged\terr_est\t"
              "frobenius\tenergy\tsingular_values\tseconds\tmethod\tgap\n",
              J->report);
    }
    char part[64] = "";
    if (J->nparts > 1)
        snprintf(part, sizeof part, "part %u/%u: ", J->part, J->nparts);
    if (J->resuming && !o->quiet && J->nparts == 1)
        fprintf(stderr, "apply: resuming the run in %s (%zu tensors recorded)\n", o->output_path,
                J->recorded);
    else if (J->own_recorded && !o->quiet)
        fprintf(stderr, "apply: %sresuming in %s (%zu of its %zu tensors recorded)\n", part,
                o->output_path, J->own_recorded, J->hi - J->lo);
    lx_progress_begin(&J->progress, "apply", J->hi - J->lo,
                      J->own_transform_bytes + J->own_copy_bytes, o->quiet);
    /* without a prefetcher the run goes on, only slower */
    if (lx_prefetch_start(&J->pf) != LX_OK)
        J->pf = NULL;
    st = lx_wq_start(&J->wq, writer_job, J, OUT_BUFFERS, out_buffer_bytes(J), WRITER_JOBS);
    if (st == LX_OK)
        st = run_items(J);
    lx_wq_stop(J->wq);
    J->wq = NULL;
    lx_prefetch_stop(J->pf);
    J->pf = NULL;
    if (st == LX_OK && J->report && fflush(J->report) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot write report", o->report_path);
    if (st == LX_OK && J->nparts > 1) {
        st = finish_part(J);
    } else if (st == LX_OK) {
        if (flock_wait(J->complete_fd, LOCK_EX) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock %s", o->output_path,
                               LX_COMPLETE_LOCK_PATH);
        else
            st = complete_output(J, NULL);
    }
    if (st == LX_OK && o->stats)
        print_stats(J);
    if (st == LX_OK) {
        lx_progress_end(&J->progress);
        if (!o->quiet && (J->nparts == 1 ? J->resuming : J->own_recorded > 0))
            fprintf(stderr, "apply: %s%zu tensors kept from the earlier run, %zu computed (%zu "
                    "of them again)\n", part, J->kept, J->computed, J->redone);
        if (!o->quiet)
            fprintf(stderr, "apply: %s%zu tensors transformed, %zu copied; SVD %.2f s; output "
                    "%s\n", part, J->own_transform, J->hi - J->lo - J->own_transform,
                    J->svd_seconds, o->output_path);
        if (!o->quiet && J->finish_msg[0])
            fprintf(stderr, "%s\n", J->finish_msg);
        lx_rsvd_warn_unconverged("apply", J->unconverged, J->ungapped, J->matrices, &o->svd);
    }
    return st;
}

lx_status lx_apply_run(const lx_apply_opts *o)
{
    job J;
    memset(&J, 0, sizeof J);
    J.o = o;
    J.lock_fd = J.complete_fd = J.part_lock_fd = -1;
    J.journal.fd = -1;
    J.part = o->part ? o->part : 1;
    J.nparts = o->nparts ? o->nparts : 1;
    lx_status st = LX_OK;
    if (J.part < 1 || J.part > J.nparts || J.nparts > LX_MAX_PARTS)
        st = lx_fail(LX_EUSAGE, "--part %u/%u: expected I/N with 1 <= I <= N <= %d", J.part,
                     J.nparts, LX_MAX_PARTS);
    else if (o->restart && J.nparts > 1)
        st = lx_fail(LX_EUSAGE, "--restart with --part %u/%u would discard the other parts' "
                     "work: run it without --part", J.part, J.nparts);
    if (st != LX_OK)
        return st;
    st = run(&J);
    /* A failure once the output exists (a full disk, EIO, a file-size
     * limit): say that the state on disk is resumable. */
    if (st == LX_EFAIL && J.prepared && !J.final_message)
        lx_fail_append(st, "; the output is incomplete: fix the cause and run the same command "
                       "again to resume");
    job_free(&J);
    return st;
}

/* plan.c - what a streaming job does with each tensor (see plan.h): the
 * filters, the pairing of aligned and base tensors with its checks, the
 * byte-balanced split into parts, and the dW = aligned - base rows that the
 * randomized SVD reads (converted and subtracted on the fly, checked
 * finite), with the read-ahead ranges and madvise of an item's inputs.
 */
#include "config.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "loxstream/xxh.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/dtype.h"
#include "loxstream/modelconfig.h"
#include "loxstream/plan.h"
#include "loxstream/simd.h"

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

/* Tensors of base and aligned that differ in shape (or in kind of dtype):
 * without --copy-unmatched the first one is an error; the hint to copy
 * them is given only when that leaves something to transform, and a run
 * that would transform nothing (the models of different architectures)
 * is refused either way, with what config.json says. */
static lx_status mismatch_error(const lx_checkpoint *base, const lx_checkpoint *aligned,
                                const lx_plan *p, size_t nmismatch, int copy_unmatched,
                                const char *first)
{
    char cfg[512], why[600];
    if (p->ntransform > 0) {
        if (copy_unmatched)
            return LX_OK;
        return lx_fail(LX_EINPUT, "%s; %zu tensor%s differ%s from base: use --copy-unmatched to "
                       "copy %s unchanged (%zu other tensors are still transformed)", first,
                       nmismatch, nmismatch > 1 ? "s" : "", nmismatch > 1 ? "" : "s",
                       nmismatch > 1 ? "them" : "it", p->ntransform);
    }
    if (lx_config_differences(base->dir, "base", aligned->dir, "aligned", cfg, sizeof cfg))
        snprintf(why, sizeof why, "different architectures (config.json: %s)", cfg);
    else
        snprintf(why, sizeof why, "the models are not of one architecture");
    return lx_fail(LX_EINPUT, "%s; every tensor to transform (%zu) differs from base: %s; "
                   "nothing would be transformed, with --copy-unmatched or without",
                   first, nmismatch, why);
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
    size_t nocompute = 0;          /* copied: a weight dtype loxstream cannot compute in */
    const lx_tensor *first_nocompute = NULL;
    size_t nmixed = 0, nmismatch = 0; /* transformed with another dtype in base; differing */
    const lx_plan_item *first_mixed = NULL;
    char mismatch[512] = "";       /* the first differing tensor, without --copy-unmatched */
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
            shape_string(t, sa, sizeof sa);
            shape_string(it->base, sb, sizeof sb);
            if (lx_dtype_is_index(t->dtype) && it->base->dtype == t->dtype) {
                it->why = "integer dtype";  /* an index buffer: copied */
            } else if (t->nelem == 0) {
                it->why = "empty";
            } else if (!copy_unmatched) {
                st = lx_fail(LX_EINPUT,
                             "tensor '%s' (%s): aligned is %s [%s], base %s [%s]: loxstream "
                             "cannot compute in dtype %s (only F16, BF16, F32, F64); use "
                             "--copy-unmatched to copy it unchanged",
                             t->name, aligned->path, lx_dtype_name(t->dtype), sa,
                             lx_dtype_name(it->base->dtype), sb, lx_dtype_name(t->dtype));
                break;
            } else {
                it->why = "dtype not computable";
                if (!nocompute++)
                    first_nocompute = t;
            }
        } else if (!same_shape(it->base, t) || !lx_dtype_is_transformable(it->base->dtype)) {
            shape_string(t, sa, sizeof sa);
            shape_string(it->base, sb, sizeof sb);
            if (!mismatch[0])
                snprintf(mismatch, sizeof mismatch, "tensor '%s': aligned is %s [%s] but base "
                         "is %s [%s]", t->name, lx_dtype_name(t->dtype), sa,
                         lx_dtype_name(it->base->dtype), sb);
            if (copy_unmatched) {
                lx_warn("tensor '%s': aligned %s [%s] differs from base %s [%s]: copied "
                        "unchanged", t->name, lx_dtype_name(t->dtype), sa,
                        lx_dtype_name(it->base->dtype), sb);
            }
            it->why = "differs from base";
            nmismatch++;
        } else if (t->nelem == 0) {
            it->why = "empty";
        } else {
            if (it->base->dtype != t->dtype && !nmixed++)
                first_mixed = it;
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
    if (st == LX_OK && nmismatch)
        st = mismatch_error(base, aligned, out, nmismatch, copy_unmatched, mismatch);
    if (st == LX_OK && nmixed)
        lx_warn("%zu tensor%s of other float dtypes in base than in %s, the first '%s' (base "
                "%s, %s %s): dW is computed in f32 from both as stored, the output written in "
                "the %s dtype", nmixed, nmixed > 1 ? "s" : "", "aligned",
                first_mixed->aligned->name, lx_dtype_name(first_mixed->base->dtype), "aligned",
                lx_dtype_name(first_mixed->aligned->dtype), "aligned");
    if (st == LX_OK && nocompute)
        lx_warn("%zu tensor%s of a dtype loxstream cannot compute in copied unchanged "
                "(--copy-unmatched), the first '%s' (%s)", nocompute, nocompute > 1 ? "s" : "",
                first_nocompute->name, lx_dtype_name(first_nocompute->dtype));
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

/* See plan.h.  (2 C_j + w_j) N / (2 W) in 128 bits: 2 W N can pass 2^64
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

/* Inputs below this many bytes are hashed on one thread. */
#define HASH_TWO_THREADS_MIN (4u << 20)

void lx_plan_item_hash(const lx_plan_item *it, uint64_t h[2], int threads)
{
    const lx_tensor *a = it->aligned, *b = it->base;
    int same = b && a->file && b->file && a->file->dev == b->file->dev &&
               a->file->ino == b->file->ino && a->offset == b->offset && a->nbytes == b->nbytes;
    int two = b && !same;
    int par = two && threads > 1 && a->nbytes + b->nbytes >= HASH_TWO_THREADS_MIN;
#ifdef _OPENMP
    par = par && !omp_in_parallel();
#endif
    (void)par;
#pragma omp parallel sections num_threads(2) if (par)
    {
#pragma omp section
        h[0] = XXH3_64bits(a->data, a->nbytes);
#pragma omp section
        h[1] = two ? XXH3_64bits(b->data, b->nbytes) : 0;
    }
    if (!two)
        h[1] = b ? h[0] : 0;
}

void lx_plan_item_release(const lx_plan_item *it, int evict)
{
    lx_tensor_release(it->aligned, evict);
    if (it->base && it->action != LX_ACT_COPY)
        lx_tensor_release(it->base, evict);
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

lx_status lx_part_init(lx_part *pt, const lx_plan *p, unsigned part, unsigned nparts)
{
    memset(pt, 0, sizeof *pt);
    pt->part = part;
    pt->nparts = nparts;
    if (!(pt->bounds = calloc((size_t)nparts + 1, sizeof *pt->bounds)))
        return lx_fail(LX_EFAIL, "out of memory");
    lx_plan_partition(p, nparts, pt->bounds);
    pt->lo = pt->bounds[part - 1];
    pt->hi = pt->bounds[part];
    for (size_t i = pt->lo; i < pt->hi; i++) {
        const lx_plan_item *it = &p->items[i];
        if (it->action == LX_ACT_COPY) {
            pt->copy_bytes += it->aligned->nbytes;
        } else {
            pt->transform_bytes += it->aligned->nbytes;
            pt->ntransform++;
        }
    }
    return LX_OK;
}

void lx_part_free(lx_part *pt)
{
    free(pt->bounds);
    pt->bounds = NULL;
}

unsigned lx_part_of(const lx_part *pt, size_t i)
{
    unsigned lo = 1, hi = pt->nparts;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (i < pt->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void lx_inputs_free(lx_inputs *in)
{
    lx_plan_free(&in->plan);
    lx_filter_free(&in->filter);
    if (in->base)
        lx_checkpoint_close(in->base);
    if (in->aligned)
        lx_checkpoint_close(in->aligned);
    in->base = in->aligned = NULL;
}

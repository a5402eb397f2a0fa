/* factor_store.c - factors read back (factor.h): a factor output opened and
 * its identity read, checked against the inputs of a run, and one matrix's
 * factors handed to the engine as lx_rsvd_topk would have computed them.
 */
#include "config.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "loxstream/checkpoint.h"
#include "loxstream/factor.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/journal.h"
#include "loxstream/linalg.h"
#include "loxstream/parse.h"
#include "loxstream/xxh.h"

struct lx_factor_store {
    lx_checkpoint *ck;
    const lx_shard *sh;            /* factors.safetensors */
    const char *last;              /* the tensor whose inputs were checked last */
    int no_base;                   /* checked without base: its bytes are not compared */
};

static const char *meta(const lx_shard *sh, const char *key)
{
    for (size_t k = 0; k < sh->header.nmeta; k++)
        if (!strcmp(sh->header.meta_keys[k], key))
            return sh->header.meta_values[k];
    return NULL;
}

static int meta_int(const lx_shard *sh, const char *key, long lo, long hi, long *v)
{
    const char *s = meta(sh, key);
    char *end;
    if (!s || !*s)
        return 0;
    *v = strtol(s, &end, 10);
    return !*end && *v >= lo && *v <= hi;
}

/* DIR is a complete factor output whose factors.safetensors has the bytes
 * the run wrote, as verify checks them (journal.h): the checksum list has
 * the XXH3 the completion marker names, and the file the XXH3 listed. */
static lx_status check_complete(const char *path, const char *dir)
{
    int exists = 0;
    uint64_t id, mlist, lh, h;
    lx_listed_file *list = NULL;
    size_t n = 0;
    char h1[LX_HEX64], h2[LX_HEX64];
    lx_status st = lx_marker_read(dir, &exists, &id, &mlist);
    if (st != LX_OK || !exists)
        return st != LX_OK && st != LX_EVERIFY && st != LX_EOUTPUT
                   ? st
                   : lx_fail(LX_EINPUT, "--factors %s: not a complete factor output (%s/%s "
                             "%s): run loxstream factor to the end first", path, dir,
                             LX_COMPLETE_PATH, exists ? "is malformed" : "is missing");
    st = lx_list_read(dir, &list, &n, &lh);
    if (st == LX_EVERIFY || st == LX_EOUTPUT)
        return lx_fail_ctx(LX_EINPUT, "--factors %s: damaged", path);
    if (st != LX_OK)
        return st;
    const lx_listed_file *l = NULL;
    for (size_t i = 0; i < n && !l; i++)
        if (!strcmp(list[i].name, LX_FACTOR_FILE))
            l = &list[i];
    uint64_t want = l ? l->xxh3 : 0;
    lx_list_free(list, n);
    if (lh != mlist)
        return lx_fail(LX_EINPUT, "--factors %s: damaged: %s/%s changed since the run "
                       "completed (its XXH3 differs from the one in %s): run loxstream verify "
                       "%s", path, dir, LX_LIST_NAME, LX_COMPLETE_PATH, dir);
    if (!l)
        return lx_fail(LX_EINPUT, "--factors %s: not a factor output: %s/%s does not list %s",
                       path, dir, LX_LIST_NAME, LX_FACTOR_FILE);
    char *file = lx_path_join(dir, LX_FACTOR_FILE);
    if (!file)
        return lx_fail(LX_EFAIL, "out of memory");
    st = lx_file_xxh3(file, 0, &h);
    if (st == LX_OK && h != want)
        st = lx_fail(LX_EINPUT, "--factors %s: damaged: %s has XXH3 %s, %s/%s says %s (run "
                     "loxstream verify %s)", path, file, lx_hex64(h, h1), dir, LX_LIST_NAME,
                     lx_hex64(want, h2), dir);
    else if (st == LX_EOUTPUT)
        st = lx_fail_ctx(LX_EINPUT, "--factors %s", path);
    free(file);
    return st;
}

/* The directory of the factor output path names: path itself, or the
 * directory of path = DIR/factors.safetensors (malloc'd into *dir); else
 * LX_EINPUT saying what to pass. */
static lx_status factor_dir(const char *path, char **dir)
{
    struct stat sb;
    *dir = NULL;
    if (stat(path, &sb) != 0)
        return lx_fail_errno(LX_EINPUT, errno, "--factors %s: cannot access", path);
    if (S_ISDIR(sb.st_mode)) {
        *dir = strdup(path);
    } else {
        const char *slash = strrchr(path, '/');
        const char *base = slash ? slash + 1 : path;
        if (strcmp(base, LX_FACTOR_FILE))
            return lx_fail(LX_EINPUT, "--factors %s: not a factor output: pass the directory "
                           "of a complete loxstream factor run (or its %s)", path,
                           LX_FACTOR_FILE);
        *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path))
                     : strdup(".");
    }
    return *dir ? LX_OK : lx_fail(LX_EFAIL, "out of memory");
}

lx_status lx_factor_store_open(const char *path, lx_factor_store **out, int *rank,
                               lx_rsvd_opts *svd)
{
    *out = NULL;
    char *dir;
    lx_status st = factor_dir(path, &dir);
    if (st == LX_OK)
        st = check_complete(path, dir);
    free(dir);
    if (st != LX_OK)
        return st;
    lx_factor_store *s = calloc(1, sizeof *s);
    if (!s)
        return lx_fail(LX_EFAIL, "out of memory");
    st = lx_checkpoint_open(path, &s->ck);
    if (st != LX_OK) {
        free(s);
        return lx_fail_append(st, " (--factors)");
    }
    s->sh = s->ck->nshards == 1 ? &s->ck->shards[0] : NULL;
    const char *fmt = s->sh ? meta(s->sh, "loxstream_factors") : NULL;
    const char *kind = s->sh ? meta(s->sh, "loxstream_svd") : NULL;
    long k = 0, over = 0, maxp = 0, passes = 0;
    const char *seed = s->sh ? meta(s->sh, "loxstream_seed") : NULL;
    const char *tol = s->sh ? meta(s->sh, "loxstream_tol") : NULL;
    if (!fmt || strcmp(fmt, LX_FACTOR_FORMAT) || !kind || !seed || !tol ||
        !meta_int(s->sh, "loxstream_rank", 1, 100000, &k) ||
        !meta_int(s->sh, "loxstream_oversample", 0, 1000, &over) ||
        !meta_int(s->sh, "loxstream_max_passes", 2, 1000, &maxp) ||
        !meta_int(s->sh, "loxstream_passes", 0, 1000, &passes) ||
        lx_parse_u64(seed, "loxstream_seed", 0, UINT64_MAX, &svd->seed) != LX_OK ||
        lx_parse_double(tol, "loxstream_tol", 1e-12, 1, &svd->tol) != LX_OK) {
        st = lx_fail(LX_EINPUT, "--factors %s: not a factor file of this format (written by "
                     "loxstream factor, metadata loxstream_factors = %s)", path,
                     LX_FACTOR_FORMAT);
        lx_factor_store_close(s);
        return st;
    }
    svd->ranks = NULL; /* every rank below K was certified (factor.h) */
    svd->nranks = 0;
    svd->exact = !strcmp(kind, "exact");
    svd->oversample = (int)over;
    svd->max_passes = (int)maxp;
    svd->passes = (int)passes;
    *rank = (int)k;
    *out = s;
    return LX_OK;
}

const lx_shard *lx_factor_store_file(const lx_factor_store *s)
{
    return s->sh;
}

const lx_checkpoint *lx_factor_store_checkpoint(const lx_factor_store *s)
{
    return s->ck;
}

void lx_factor_store_close(lx_factor_store *s)
{
    if (!s)
        return;
    lx_checkpoint_close(s->ck);
    free(s);
}

lx_status lx_factor_store_check(lx_factor_store *s, const lx_checkpoint *base,
                                const lx_checkpoint *aligned)
{
    const struct { const char *role; const lx_checkpoint *ck; } ins[] = {
        {"base", base}, {"aligned", aligned}};
    size_t given = 0, recorded = 0;
    char key[4200], want[64], h[LX_HEX64], q[LX_NAME_QUOTE];
    s->no_base = !base;
    const char *prefix = base ? "loxstream_input " : "loxstream_input aligned/";
    for (size_t k = 0; k < s->sh->header.nmeta; k++)
        recorded += !strncmp(s->sh->header.meta_keys[k], prefix, strlen(prefix));
    for (int r = base ? 0 : 1; r < 2; r++) {
        for (size_t i = 0; i < ins[r].ck->nshards; i++, given++) {
            const lx_shard *sh = &ins[r].ck->shards[i];
            snprintf(key, sizeof key, "loxstream_input %s/%s", ins[r].role,
                     lx_st_escape_name(sh->name, q, sizeof q));
            snprintf(want, sizeof want, "%" PRIu64 " %s", sh->size, lx_hex64(sh->header_xxh3, h));
            const char *v = meta(s->sh, key);
            if (!v || strcmp(v, want))
                return lx_fail(LX_EINPUT, "--factors %s: made from other inputs: %s shard %s "
                               "(%" PRIu64 " bytes, header XXH3 %s) %s", s->sh->path,
                               ins[r].role, sh->path, sh->size, h, v ? "differs from the one recorded"
                                                    : "is not among the recorded inputs");
        }
    }
    if (given != recorded)
        return lx_fail(LX_EINPUT, "--factors %s: made from other inputs: %zu input shards "
                       "recorded, %zu given", s->sh->path, recorded, given);
    return LX_OK;
}

/* Tensor NAME + suffix of the store, or NULL. */
static const lx_tensor *named(const lx_factor_store *s, const lx_plan_item *it,
                              const char *suffix)
{
    size_t len = strlen(it->aligned->name) + strlen(suffix) + 1;
    char *name = malloc(len);
    if (!name)
        return NULL;
    snprintf(name, len, "%s%s", it->aligned->name, suffix);
    const lx_tensor *t = lx_checkpoint_find(s->ck, name);
    free(name);
    return t;
}

/* named() of dtype dt and shape [..., d1, d2] (d2 0: [..., d1]; stacked 0:
 * without the leading dimensions of it); NULL after a failure set in *st. */
static const lx_tensor *find(const lx_factor_store *s, const lx_plan_item *it,
                             const char *suffix, lx_dtype dt, int stacked, uint64_t d1,
                             uint64_t d2, lx_status *st)
{
    const lx_tensor *a = it->aligned, *t = named(s, it, suffix);
    int lead = stacked ? a->ndim - 2 : 0, nd = lead + (d2 ? 2 : 1);
    int ok = t && t->dtype == dt && t->ndim == nd;
    for (int d = 0; ok && d < lead; d++)
        ok = t->shape[d] == a->shape[d];
    ok = ok && t->shape[lead] == d1 && (!d2 || t->shape[lead + 1] == d2);
    if (!ok) {
        char q[LX_NAME_QUOTE];
        *st = lx_fail(LX_EINPUT, "--factors %s: %s '%s%s' for tensor '%s' (%" PRIu64 " x %"
                      PRIu64 "): %s", s->sh->path, t ? "tensor" : "no tensor",
                      lx_st_escape_name(a->name, q, sizeof q), suffix, a->name, it->m, it->n,
                      t ? "of another dtype or shape" : "the factors were made with other "
                      "--include/--exclude, or for another model");
    }
    return ok ? t : NULL;
}

/* The inputs of it are the bytes the factors were made from. */
static lx_status check_inputs(lx_factor_store *s, const lx_plan_item *it)
{
    lx_status st = LX_OK;
    const lx_tensor *t = find(s, it, ".lox_inputs", LX_DT_U64, 0, 2, 0, &st);
    if (!t)
        return st;
    uint64_t h[2], now[2];
    memcpy(h, t->data, sizeof h);
    lx_plan_item_hash(it, now, lx_linalg_threads()); /* without --base: base is aligned, hashed once */
    if (h[0] != now[0] || (!s->no_base && h[1] != now[1]))
        return lx_fail(LX_EINPUT, "--factors %s: made from other inputs: the bytes of tensor "
                       "'%s' (%s%s) are not those the factors were made from",
                       s->sh->path, it->aligned->name, it->role ? it->role : "aligned",
                       s->no_base ? "" : " or base");
    s->last = it->aligned->name;
    return LX_OK;
}

/* rows x k floats, columns [0, kk) of each row, from src (k per row). */
static float *columns(const unsigned char *src, size_t rows, size_t k, size_t kk)
{
    float *d = malloc((rows * kk > 0 ? rows * kk : 1) * sizeof *d);
    for (size_t i = 0; d && i < rows; i++)
        memcpy(d + i * kk, src + i * k * sizeof(float), kk * sizeof(float));
    return d;
}

lx_status lx_factor_store_load(lx_factor_store *s, const lx_plan_item *it, uint64_t b, int rank,
                               double tol, lx_factors *f)
{
    memset(f, 0, sizeof *f);
    lx_status st = LX_OK;
    /* k is lox_S's last dimension (find checks it against the others) */
    const lx_tensor *any = named(s, it, ".lox_S");
    uint64_t k = any && any->ndim >= 1 ? any->shape[any->ndim - 1] : 0;
    const lx_tensor *tS = find(s, it, ".lox_S", LX_DT_F32, 1, k, 0, &st);
    const lx_tensor *tU = tS ? find(s, it, ".lox_U", LX_DT_F32, 1, it->m, k, &st) : NULL;
    const lx_tensor *tV = tU ? find(s, it, ".lox_V", LX_DT_F32, 1, it->n, k, &st) : NULL;
    const lx_tensor *tI = tV ? find(s, it, ".lox_info", LX_DT_F64, 1, LX_FACTOR_INFO_AT(k), 0,
                                    &st)
                             : NULL;
    if (!tI)
        return st;
    if ((uint64_t)rank > k)
        return lx_fail(LX_EINPUT, "--factors %s: tensor '%s': rank %d exceeds the rank of the "
                       "stored factors (%" PRIu64 ")", s->sh->path, it->aligned->name, rank, k);
    if ((b == 0 || !s->last || strcmp(s->last, it->aligned->name)) &&
        (st = check_inputs(s, it)) != LX_OK)
        return st;
    size_t ni = LX_FACTOR_INFO_AT(k);
    double *info = malloc(ni * sizeof *info);
    if (!info)
        return lx_fail(LX_EFAIL, "out of memory");
    memcpy(info, tI->data + b * ni * sizeof *info, ni * sizeof *info);
    lx_factors full = {.m = it->m, .n = it->n, .k = (int)k, .err_est = info[0], .gap = info[1],
                       .frob2 = info[2], .passes = (int)info[3], .exact = info[4] != 0,
                       .converged = info[5] != 0};
    /* the bounds at every rank, unless the factors had none (NaN) */
    if (!isnan(info[LX_FACTOR_INFO])) {
        full.err_at = info + LX_FACTOR_INFO;
        full.gap_at = full.err_at + k + 1;
    }
    full.S = columns(tS->data + b * k * sizeof(float), 1, k, k);
    if (!full.S) {
        free(info);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    double err, gap;
    int conv;
    lx_engine_prefix(&full, rank, tol, &err, &gap, &conv);
    f->m = it->m;
    f->n = it->n;
    f->k = f->l = rank;
    f->passes = full.passes;
    f->exact = full.exact;
    f->frob2 = full.frob2;
    f->err_est = err;
    f->gap = gap;
    f->converged = conv;
    /* err_at[0..rank] and gap_at[0..rank] in one block, as rsvd.h keeps them */
    if (full.err_at && (f->err_at = malloc(2 * ((size_t)rank + 1) * sizeof *f->err_at))) {
        f->gap_at = f->err_at + rank + 1;
        memcpy(f->err_at, full.err_at, ((size_t)rank + 1) * sizeof *f->err_at);
        memcpy(f->gap_at, full.gap_at, ((size_t)rank + 1) * sizeof *f->gap_at);
    }
    int lost = full.err_at && !f->err_at;
    free(info);
    f->S = columns((const unsigned char *)full.S, 1, k, (size_t)rank);
    free(full.S);
    f->U = columns(tU->data + b * it->m * k * sizeof(float), it->m, k, (size_t)rank);
    f->V = columns(tV->data + b * it->n * k * sizeof(float), it->n, k, (size_t)rank);
    f->Vt = malloc((it->n * (size_t)rank > 0 ? it->n * (size_t)rank : 1) * sizeof(float));
    if (!f->S || !f->U || !f->V || !f->Vt || lost) {
        lx_factors_free(f);
        return lx_fail(LX_EFAIL, "out of memory reading the factors of tensor '%s'",
                       it->aligned->name);
    }
    for (size_t t = 0; t < (size_t)rank; t++)
        for (size_t j = 0; j < it->n; j++)
            f->Vt[t * it->n + j] = f->V[j * (size_t)rank + t];
    return LX_OK;
}

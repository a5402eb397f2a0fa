/* lora.c - the LoX update as a PEFT LoRA adapter (see lora.h).
 *
 * Data flow per module: the engine's row source over dW = aligned - base
 * (engine.c: f32, checked finite) -> the engine's factorisation, with the
 * per-matrix seed every job uses ->
 * A and B (sqrt(S) on each side, zero-padded to r) in f32 -> rounded to the
 * adapter's dtype and written at their final offsets in
 * adapter_model.safetensors.partial.  Every entry of the file is known from
 * the plan, so its header is written first and one module's factors are in
 * memory at a time.  Completion: sync, close, rename, adapter_config.json
 * and README.md (atomic, lora_card.c), sync of the directory; a failure on
 * the way removes what was written, so that no final name is left behind.
 * Which modules and in which orientation: the 2-D '.weight' tensors of the
 * plan, without the embeddings and heads under --no-embeddings; factors of
 * dW^T for embeddings and for weights stored [in, out] (Conv1D, found by
 * the aligned model's config.json or --fan-in-fan-out).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "loxstream/plan.h"
#include "loxstream/journal.h"
#include "loxstream/linalg.h"
#include "loxstream/lanes.h"
#include "loxstream/lora.h"
#include "loxstream/factor.h"
#include "loxstream/outdir.h"
#include "loxstream/prefetch.h"
#include "loxstream/safetensors.h"
#include "loxstream/fs.h"
#include "loxstream/hfcache.h"
#include "loxstream/parse.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"
#include "lora_int.h"

#define WEIGHT_SUFFIX ".weight"

typedef struct module {
    const lx_plan_item *item;
    int embedding;                 /* lora_embedding_A/B instead of lora_A/B */
    int fifo;                      /* stored [in, out] (Conv1D): fan_in_fan_out */
    int k;                         /* rank of the factors: min(r, m, n) */
    lx_dtype dtype;                /* of the adapter tensors */
    char *key_a, *key_b;           /* tensor names in the adapter */
    char *leaf;                    /* last component of the module name */
    size_t ea, eb;                 /* entry indices of A and B */
} module;

typedef struct lora_job {
    const lx_lora_opts *o;
    lx_inputs in;                  /* checkpoints, filters, plan (engine.h) */
    regex_t emb, head;
    int has_emb, has_head;
    int conv1d_model;              /* config.json's model_type uses Conv1D */
    char *model_type;
    module *mods;
    size_t nmods;
    lx_st_entry *entries;
    lx_st_layout layout;
    int has_layout;
    lx_st_out out;
    int out_open;
    char *partial_path, *final_path, *config_path, *card_path;
    lx_adapter_desc desc;          /* what the config, card and metadata say */
    lx_adapter_meta meta;
    char *base_model;              /* malloc'd default of base_model_name_or_path */
    char *fifo_source;
    int created_dir, partial_made, final_made;
    int dir_fd;                    /* the output directory, flock'ed for the run; -1 */
    size_t buf_elems;              /* r * max(m, n) over the modules */
    float *fbuf;
    unsigned char *obuf;
    lx_factor_stats svd;           /* the modules' factorisations */
    lx_budget budget;              /* read-ahead within the memory limit */
    uint64_t need_max;             /* the largest need (check_memory) */
    lx_lanes *lanes;               /* modules factored ahead (NULL: in turn) */
} lora_job;

void lx_lora_opts_default(lx_lora_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    o->alpha = 1.25;
    lx_engine_opts_default(&o->stream);
}

lx_status lx_lora_parse_dtype(const char *s, lx_dtype *out)
{
    static const struct { const char *name; lx_dtype dt; } known[] = {
        {"bf16", LX_DT_BF16}, {"f16", LX_DT_F16}, {"f32", LX_DT_F32}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcasecmp(s, known[i].name)) {
            *out = known[i].dt;
            return LX_OK;
        }
    char q[LX_NAME_QUOTE];
    return lx_fail(LX_EUSAGE, "--dtype: unknown type '%s' (bf16, f16 or f32)",
                   lx_st_escape_name(s, q, sizeof q));
}

static size_t dtype_size(lx_dtype dt)
{
    return lx_dtype_bits(dt) / 8;
}

/* ---- which tensors become modules --------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The aligned model's config.json (beside its shards): does its model_type
 * store linear layers as transformers' Conv1D?  No file: no. */
static lx_status read_model_type(lora_job *J)
{
    static const char *const conv1d[] = {"gpt2", "openai-gpt", "imagegpt", "decision_transformer"};
    if (J->o->fan_in_fan_out != LX_FIFO_AUTO)
        return LX_OK;
    char *path = lx_path_join(J->in.aligned->dir, "config.json");
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    int fd = -1;
    struct stat sb;
    lx_status st = lx_open_input_regular(path, O_RDONLY, LX_EINPUT, &fd, &sb);
    char *text = NULL;
    size_t len = 0;
    if (st == LX_OK && fd >= 0) {
        st = lx_read_fd_text(fd, sb.st_size < (1 << 24) ? (size_t)sb.st_size : (1 << 24), path,
                             &text, &len);
        close(fd);
    }
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (st == LX_OK && text && !mt)
        lx_warn("%s: no model_type read (not a JSON object with a string model_type): linear "
                "weights are taken as [out, in]; give --fan-in-fan-out if they are stored [in, out]",
                path);
    if (mt) {
        for (size_t i = 0; i < sizeof conv1d / sizeof conv1d[0]; i++)
            J->conv1d_model |= !strcmp(mt, conv1d[i]);
        if (!(J->model_type = strdup(mt)))
            st = lx_fail(LX_EFAIL, "out of memory");
    }
    json_decref(root);
    free(text);
    free(path);
    return st;
}

/* Stored [in, out] as transformers' Conv1D (GPT-2's attention and MLP). */
static int module_fifo(const lora_job *J, const module *md)
{
    static const char *const leaves[] = {"c_attn", "q_attn", "c_proj", "c_fc"};
    if (md->embedding || J->o->fan_in_fan_out == LX_FIFO_NEVER)
        return 0;
    if (J->o->fan_in_fan_out == LX_FIFO_ALL)
        return 1;
    for (size_t i = 0; J->conv1d_model && i < sizeof leaves / sizeof leaves[0]; i++)
        if (!strcmp(md->leaf, leaves[i]))
            return 1;
    return 0;
}

/* An embedding table or an output head (what vLLM takes only from models
 * that declare embedding_modules). */
static int is_embedding_or_head(const lora_job *J, const char *name)
{
    return (J->has_emb && regexec(&J->emb, name, 0, NULL, 0) == 0) ||
           (J->has_head && regexec(&J->head, name, 0, NULL, 0) == 0);
}

static lx_status select_modules(lora_job *J)
{
    const lx_lora_opts *o = J->o;
    J->mods = calloc(J->in.plan.n ? J->in.plan.n : 1, sizeof *J->mods);
    if (!J->mods)
        return lx_fail(LX_EFAIL, "out of memory");
    size_t nlow = 0;
    for (size_t i = 0; i < J->in.plan.n; i++) {
        const lx_plan_item *it = &J->in.plan.items[i];
        if (it->action != LX_ACT_LOWRANK)
            continue;
        nlow++;
        const lx_tensor *t = it->aligned;
        char q[LX_NAME_QUOTE];
        lx_st_escape_name(t->name, q, sizeof q);
        if (t->ndim != 2) {
            lx_warn("tensor '%s' has %d dimensions (%" PRIu64 " matrices of %" PRIu64 "x%" PRIu64
                    "): not exported, a LoRA adapter holds 2-D weights only",
                    q, t->ndim, it->batch, it->m, it->n);
            continue;
        }
        size_t len = strlen(t->name), wl = strlen(WEIGHT_SUFFIX);
        if (!ends_with(t->name, WEIGHT_SUFFIX) || len == wl) {
            lx_warn("tensor '%s': its name does not end in '%s' after a module name: not "
                    "exported, PEFT adapts a module through its .weight",
                    q, WEIGHT_SUFFIX);
            continue;
        }
        if (o->no_embeddings && is_embedding_or_head(J, t->name)) {
            J->desc.nskipped++;
            continue;
        }
        module *md = &J->mods[J->nmods++];
        md->item = it;
        md->embedding = J->has_emb && regexec(&J->emb, t->name, 0, NULL, 0) == 0;
        md->k = lx_engine_rank(it, o->rank);
        if (md->k < o->rank)
            lx_warn("tensor '%s': rank %d exceeds min(%" PRIu64 ", %" PRIu64 "): factors of rank "
                    "%d, padded with zeros to r = %d", q, o->rank, it->m, it->n, md->k, o->rank);
        if (o->has_dtype)
            md->dtype = o->dtype;
        else if (t->dtype == LX_DT_BF16 || t->dtype == LX_DT_F16 || t->dtype == LX_DT_F32)
            md->dtype = t->dtype;
        else
            md->dtype = LX_DT_F32;
        const char *sa = md->embedding ? ".lora_embedding_A" : ".lora_A.weight";
        const char *sb = md->embedding ? ".lora_embedding_B" : ".lora_B.weight";
        int ml = (int)(len - wl);
        if (asprintf(&md->key_a, "%s%.*s%s", LX_LORA_KEY_PREFIX, ml, t->name, sa) < 0)
            md->key_a = NULL;
        if (asprintf(&md->key_b, "%s%.*s%s", LX_LORA_KEY_PREFIX, ml, t->name, sb) < 0)
            md->key_b = NULL;
        const char *dot = memrchr(t->name, '.', (size_t)ml);
        md->leaf = dot ? strndup(dot + 1, (size_t)(t->name + ml - dot - 1))
                       : strndup(t->name, (size_t)ml);
        if (!md->key_a || !md->key_b || !md->leaf)
            return lx_fail(LX_EFAIL, "out of memory");
        md->fifo = module_fifo(J, md);
        J->desc.nfifo += md->fifo;
        J->desc.nemb += is_embedding_or_head(J, t->name);
        size_t big = it->m > it->n ? (size_t)it->m : (size_t)it->n;
        if ((size_t)o->rank * big > J->buf_elems)
            J->buf_elems = (size_t)o->rank * big;
    }
    if (J->nmods > 0)
        return LX_OK;
    if (o->stream.include || o->stream.exclude)
        return lx_fail(LX_EUSAGE, "no tensor to export: none of the %zu tensors of %s is a 2-D "
                       "float '.weight' matrix selected by --include/--exclude (%zu transformable "
                       "tensors before the 2-D and name rules)", J->in.plan.n, o->stream.aligned_path, nlow);
    return lx_fail(LX_EINPUT, "no tensor to export: none of the %zu tensors of %s is a 2-D float "
                   "'.weight' matrix present in both models", J->in.plan.n, o->stream.aligned_path);
}

/* ---- memory ------------------------------------------------------------- */

static lx_status check_memory(lora_job *J)
{
    const lx_lora_opts *o = J->o;
    uint64_t worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < J->nmods; i++) {
        const module *md = &J->mods[i];
        size_t big = md->item->m > md->item->n ? (size_t)md->item->m : (size_t)md->item->n;
        /* the rsvd's buffers, then one factor in f32 and in the adapter's dtype
         * (both sized for the widest module, allocated once) */
        uint64_t need = lx_engine_svd_bytes(&o->stream, md->item, md->k) +
                        (uint64_t)o->rank * big * (sizeof(float) + 4);
        if (need > worst) {
            worst = need;
            worst_name = md->item->aligned->name;
        }
    }
    J->need_max = worst;
    return lx_engine_check_memory(&o->stream, &J->in.plan, worst, worst_name, &J->budget);
}

/* ---- the output directory ------------------------------------------------ */

/* New (created) or an empty directory, locked (flock) for the run so that
 * a second lora into it is refused; a .partial adapter there is a killed
 * run's (no lora holds the lock): removed.  Anything else is refused. */
/* A checkpoint given as a directory: the adapter never goes inside it (as
 * apply's output); one given as a file leaves its directory to the user
 * (base.safetensors, aligned.safetensors and the adapter side by side). */
static const lx_checkpoint *as_dir(const lx_checkpoint *ck)
{
    struct stat sb;
    return ck && stat(ck->path, &sb) == 0 && S_ISDIR(sb.st_mode) ? ck : NULL;
}

static lx_status prepare_dir(lora_job *J)
{
    const char *out = J->o->output_path;
    /* never into an input directory, nor the factor store's */
    const lx_checkpoint *ins[3] = {as_dir(J->in.base), as_dir(J->in.aligned),
                                   J->o->stream.factors
                                       ? lx_factor_store_checkpoint(J->o->stream.factors)
                                       : NULL};
    char resolved[PATH_MAX];
    size_t existing;
    lx_status ost = lx_output_outside(out, ins, 3, resolved, &existing);
    if (ost != LX_OK)
        return ost;
    struct stat sb;
    if (stat(out, &sb) != 0) {
        if (errno != ENOENT)
            return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot access the output directory", out);
        lx_status st = lx_mkdir_p(out);
        if (st != LX_OK)
            return st;
        J->created_dir = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return lx_fail(LX_EOUTPUT, "%s: output exists and is not a directory", out);
    }
    int locked = 0;
    J->dir_fd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (J->dir_fd >= 0 && flock(J->dir_fd, LOCK_EX | LOCK_NB) == 0)
        locked = 1;
    else if (J->dir_fd >= 0 && errno == EWOULDBLOCK)
        return lx_fail(LX_EOUTPUT, "%s: another loxstream lora is writing into this directory", out);
    /* (a file system without flock: no lock, and no leftover is removed) */
    DIR *d = opendir(out);
    if (!d)
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot open the output directory", out);
    struct dirent *de;
    lx_status st = LX_OK;
    int leftover = 0;
    const char *partial = LX_LORA_ADAPTER_NAME LX_PARTIAL_SUFFIX;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strcmp(de->d_name, partial) && locked) {
            leftover = 1;
            continue;
        }
        char q[LX_NAME_QUOTE];
        if (!strcmp(de->d_name, partial))
            st = lx_fail(LX_EOUTPUT, "%s: holds %s, left by an interrupted loxstream lora (or one "
                         "still running): if none is running, remove it (rm '%s') and run again",
                         out, partial, J->partial_path);
        else
            st = lx_fail(LX_EOUTPUT, "%s: output directory is not empty (it holds '%s'); loxstream "
                         "lora writes only into a new or empty directory",
                         out, lx_st_escape_name(de->d_name, q, sizeof q));
        break;
    }
    closedir(d);
    if (st == LX_OK && leftover) {
        lx_warn("%s: left by an interrupted run: removed", J->partial_path);
        st = lx_unlink_if(J->partial_path);
    }
    return st;
}

/* Free space for the adapter before anything is made, as apply checks. */
static lx_status check_space(lora_job *J)
{
    char resolved[PATH_MAX];
    size_t existing;
    lx_status st = lx_outdir_resolve(J->o->output_path, resolved, &existing);
    uint64_t need = J->layout.file_size + (64u << 10); /* the config, directory blocks */
    return st == LX_OK ? lx_outdir_check_space(J->o->output_path, resolved, existing, need, need)
                       : st;
}

/* ---- the adapter file ---------------------------------------------------- */

static lx_status build_layout(lora_job *J)
{
    J->entries = calloc(2 * J->nmods, sizeof *J->entries);
    if (!J->entries)
        return lx_fail(LX_EFAIL, "out of memory");
    uint64_t r = (uint64_t)J->o->rank;
    size_t e = 0;
    for (size_t i = 0; i < J->nmods; i++) {
        module *md = &J->mods[i];
        uint64_t m = md->item->m, n = md->item->n;
        /* linear [out, in]: A [r, in], B [out, r]; embedding [vocab, dim]:
         * A [r, vocab], B [dim, r]; Conv1D [in, out]: A [r, in], B [out, r] */
        int tr = md->embedding || md->fifo;
        lx_st_entry *a = &J->entries[e], *b = &J->entries[e + 1];
        md->ea = e++;
        md->eb = e++;
        a->name = md->key_a;
        b->name = md->key_b;
        a->dtype = b->dtype = md->dtype;
        a->ndim = b->ndim = 2;
        a->shape[0] = r;
        a->shape[1] = tr ? m : n;
        b->shape[0] = tr ? n : m;
        b->shape[1] = r;
    }
    lx_status st = lx_st_layout_build(&J->layout, J->entries, e, J->meta.keys, J->meta.vals,
                                      J->meta.n);
    if (st == LX_OK)
        J->has_layout = 1;
    return st;
}

/* out[i][p] = s_i X[p][i] (i < k), 0 (k <= i < r): r rows of len. */
static void factor_rows(const float *X, size_t len, int k, int r, const float *s, float *out)
{
    for (int i = 0; i < r; i++) {
        float *row = out + (size_t)i * len;
        if (i >= k) {
            memset(row, 0, len * sizeof *row);
            continue;
        }
        for (size_t p = 0; p < len; p++)
            row[p] = s[i] * X[p * (size_t)k + (size_t)i];
    }
}

/* out[p][i] = X[p][i] s_i (i < k), 0 (k <= i < r): len rows of r. */
static void factor_cols(const float *X, size_t len, int k, int r, const float *s, float *out)
{
    for (size_t p = 0; p < len; p++) {
        float *row = out + p * (size_t)r;
        for (int i = 0; i < r; i++)
            row[i] = i < k ? X[p * (size_t)k + (size_t)i] * s[i] : 0.0f;
    }
}

/* Round entry idx's factor (fbuf, f32) to the adapter's dtype and write it;
 * a value beyond the dtype's range (Inf after rounding) is refused. */
static lx_status write_factor(lora_job *J, const module *md, size_t idx, size_t nelem)
{
    lx_from_f32(md->dtype, J->fbuf, J->obuf, nelem);
    size_t bad = lx_find_nonfinite(md->dtype, J->obuf, nelem);
    if (bad < nelem) {
        const lx_st_entry *e = &J->entries[idx];
        return lx_fail(LX_EINPUT, "tensor '%s': row %zu, column %zu: %g overflows %s (largest "
                       "finite value %.9g): use --dtype f32", e->name, bad / e->shape[1],
                       bad % e->shape[1], J->fbuf[bad], lx_dtype_name(md->dtype),
                       lx_dtype_max(md->dtype));
    }
    return lx_st_out_write(&J->out, idx, 0, J->obuf, nelem * dtype_size(md->dtype));
}

static lx_status run_module(lora_job *J, size_t i)
{
    const lx_lora_opts *o = J->o;
    const module *md = &J->mods[i];
    const lx_plan_item *it = md->item;
    size_t m = (size_t)it->m, n = (size_t)it->n;
    lx_factors f;
    double t0 = lx_now();
    lx_status st = lx_lanes_get(J->lanes, &o->stream, it, 0, md->k, &f, &J->svd);
    if (st != LX_OK)
        return st;
    lx_test_pause("factored", it->aligned->name);
    float *s = malloc((f.k > 0 ? (size_t)f.k : 1) * sizeof *s);
    if (!s) {
        lx_factors_free(&f);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (int t = 0; t < f.k; t++)
        s[t] = f.S[t] > 0 ? (float)sqrt((double)f.S[t]) : 0.0f;
    int r = o->rank;
    /* linear: A = s V^T (r x n), B = U s (m x r);
     * embedding and Conv1D (dW^T = V S U^T): A = s U^T (r x m), B = V s (n x r) */
    int tr = md->embedding || md->fifo;
    const float *xa = tr ? f.U : f.V, *xb = tr ? f.V : f.U;
    size_t la = tr ? m : n, lb = tr ? n : m;
    factor_rows(xa, la, f.k, r, s, J->fbuf);
    st = write_factor(J, md, md->ea, (size_t)r * la);
    if (st == LX_OK) {
        factor_cols(xb, lb, f.k, r, s, J->fbuf);
        st = write_factor(J, md, md->eb, lb * (size_t)r);
    }
    if (f.err_est > J->desc.worst_err) {
        J->desc.worst_err = f.err_est;
        J->desc.worst_name = it->aligned->name;
    }
    if (st == LX_OK && !o->stream.quiet) {
        char q[LX_NAME_QUOTE];
        lx_say(&o->stream.report, "lora: %zu/%zu %s (%zux%zu, %d pass%s%s, %.2f s)", i + 1, J->nmods,
               lx_st_escape_name(it->aligned->name, q, sizeof q), m, n, f.passes,
               f.passes == 1 ? "" : "es", f.converged ? "" : ", not converged", lx_now() - t0);
    }
    free(s);
    lx_factors_free(&f);
    return st;
}

/* ---- the job ------------------------------------------------------------- */

static lx_status check_utf8(const char *s, const char *what)
{
    json_t *v = json_string(s);
    if (!v) {
        char q[LX_NAME_QUOTE];
        return lx_fail(LX_EUSAGE, "%s '%s' is not valid UTF-8: it cannot be recorded in %s",
                       what, lx_st_escape_name(s, q, sizeof q), LX_LORA_CONFIG_NAME);
    }
    json_decref(v);
    return LX_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* What the adapter will say about itself (lora_int.h): target_modules,
 * base_model_name_or_path and revision, why some modules are [in, out]. */
static lx_status describe(lora_job *J)
{
    const lx_lora_opts *o = J->o;
    lx_adapter_desc *d = &J->desc;
    d->o = o;
    d->aligned = J->in.aligned;
    d->nmods = J->nmods;
    d->leaves = malloc(J->nmods * sizeof *d->leaves);
    if (!d->leaves)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; i < J->nmods; i++)
        d->leaves[i] = J->mods[i].leaf;
    qsort(d->leaves, J->nmods, sizeof *d->leaves, cmp_str);
    for (size_t i = 0; i < J->nmods; i++)
        if (i == 0 || strcmp(d->leaves[i], d->leaves[d->nleaves - 1]))
            d->leaves[d->nleaves++] = d->leaves[i];
    /* the model the adapter is applied to: the aligned one */
    const struct lx_hf_model *hf = o->stream.aligned_model;
    if (o->base_model_name) {
        d->base_model = o->base_model_name;
    } else if (hf) {
        d->base_model = hf->id;
        d->revision = hf->commit;
    } else {
        if (!(J->base_model = realpath(o->stream.aligned_path, NULL)))
            return lx_fail_errno(LX_EINPUT, errno, "--aligned: %s: cannot resolve the absolute "
                                 "path (for base_model_name_or_path; --base-model-name gives one)",
                                 o->stream.aligned_path);
        d->base_model = J->base_model;
    }
    lx_status st = check_utf8(d->base_model, "base_model_name_or_path");
    if (st != LX_OK)
        return st;
    d->fifo_source = o->fan_in_fan_out == LX_FIFO_ALL ? "--fan-in-fan-out"
                                                      : "config.json model_type";
    if (o->fan_in_fan_out == LX_FIFO_AUTO && J->model_type &&
        asprintf(&J->fifo_source, "config.json model_type %s: transformers' Conv1D", J->model_type) >= 0)
        d->fifo_source = J->fifo_source;
    return lx_adapter_meta_build(d, &J->meta);
}

/* vLLM takes embedding tables and heads only from the models that declare
 * them (embedding_modules): said once when the adapter holds any. */
static void note_embeddings(const lora_job *J)
{
    const lx_lora_opts *o = J->o;
    if (o->stream.quiet || J->desc.nemb == 0)
        return;
    lx_say(&o->stream.report, "lora: note: %zu of the %zu modules are embedding tables or output "
           "heads; vLLM loads those only for models that declare them (embedding_modules: Llama "
           "does, Qwen2 does not); --no-embeddings exports the linear layers only",
           J->desc.nemb, J->nmods);
}

static lx_status run(lora_job *J)
{
    const lx_lora_opts *o = J->o;
    if (o->rank < 1)
        return lx_fail(LX_EUSAGE, "lora: --rank must be at least 1 (a LoRA adapter has a rank; "
                       "full-rank extrapolation is apply --rank 0)");
    if (o->has_dtype && o->dtype != LX_DT_BF16 && o->dtype != LX_DT_F16 && o->dtype != LX_DT_F32)
        return lx_fail(LX_EUSAGE, "--dtype: %s is not an adapter dtype (bf16, f16 or f32)",
                       lx_dtype_name(o->dtype));
    lx_status st = check_utf8(o->stream.aligned_path, "--aligned");
    if (st == LX_OK)
        st = check_utf8(o->stream.base_path, "--base");
    if (st == LX_OK)
        st = lx_engine_filter(&J->in, &o->stream);
    if (st != LX_OK)
        return st;
    const char *emb = o->embedding ? o->embedding : LX_LORA_EMBEDDING_DEFAULT;
    int rc = regcomp(&J->emb, emb, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &J->emb, msg, sizeof msg);
        return lx_fail(LX_EUSAGE, "--embedding '%s': invalid regular expression: %s", emb, msg);
    }
    J->has_emb = 1;
    if (regcomp(&J->head, LX_LORA_HEAD_REGEX, REG_EXTENDED | REG_NOSUB) != 0)
        return lx_fail(LX_EFAIL, "out of memory");
    J->has_head = 1;
    if ((st = lx_engine_open(&J->in, &o->stream, o->rank, 0)) != LX_OK ||
        (st = read_model_type(J)) != LX_OK || (st = select_modules(J)) != LX_OK ||
        (st = describe(J)) != LX_OK || (st = check_memory(J)) != LX_OK ||
        (st = build_layout(J)) != LX_OK)
        return st;
    note_embeddings(J);
    J->final_path = lx_path_join(o->output_path, LX_LORA_ADAPTER_NAME);
    J->config_path = lx_path_join(o->output_path, LX_LORA_CONFIG_NAME);
    J->card_path = lx_path_join(o->output_path, LX_LORA_CARD_NAME);
    if (J->final_path && asprintf(&J->partial_path, "%s" LX_PARTIAL_SUFFIX, J->final_path) < 0)
        J->partial_path = NULL;
    /* fbuf only feeds lx_from_f32: plain memory */
    J->fbuf = malloc(J->buf_elems * sizeof *J->fbuf);
    J->obuf = malloc(J->buf_elems * sizeof(float));
    if (!J->final_path || !J->config_path || !J->card_path || !J->partial_path || !J->fbuf ||
        !J->obuf)
        return lx_fail(LX_EFAIL, "out of memory");
    if ((st = lx_linalg_init(o->stream.threads)) != LX_OK || (st = check_space(J)) != LX_OK ||
        (st = prepare_dir(J)) != LX_OK)
        return st;
    /* claimed exclusively, so that two runs into one empty directory cannot
     * write into the same file (the second is refused, exit 5) */
    int fd = open(J->partial_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno == EEXIST)
        return lx_fail(LX_EOUTPUT, "%s: created meanwhile by another process (is another "
                       "loxstream lora writing into %s?)", J->partial_path, o->output_path);
    if (fd < 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot create", J->partial_path);
    close(fd);
    J->partial_made = 1; /* from here on, a failure removes it, and so does a signal */
    lx_remove_on_interrupt(J->partial_path);
    if ((st = lx_st_out_open(&J->out, J->partial_path, &J->layout, 0)) != LX_OK)
        return st;
    J->out_open = 1;
    double t0 = lx_now();
    lx_read_ahead ra;
    lx_read_ahead_start(&ra, &J->budget);
    /* the modules factored on two lanes where the engine's policy allows
     * (lanes.h): the same bits */
    lx_lane_item *items = malloc((J->nmods + 1) * sizeof *items);
    for (size_t i = 0; items && i < J->nmods; i++)
        items[i] = (lx_lane_item){J->mods[i].item, J->mods[i].k};
    if (items)
        J->lanes = lx_lanes_open(&o->stream, &J->budget, J->need_max, items, J->nmods, NULL, NULL);
    free(items);
    for (size_t i = 0; i < J->nmods && st == LX_OK; i++) {
        const lx_plan_item *it = J->mods[i].item;
        /* this module's inputs and the next ones' */
        const lx_plan_item *next[LX_PREFETCH_MAX / 2];
        size_t nn = 0;
        for (size_t j = i; j < J->nmods && nn < LX_PREFETCH_MAX / 2; j++)
            next[nn++] = J->mods[j].item;
        lx_read_ahead_set(&ra, next, nn);
        st = run_module(J, i);
        lx_read_ahead_done(&ra, it);
    }
    lx_lanes_stop(J->lanes);
    J->lanes = NULL;
    lx_read_ahead_stop(&ra);
    if (st == LX_OK)
        st = lx_st_out_sync(&J->out);
    if (st != LX_OK)
        return st; /* undo_output closes and removes the file */
    J->out_open = 0;
    if ((st = lx_st_out_close(&J->out)) != LX_OK)
        return st;
    if (rename(J->partial_path, J->final_path) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", J->partial_path,
                             J->final_path);
    J->partial_made = 0;
    lx_remove_on_interrupt(NULL);
    J->final_made = 1;
    J->desc.unconverged = J->svd.unconverged;
    if ((st = lx_adapter_write_config(&J->desc, J->config_path)) != LX_OK ||
        (st = lx_adapter_write_card(&J->desc, J->card_path)) != LX_OK ||
        (st = lx_sync_dir(o->output_path)) != LX_OK)
        return st;
    J->final_made = 0; /* complete: kept */
    lx_engine_warn_unconverged(&o->stream, "lora", &J->svd);
    if (!o->stream.quiet)
        lx_say(&o->stream.report, "lora: %zu module%s, r %d, lora_alpha %g, in %.2f s: %s, %s and "
               "%s written in %s", J->nmods, J->nmods == 1 ? "" : "s", o->rank, o->alpha * o->rank,
                lx_now() - t0, LX_LORA_ADAPTER_NAME, LX_LORA_CONFIG_NAME, LX_LORA_CARD_NAME,
               o->output_path);
    return LX_OK;
}

/* After a failure: no final name is left behind, and a directory this run
 * created is removed again if nothing else is in it. */
static void undo_output(lora_job *J)
{
    if (J->out_open)
        lx_st_out_close(&J->out);
    J->out_open = 0;
    if (J->partial_made)
        unlink(J->partial_path);
    lx_remove_on_interrupt(NULL);
    if (J->final_made) {
        unlink(J->final_path);
        unlink(J->config_path);
        unlink(J->card_path);
    }
    if (J->created_dir)
        rmdir(J->o->output_path);
}

static void job_free(lora_job *J)
{
    for (size_t i = 0; i < J->nmods; i++) {
        free(J->mods[i].key_a);
        free(J->mods[i].key_b);
        free(J->mods[i].leaf);
    }
    free(J->mods);
    if (J->has_layout)
        lx_st_layout_free(&J->layout);
    free(J->entries);
    free(J->partial_path);
    free(J->final_path);
    free(J->config_path);
    free(J->card_path);
    free(J->desc.leaves);
    free(J->base_model);
    free(J->model_type);
    free(J->fifo_source);
    lx_adapter_meta_free(&J->meta);
    if (J->dir_fd >= 0)
        close(J->dir_fd); /* and the lock with it */
    free(J->fbuf);
    free(J->obuf);
    lx_inputs_free(&J->in);
    if (J->has_emb)
        regfree(&J->emb);
    if (J->has_head)
        regfree(&J->head);
}

lx_status lx_lora_run(const lx_lora_opts *o)
{
    lora_job J;
    memset(&J, 0, sizeof J);
    J.o = o;
    J.out.fd = -1;
    J.dir_fd = -1;
    J.desc.worst_err = -1;
    lx_status st = run(&J);
    if (st != LX_OK) {
        char *msg = lx_err_save();
        undo_output(&J);
        lx_err_restore(st, msg);
    }
    job_free(&J);
    return st;
}

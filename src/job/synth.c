/* synth.c - the `loxstream synth` job (see synth.h): check the options and
 * the output directories, then write the three models shard by shard
 * (NAME.partial files filled, synced, renamed) and the index last, so that
 * a directory with an index is complete.  The module's other files:
 * synth_shapes.c (presets, tensors, shards), synth_values.c (the model's
 * values, documented there), synth_files.c (config.json, tokenizer).
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/checkpoint.h"
#include "loxstream/progress.h"
#include "loxstream/safetensors.h"
#include "loxstream/outdir.h"
#include "loxstream/synth.h"
#include "loxstream/fs.h"
#include "loxstream/parse.h"
#include "synth_int.h"

const char *const lx_synth_model_dirs[NMODELS] = {"base", "aligned", "finetuned"};

/* ---- directories ------------------------------------------------------------ */

/* A model directory may be created, or be an existing empty directory. */
static lx_status check_model_dir(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return LX_OK;
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot check the output directory", path);
    }
    if (!S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: exists and is not a directory (synth never overwrites)", path);
    DIR *d = opendir(path);
    if (!d)
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot read the output directory", path);
    struct dirent *de;
    int empty = 1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            empty = 0;
            break;
        }
    closedir(d);
    if (!empty)
        return lx_fail(LX_EOUTPUT, "%s: exists and is not empty (synth never overwrites a model: "
                       "remove it or choose another OUTDIR)", path);
    return LX_OK;
}

/* ---- the job ------------------------------------------------------------------- */

typedef struct synth_run {
    const lx_synth_opts *o;
    synth_plan plan;
    int nmodels;
    char *dirs[NMODELS];
    lx_progress progress;
    uint64_t done_items, done_bytes;
} synth_run;

/* Shard s of every model: NAME.partial files filled, synced, then renamed. */
static lx_status write_shard(synth_run *run, size_t s)
{
    const synth_plan *p = &run->plan;
    size_t first = p->first[s], count = p->first[s + 1] - first;
    lx_st_entry *entries = calloc(count, sizeof *entries);
    if (!entries)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t k = 0; k < count; k++) {
        const synth_tensor *t = &p->t[first + k];
        entries[k].name = t->name;
        entries[k].dtype = run->o->dtype;
        entries[k].ndim = t->ndim;
        if (t->ndim == 3) { /* [experts, out, in] */
            entries[k].shape[0] = t->nmat;
            entries[k].shape[1] = t->rows / t->nmat;
            entries[k].shape[2] = t->cols;
        } else {
            entries[k].shape[0] = t->ndim == 1 ? t->cols : t->rows;
            entries[k].shape[1] = t->cols;
        }
    }
    static const char *const meta_keys[] = {"format"}, *const meta_values[] = {"pt"};
    lx_st_layout layout;
    lx_status st = lx_st_layout_build(&layout, entries, count, meta_keys, meta_values, 1);
    if (st != LX_OK) {
        free(entries);
        return st;
    }

    lx_st_out outs[NMODELS];
    char *partial[NMODELS] = {0}, *final[NMODELS] = {0};
    int opened = 0;
    for (int md = 0; md < run->nmodels && st == LX_OK; md++) {
        final[md] = lx_path_join(run->dirs[md], p->shard_names[s]);
        partial[md] = final[md] ? malloc(strlen(final[md]) + sizeof ".partial") : NULL;
        if (!partial[md]) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        sprintf(partial[md], "%s.partial", final[md]);
        if ((st = lx_st_out_open(&outs[md], partial[md], &layout, 0)) == LX_OK)
            opened++;
    }
    for (size_t k = 0; k < count && st == LX_OK; k++) {
        st = lx_synth_tensor_write(&p->t[first + k], run->o, outs, k);
        run->done_items++;
        run->done_bytes += p->t[first + k].nbytes * (uint64_t)run->nmodels;
        lx_progress_update(&run->progress, run->done_items, run->done_bytes, p->t[first + k].name);
    }
    for (int md = 0; md < opened && st == LX_OK; md++)
        st = lx_st_out_sync(&outs[md]);
    for (int md = 0; md < opened; md++) {
        lx_status cst = lx_st_out_close(&outs[md]);
        if (st == LX_OK)
            st = cst;
    }
    for (int md = 0; md < opened && st == LX_OK; md++)
        if (rename(partial[md], final[md]) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", partial[md], final[md]);
    if (st != LX_OK)
        for (int md = 0; md < opened; md++)
            unlink(partial[md]); /* half-written: useless, and never mistaken for a shard */
    for (int md = 0; md < NMODELS; md++) {
        free(partial[md]);
        free(final[md]);
    }
    lx_st_layout_free(&layout);
    free(entries);
    return st;
}

static lx_status write_indexes(synth_run *run)
{
    const synth_plan *p = &run->plan;
    if (p->nshards == 1) {
        for (int md = 0; md < run->nmodels; md++) {
            lx_status st = lx_sync_dir(run->dirs[md]);
            if (st != LX_OK)
                return st;
        }
        return LX_OK;
    }
    const char **names = malloc(p->n * sizeof *names), **shards = malloc(p->n * sizeof *shards);
    lx_status st = LX_OK;
    if (!names || !shards)
        st = lx_fail(LX_EFAIL, "out of memory");
    for (size_t s = 0; s < p->nshards && st == LX_OK; s++)
        for (size_t i = p->first[s]; i < p->first[s + 1]; i++) {
            names[i] = p->t[i].name;
            shards[i] = p->shard_names[s];
        }
    for (int md = 0; md < run->nmodels && st == LX_OK; md++) {
        char *path = lx_path_join(run->dirs[md], "model.safetensors.index.json");
        if (!path) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        st = lx_index_write(path, p->model_bytes, p->n, names, shards);
        free(path);
    }
    free(names);
    free(shards);
    return st;
}

static lx_status check_opts(const lx_synth_opts *o)
{
    if (o->dtype != LX_DT_BF16 && o->dtype != LX_DT_F16 && o->dtype != LX_DT_F32)
        return lx_fail(LX_EUSAGE, "synth: dtype %s is not one of BF16, F16, F32", lx_dtype_name(o->dtype));
    /* bounds that keep names, shapes and JSON integers far from overflow */
    if (o->hidden < 1 || o->hidden > (1u << 20) || o->intermediate < 1 || o->intermediate > (1u << 22) ||
        o->vocab < 1 || o->vocab > (1u << 24) || o->layers < 1 || o->layers > 4096)
        return lx_fail(LX_EUSAGE, "synth: sizes out of range (hidden %" PRIu64 ", intermediate %" PRIu64
                       ", layers %" PRIu64 ", vocab %" PRIu64 ")", o->hidden, o->intermediate, o->layers, o->vocab);
    if (o->shard_size < 1)
        return lx_fail(LX_EUSAGE, "synth: the shard size must be at least 1 byte");
    if (o->heads && (o->heads > o->hidden || o->hidden % o->heads))
        return lx_fail(LX_EUSAGE, "synth: the hidden size %" PRIu64 " is not a multiple of the %" PRIu64
                       " attention heads (--hidden, --heads)", o->hidden, o->heads);
    uint64_t heads, kv_heads, head_dim;
    lx_synth_heads(o, &heads, &kv_heads, &head_dim);
    if (kv_heads > heads || heads % kv_heads)
        return lx_fail(LX_EUSAGE, "synth: the %" PRIu64 " attention heads are not a multiple of the %"
                       PRIu64 " key/value heads (--heads, --kv-heads)", heads, kv_heads);
    if (o->experts > 256)
        return lx_fail(LX_EUSAGE, "synth: %" PRIu64 " experts per layer, at most 256 (--experts)",
                       o->experts);
    if (o->fused_experts && !o->experts)
        return lx_fail(LX_EUSAGE, "synth: --fused-experts needs experts (--preset mixtral or --experts N)");
    if (o->layers * (7 + 3 * o->experts) > (1u << 20))
        return lx_fail(LX_EUSAGE, "synth: %" PRIu64 " layers of %" PRIu64 " experts are too many tensors "
                       "(at most 2^20)", o->layers, o->experts);
    return LX_OK;
}

lx_status lx_synth_write(const char *outdir, const lx_synth_opts *o)
{
    lx_status st = check_opts(o);
    if (st != LX_OK)
        return st;
    synth_run run = {.o = o, .nmodels = o->with_finetuned ? NMODELS : 2};

    struct stat sb;
    if (stat(outdir, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: exists and is not a directory", outdir);
    for (int md = 0; md < run.nmodels; md++) {
        if (!(run.dirs[md] = lx_path_join(outdir, lx_synth_model_dirs[md]))) {
            st = lx_fail(LX_EFAIL, "out of memory");
            goto out;
        }
        if ((st = check_model_dir(run.dirs[md])) != LX_OK)
            goto out;
    }
    if ((st = lx_synth_plan_build(o, &run.plan)) != LX_OK)
        goto out;
    /* room for every model before the first byte (as apply checks) */
    char resolved[PATH_MAX];
    size_t existing;
    uint64_t need = (run.plan.model_bytes + (1u << 20) * (uint64_t)(run.plan.nshards + 1)) *
                    (uint64_t)run.nmodels;
    if ((st = lx_outdir_resolve(outdir, resolved, &existing)) != LX_OK ||
        (st = lx_outdir_check_space(outdir, resolved, existing, need, need)) != LX_OK)
        goto out;
    for (int md = 0; md < run.nmodels && st == LX_OK; md++)
        if ((st = lx_mkdir_p(run.dirs[md])) == LX_OK)
            st = lx_synth_model_files(run.dirs[md], md, o);
    if (st != LX_OK)
        goto out;

    lx_progress_begin(&run.progress, "synth", run.plan.n,
                      run.plan.model_bytes * (uint64_t)run.nmodels, o->quiet, &o->report);
    for (size_t s = 0; s < run.plan.nshards && st == LX_OK; s++)
        st = write_shard(&run, s);
    if (st == LX_OK)
        st = write_indexes(&run); /* last: a directory with an index is complete */
    if (st == LX_OK) {
        lx_progress_end(&run.progress);
        if (!o->quiet) {
            char size[32];
            lx_format_size(run.plan.model_bytes, size, sizeof size);
            for (int md = 0; md < run.nmodels; md++)
                lx_say(&o->report, "synth: %s: %zu tensors, %zu shard%s, %s (%s)", run.dirs[md],
                       run.plan.n, run.plan.nshards, run.plan.nshards == 1 ? "" : "s", size,
                       lx_dtype_name(o->dtype));
        }
    }
out:
    lx_synth_plan_free(&run.plan);
    for (int md = 0; md < NMODELS; md++)
        free(run.dirs[md]);
    return st;
}

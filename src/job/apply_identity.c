/* apply_identity.c - the identity of an apply run (see apply_identity.h):
 * built from the options, the inputs' shards and the files the run writes,
 * compared by a later run to decide whether it may resume the output.
 */
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "loxstream/xxh.h"

#include "loxstream/apply_card.h"
#include "loxstream/apply_identity.h"
#include "loxstream/factor.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The side files an output gets from the aligned model directory: what a
 * loader reads beside the weights (configuration, tokenizer, chat template,
 * processor, the code a config's auto_map names) and the licence terms.
 * Anything else is not copied: above all weights in other formats
 * (pytorch_model*.bin and its index, .gguf, .pt, .pth, .ckpt, .msgpack,
 * .h5, .onnx, .tflite, other .safetensors), which a loader may prefer to
 * the LoX shards, and README.md (the output has its own card).  fnmatch(3)
 * patterns; man/loxstream.1 lists them too.  The tokenizer's files (what
 * a tokenizer's save_pretrained writes, chat template included) are left
 * out with --no-copy-tokenizer. */
static const char *const side_allowed[] = {
    "config.json", "generation_config.json", "adapter_config.json",
    "preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json",
    "*.py",
    "LICENSE*", "USE_POLICY*", "NOTICE*",
};
static const char *const side_tokenizer[] = {
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "spiece.model",
    "sentencepiece.bpe.model", "*.tiktoken", "tekken.json",
    "chat_template.*",
};

static int matches(const char *const *pats, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (fnmatch(pats[i], name, FNM_PERIOD) == 0)
            return 1;
    return 0;
}

#define MATCHES(pats, name) matches(pats, sizeof pats / sizeof *pats, name)

/* Say once which regular files of the aligned directory are not copied. */
static void warn_skipped(const lx_checkpoint *aligned, char **skipped, size_t n)
{
    if (!n)
        return;
    qsort(skipped, n, sizeof *skipped, cmp_str);
    char list[600] = "";
    size_t at = 0, shown = 0;
    for (; shown < n; shown++) {
        char q[LX_NAME_QUOTE];
        int w = snprintf(list + at, sizeof list - at, "%s%s", shown ? ", " : "",
                         lx_st_escape_name(skipped[shown], q, sizeof q));
        if (w < 0 || (size_t)w >= sizeof list - at - 32) {
            list[at] = '\0';
            break;
        }
        at += (size_t)w;
    }
    if (shown < n)
        snprintf(list + at, sizeof list - at, " and %zu more", n - shown);
    lx_warn("%s: %zu file%s not copied to the output (weights of other formats and other files "
            "not on the list of side files in loxstream(1)): %s", aligned->dir, n,
            n > 1 ? "s" : "", list);
}

static int is_input_shard(const lx_checkpoint *ck, const char *name)
{
    for (size_t s = 0; s < ck->nshards; s++)
        if (!strcmp(ck->shards[s].name, name))
            return 1;
    return 0;
}

static lx_status list_side_files(lx_apply_identity *J, const lx_checkpoint *aligned,
                                 int copy_tokenizer)
{
    struct stat sb;
    if (stat(aligned->path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return LX_OK;
    DIR *d = opendir(aligned->dir);
    if (!d)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", aligned->dir);
    lx_status st = LX_OK;
    size_t cap = 0, nskipped = 0, skipcap = 0;
    char **skipped = NULL;
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || !strcmp(nm, LX_INDEX_NAME) || !strcmp(nm, LX_LIST_NAME) ||
            !strcmp(nm, LX_CARD_NAME) || /* the output has its own */
            is_input_shard(aligned, nm))
            continue;
        char *src = lx_path_join(aligned->dir, nm);
        if (!src) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        int regular = stat(src, &sb) == 0 && S_ISREG(sb.st_mode);
        free(src);
        if (!regular)
            continue;
        int tokenizer = MATCHES(side_tokenizer, nm);
        if (tokenizer && !copy_tokenizer)
            continue; /* asked for: not warned about */
        if (!tokenizer && !MATCHES(side_allowed, nm)) {
            if (nskipped == skipcap) {
                skipcap = skipcap ? 2 * skipcap : 16;
                char **p = realloc(skipped, skipcap * sizeof *p);
                if (!p) {
                    st = lx_fail(LX_EFAIL, "out of memory");
                    break;
                }
                skipped = p;
            }
            if (!(skipped[nskipped] = strdup(nm)))
                st = lx_fail(LX_EFAIL, "out of memory");
            else
                nskipped++;
            continue;
        }
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
    if (st == LX_OK)
        warn_skipped(aligned, skipped, nskipped);
    for (size_t i = 0; i < nskipped; i++)
        free(skipped[i]);
    free(skipped);
    return st;
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
static lx_status build_identity(lx_apply_identity *J, const lx_apply_opts *o,
                                const lx_checkpoint *base, const lx_checkpoint *aligned,
                                const lx_apply_writer *w)
{
    lx_identity *id = &J->id;
    char v[128];
    lx_status st = lx_identity_add(id, "version", PACKAGE_VERSION);
    snprintf(v, sizeof v, "%d", o->rank);
    if (st == LX_OK)
        st = lx_identity_add(id, "option rank", v);
    if (st == LX_OK)
        st = lx_identity_add(id, "option alpha", lx_format_double(o->alpha, v, sizeof v));
    /* recorded when not the default only: a default run's identity, and so
     * its journal's name, is what it was before these options */
    if (st == LX_OK && o->anchor_base)
        st = lx_identity_add(id, "option anchor", "base");
    snprintf(v, sizeof v, "%d", o->factor_rank);
    if (st == LX_OK && o->factor_rank)
        st = lx_identity_add(id, "option factor-rank", v);
    /* another layout (factor.h): what it writes is part of the identity */
    if (st == LX_OK && w->layout != aligned)
        st = lx_identity_add(id, "option output", "factors");
    const char *method = o->rank == 0 ? "full" : o->stream.svd.exact ? "exact" : "randomized";
    if (st == LX_OK)
        st = lx_identity_add(id, "option method", method);
    if (st == LX_OK && !strcmp(method, "randomized")) {
        snprintf(v, sizeof v, "%d", o->stream.svd.oversample);
        st = lx_identity_add(id, "option oversample", v);
        snprintf(v, sizeof v, "%" PRIu64, o->stream.svd.seed);
        if (st == LX_OK)
            st = lx_identity_add(id, "option seed", v);
        if (o->stream.svd.passes > 0) {
            snprintf(v, sizeof v, "%d", o->stream.svd.passes);
            if (st == LX_OK)
                st = lx_identity_add(id, "option passes", v);
        } else {
            if (st == LX_OK)
                st = lx_identity_add(id, "option tol", lx_format_double(o->stream.svd.tol, v, sizeof v));
            snprintf(v, sizeof v, "%d", o->stream.svd.max_passes);
            if (st == LX_OK)
                st = lx_identity_add(id, "option max-passes", v);
        }
    }
    snprintf(v, sizeof v, "%" PRIu64, o->out_shard_size);
    if (st == LX_OK && o->out_shard_size)
        st = lx_identity_add(id, "option out-shard-size", v);
    if (st == LX_OK && o->stream.include)
        st = add_escaped(id, "option include", o->stream.include);
    if (st == LX_OK && o->stream.exclude)
        st = add_escaped(id, "option exclude", o->stream.exclude);
    const struct { const char *role; const lx_checkpoint *ck; } ins[] = {
        {"base", base}, {"aligned", aligned}};
    /* without --base (apply --factors) the factor file stands for it (its
     * header records base's shards) */
    if (st == LX_OK && !o->stream.base_path) {
        const lx_shard *fs = lx_factor_store_file(o->stream.factors);
        st = lx_identity_add_input(id, "factors", fs->name, fs->size, fs->header_xxh3);
    }
    for (int r = o->stream.base_path ? 0 : 1; r < 2 && st == LX_OK; r++) {
        for (size_t s = 0; s < ins[r].ck->nshards && st == LX_OK; s++) {
            const lx_shard *sh = &ins[r].ck->shards[s];
            st = lx_identity_add_input(id, ins[r].role, sh->name, sh->size, sh->header_xxh3);
        }
    }
    for (size_t s = 0; s < w->nshards && st == LX_OK; s++)
        st = lx_identity_add_output_shard(id, w->shards[s].name, w->shards[s].layout.file_size,
                                          w->shards[s].layout.n,
                                          XXH3_64bits(w->shards[s].layout.header,
                                                      w->shards[s].layout.header_size));
    if (st == LX_OK && w->has_index)
        st = lx_identity_add_output(id, LX_INDEX_NAME, "index");
    for (size_t i = 0; i < J->nside && st == LX_OK; i++)
        st = lx_identity_add_output(id, J->side[i], "side");
    if (st == LX_OK && w->layout == aligned)
        st = lx_identity_add_output(id, LX_CARD_NAME, "card");
    J->hash = lx_identity_hash(id);
    return st;
}

lx_status lx_apply_identity_build(lx_apply_identity *ri, const lx_apply_opts *o,
                                  const lx_checkpoint *base, const lx_checkpoint *aligned,
                                  const lx_apply_writer *w)
{
    /* side files go with the aligned model's layout only */
    lx_status st = w->layout == aligned ? list_side_files(ri, aligned, !o->no_copy_tokenizer)
                                        : LX_OK;
    return st == LX_OK ? build_identity(ri, o, base, aligned, w) : st;
}

void lx_apply_identity_free(lx_apply_identity *ri)
{
    for (size_t i = 0; i < ri->nside; i++)
        free(ri->side[i]);
    free(ri->side);
    ri->side = NULL;
    ri->nside = 0;
    lx_identity_free(&ri->id);
}

/* apply_card.c - the output's model card (see apply_card.h), with the
 * aligned card's front matter kept (card_meta.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "loxstream/apply_card.h"
#include "loxstream/factor.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/hfcache.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"

#define LOX_PAPER "https://arxiv.org/abs/2506.15606"

/* ---- the new card --------------------------------------------------------- */

/* s quoted for a POSIX shell ('...', a quote as '\''), bare when safe. */
static void sh_word(FILE *f, const char *s)
{
    if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        "_-./=:,+%@") == strlen(s)) {
        fputs(s, f);
        return;
    }
    fputc('\'', f);
    for (; *s; s++)
        fputs(*s == '\'' ? "'\\''" : (char[]){*s, 0}, f);
    fputc('\'', f);
}

/* How an input is named in the card and the command: its model ID, else
 * its absolute path (malloc'd). */
static char *input_name(const char *path, const lx_hf_model *hf)
{
    if (hf)
        return strdup(hf->id);
    char *r = realpath(path, NULL);
    return r ? r : strdup(path);
}

static void front_matter(FILE *f, const char *aligned_name, const lx_card_meta *m)
{
    fputs("---\nbase_model: ", f);
    lx_yaml_str(f, aligned_name);
    fputs("\nbase_model_relation: finetune\ntags:\n- loxstream\n- lox\n- safety\n", f);
    lx_card_write_kept(f, m);
    fputs("---\n\n", f);
}

/* The options of the command that writes these bytes again. */
static void command(FILE *f, const lx_apply_opts *o, const char *bname, const char *aname)
{
    const lx_engine_opts *e = &o->stream;
    const lx_rsvd_opts *s = &e->svd;
    char v[64];
    const char *rev = e->aligned_model ? e->aligned_model->revision
                      : e->base_model  ? e->base_model->revision : NULL;
    /* without --base: bname is the factor file, which stands for it */
    fputs(e->base_path ? "loxstream apply --base " : "loxstream apply --factors ", f);
    sh_word(f, bname);
    fputs(" --aligned ", f);
    sh_word(f, aname);
    if (rev && strcmp(rev, LX_HF_DEFAULT_REVISION)) {
        fputs(" --revision ", f);
        sh_word(f, rev);
    }
    fprintf(f, " \\\n    --output OUTDIR --rank %d --alpha %s", o->rank,
            lx_format_double(o->alpha, v, sizeof v));
    if (o->anchor_base)
        fputs(" --anchor base", f);
    if (o->factor_rank)
        fprintf(f, " --factor-rank %d", o->factor_rank);
    if (!e->base_path)
        ; /* --factors: the SVD options are the factors' */
    else if (o->rank > 0 && s->exact)
        fputs(" --exact", f);
    else if (o->rank > 0 && s->passes > 0)
        fprintf(f, " --power-iters %d --oversample %d --seed %" PRIu64, s->passes - 1,
                s->oversample, s->seed);
    else if (o->rank > 0)
        fprintf(f, " --tol %s --max-passes %d --oversample %d --seed %" PRIu64,
                lx_format_double(s->tol, v, sizeof v), s->max_passes, s->oversample, s->seed);
    if (e->include) {
        fputs(" --include ", f);
        sh_word(f, e->include);
    }
    if (e->exclude) {
        fputs(" --exclude ", f);
        sh_word(f, e->exclude);
    }
    if (o->copy_unmatched)
        fputs(" --copy-unmatched", f);
    if (o->no_copy_tokenizer)
        fputs(" --no-copy-tokenizer", f);
    if (o->out_shard_size)
        fprintf(f, " --out-shard-size %" PRIu64, o->out_shard_size);
    fputc('\n', f);
}

static void input_rows(FILE *f, const char *role, const char *name, const lx_hf_model *hf,
                       const lx_checkpoint *ck)
{
    fprintf(f, "- %s: `%s`", role, name);
    if (hf)
        fprintf(f, " (revision `%s`, commit `%s`)", hf->revision, hf->commit);
    fputc('\n', f);
    for (size_t s = 0; s < ck->nshards; s++) {
        char hex[LX_HEX64], q[LX_NAME_QUOTE];
        fprintf(f, "  - `%s`: %" PRIu64 " bytes, header XXH3 `%s`\n",
                lx_st_escape_name(ck->shards[s].name, q, sizeof q), ck->shards[s].size,
                lx_hex64(ck->shards[s].header_xxh3, hex));
    }
}

static void body(FILE *f, const lx_apply_opts *o, const lx_inputs *in, const lx_apply_writer *w,
                 const char *bname, const char *aname)
{
    const lx_rsvd_opts *s = &o->stream.svd;
    char v[64];
    fprintf(f, "# LoX of %s\n\n", aname);
    fprintf(f, "The aligned model `%s` made robust to fine-tuning with LoX (Low-Rank "
            "Extrapolation, [arXiv 2506.15606](" LOX_PAPER ")), by loxstream " PACKAGE_VERSION
            ": for every weight matrix, with dW = W_aligned - W_base,\n\n"
            "    W_out = W_%s + alpha * U_k S_k V_k^T    (U_k S_k V_k^T: the top-k singular "
            "part of dW)\n\n", aname, o->anchor_base ? "base" : "aligned");
    fputs("## Method\n\n| | |\n| --- | --- |\n", f);
    fprintf(f, "| method | LoX (%s) |\n", o->rank == 0 ? "full-rank extrapolation of dW"
                                          : s->exact ? "exact SVD"
                                                     : "randomized SVD");
    fprintf(f, "| rank k | %d |\n| alpha | %s |\n| anchor | %s |\n", o->rank,
            lx_format_double(o->alpha, v, sizeof v), o->anchor_base ? "base" : "aligned");
    if (o->factor_rank)
        fprintf(f, "| factor rank | %d |\n", o->factor_rank);
    if (o->rank > 0 && !s->exact) {
        if (s->passes > 0)
            fprintf(f, "| passes | %d |\n", s->passes);
        else
            fprintf(f, "| tol | %s (at most %d passes) |\n", lx_format_double(s->tol, v, sizeof v),
                    s->max_passes);
        fprintf(f, "| oversample | %d |\n| seed | %" PRIu64 " |\n", s->oversample, s->seed);
    }
    if (o->stream.include)
        fprintf(f, "| include | `%s` |\n", o->stream.include);
    if (o->stream.exclude)
        fprintf(f, "| exclude | `%s` |\n", o->stream.exclude);
    fprintf(f, "| tensors | %zu transformed, %zu copied bit for bit |\n", in->plan.ntransform,
            in->plan.n - in->plan.ntransform);
    fprintf(f, "| output | %zu shard%s |\n| loxstream | %s |\n\n", w->nshards,
            w->nshards > 1 ? "s" : "", PACKAGE_VERSION);
    fputs("## Inputs\n\n", f);
    if (o->stream.base_path)
        input_rows(f, "base", bname, o->stream.base_model, in->base);
    else
        fprintf(f, "- base: not given; the factors `%s` (their header records its shards)\n",
                bname);
    input_rows(f, "aligned", aname, o->stream.aligned_model, in->aligned);
    fputs("\n## Reproduce\n\nThe same inputs and this command write the same bytes:\n\n"
          "```sh\n", f);
    command(f, o, bname, aname);
    fputs("```\n", f);
}

lx_status lx_card_write(const lx_apply_opts *o, const lx_inputs *in, const lx_apply_writer *w,
                        uint64_t *xxh3)
{
    lx_card_meta m;
    lx_card_read(in->aligned, &m);
    const lx_shard *fs = o->stream.base_path ? NULL : lx_factor_store_file(o->stream.factors);
    char *bname = fs ? input_name(fs->path, NULL)
                     : input_name(o->stream.base_path, o->stream.base_model);
    char *aname = input_name(o->stream.aligned_path, o->stream.aligned_model);
    char *text = NULL, *path = lx_path_join(o->output_path, LX_CARD_NAME);
    size_t len = 0;
    FILE *f = bname && aname && path ? open_memstream(&text, &len) : NULL;
    lx_status st = LX_OK;
    if (!f) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        front_matter(f, aname, &m);
        body(f, o, in, w, bname, aname);
        if (fclose(f) != 0 || !text)
            st = lx_fail(LX_EFAIL, "out of memory");
    }
    if (st == LX_OK)
        st = lx_unlink_if(path); /* replaced, not written through */
    if (st == LX_OK)
        st = lx_write_file_atomic(path, text, len);
    if (st == LX_OK)
        st = lx_file_xxh3(path, 0, xxh3);
    free(text);
    free(path);
    free(bname);
    free(aname);
    lx_card_meta_free(&m);
    return st;
}

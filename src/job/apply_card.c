/* apply_card.c - the output's model card (see apply_card.h): the aligned
 * card's front matter read in a YAML subset, the new card written.
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
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/hfcache.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"

#define CARD_MAX (1u << 20)         /* bytes of the aligned card read at most */
#define LOX_PAPER "https://arxiv.org/abs/2506.15606"

static const char *const kept_keys[LX_CARD_KEYS] = {"license", "license_name", "license_link",
                                                    "language"};

/* ---- the aligned card's front matter ------------------------------------ */

void lx_card_meta_free(lx_card_meta *m)
{
    for (int k = 0; k < LX_CARD_KEYS; k++) {
        free(m->value[k]);
        for (size_t i = 0; i < m->nlist[k]; i++)
            free(m->list[k][i]);
        free(m->list[k]);
    }
    memset(m, 0, sizeof *m);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One scalar of the subset, s[0..len) trimmed: plain (to a " #" comment),
 * 'single' ('' for a quote) or "double" (\\ \" \n \t escapes).  NULL when
 * it is outside the subset (or out of memory: *oom). */
static char *scalar(const char *s, size_t len, int *oom)
{
    char *out = malloc(len + 1), *o = out;
    if (!out) {
        *oom = 1;
        return NULL;
    }
    const char *e = s + len;
    if (len && (*s == '\'' || *s == '"')) {
        char q = *s++;
        for (; s < e && !(*s == q && !(q == '\'' && s + 1 < e && s[1] == '\'')); s++) {
            if (q == '\'' && *s == '\'') {
                *o++ = *s++; /* '' */
            } else if (q == '"' && *s == '\\' && s + 1 < e) {
                s++;
                char c = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
                if (!strchr("\\\"nt", *s))
                    goto bad;
                *o++ = c;
            } else {
                *o++ = *s;
            }
        }
        if (s >= e)
            goto bad;          /* unterminated */
        for (s++; s < e && (*s == ' ' || *s == '\t'); s++)
            ;
        if (s < e && *s != '#')
            goto bad;          /* something after the closing quote */
    } else {
        for (; s < e && !(*s == '#' && o > out && (o[-1] == ' ' || o[-1] == '\t')); s++)
            *o++ = *s;
        while (o > out && (o[-1] == ' ' || o[-1] == '\t'))
            o--;
        if (o > out && strchr("[]{}&*!|>%@`", out[0]))
            goto bad;          /* flow, anchors, tags, block scalars: not in the subset */
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int push(char ***list, size_t *n, char *v)
{
    char **p = realloc(*list, (*n + 1) * sizeof *p);
    if (!p)
        return 0;
    *list = p;
    p[(*n)++] = v;
    return 1;
}

/* "[a, b]" into a list (items without commas or brackets inside quotes). */
static int flow_list(const char *v, char ***list, size_t *n, int *oom)
{
    size_t len = strlen(v);
    if (len < 2 || v[len - 1] != ']')
        return 0;
    char *body = strndup(v + 1, len - 2);
    if (!body) {
        *oom = 1;
        return 0;
    }
    int ok = 1;
    char *save = NULL;
    for (char *tok = strtok_r(body, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        char *item = *t ? scalar(t, strlen(t), oom) : NULL;
        ok = item && push(list, n, item);
        if (!ok && item)
            *oom = 1, free(item);
    }
    free(body);
    return ok;
}

lx_status lx_card_parse(const char *text, lx_card_meta *m)
{
    memset(m, 0, sizeof *m);
    if (strncmp(text, "---\n", 4) && strncmp(text, "---\r\n", 5))
        return LX_OK;
    char *buf = strdup(text + (text[3] == '\r' ? 5 : 4));
    if (!buf)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    int oom = 0, closed = 0, cur = -1; /* cur: the kept key whose "- item" lines follow */
    size_t lineno = 1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && st == LX_OK;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *t = trim(line);
        if (!strcmp(t, "---") || !strcmp(t, "...")) {
            closed = 1;
            break;
        }
        if (!*t || *t == '#')
            continue;
        if (line[0] == ' ' || line[0] == '\t' || line[0] == '-') {
            /* inside the block of the key before: its list, or skipped */
            if (cur < 0)
                continue;
            if (t[0] != '-' || (t[1] != ' ' && t[1] != '\0') || m->value[cur]) {
                st = lx_fail(LX_EINPUT, "line %zu: '%s' takes a scalar or a list of them",
                             lineno, kept_keys[cur]);
                break;
            }
            char *v = trim(t + 1), *item = scalar(v, strlen(v), &oom);
            if (!item || !push(&m->list[cur], &m->nlist[cur], item)) {
                oom |= item != NULL;
                free(item);
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: a list item of '%s' "
                                              "outside the subset read", lineno, kept_keys[cur]);
            }
            continue;
        }
        char *colon = strstr(t, ": ");
        if (!colon && t[strlen(t) - 1] == ':')
            colon = t + strlen(t) - 1;
        if (!colon || colon == t) {
            st = lx_fail(LX_EINPUT, "line %zu: not a 'key: value' line", lineno);
            break;
        }
        *colon = '\0';
        char *key = trim(t), *v = trim(colon + 1);
        cur = -1;
        for (int k = 0; k < LX_CARD_KEYS; k++)
            if (!strcmp(key, kept_keys[k]))
                cur = k;
        if (cur < 0)
            continue;
        if (m->value[cur] || m->list[cur]) {
            st = lx_fail(LX_EINPUT, "line %zu: '%s' given twice", lineno, key);
        } else if (*v == '[') {
            if (!flow_list(v, &m->list[cur], &m->nlist[cur], &oom))
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: the list of '%s' outside "
                                              "the subset read", lineno, key);
        } else if (*v) {
            if (!(m->value[cur] = scalar(v, strlen(v), &oom)))
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: the value of '%s' outside "
                                              "the subset read", lineno, key);
        }
    }
    if (st == LX_OK && !closed)
        st = lx_fail(LX_EINPUT, "the front matter has no closing '---'");
    if (oom)
        st = lx_fail(LX_EFAIL, "out of memory");
    free(buf);
    if (st != LX_OK)
        lx_card_meta_free(m);
    return st;
}

/* Read ALIGNED/README.md's front matter: what cannot be read or parsed
 * keeps nothing, with one warning. */
static void read_aligned_card(const lx_checkpoint *aligned, lx_card_meta *m)
{
    memset(m, 0, sizeof *m);
    char *path = lx_path_join(aligned->dir, LX_CARD_NAME);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        if (path && errno != ENOENT)
            lx_warn("%s: cannot read (%s): the card keeps none of its licence and language",
                    path, strerror(errno));
        free(path);
        return;
    }
    char *text = malloc(CARD_MAX + 1);
    size_t n = text ? fread(text, 1, CARD_MAX, f) : 0;
    fclose(f);
    if (text) {
        text[n] = '\0';
        if (strlen(text) != n)
            lx_warn("%s: holds a NUL byte: the card keeps none of its licence and language",
                    path);
        else if (lx_card_parse(text, m) != LX_OK)
            lx_warn("%s: front matter not read (%s): the card keeps none of its licence and "
                    "language", path, lx_errmsg());
    }
    free(text);
    free(path);
}

/* ---- the new card --------------------------------------------------------- */

/* s as a YAML double-quoted scalar (JSON's string syntax is one). */
static void yaml_str(FILE *f, const char *s)
{
    json_t *j = json_string(s);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(d ? d : "\"\"", f);
    free(d);
    json_decref(j);
}

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
    yaml_str(f, aligned_name);
    fputs("\nbase_model_relation: finetune\ntags:\n- loxstream\n- lox\n- safety\n", f);
    for (int k = 0; k < LX_CARD_KEYS; k++) {
        if (m->value[k]) {
            fprintf(f, "%s: ", kept_keys[k]);
            yaml_str(f, m->value[k]);
            fputc('\n', f);
        } else if (m->list[k]) {
            fprintf(f, "%s:\n", kept_keys[k]);
            for (size_t i = 0; i < m->nlist[k]; i++) {
                fputs("- ", f);
                yaml_str(f, m->list[k][i]);
                fputc('\n', f);
            }
        }
    }
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
    fputs("loxstream apply --base ", f);
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
    if (o->rank > 0 && s->exact)
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
    input_rows(f, "base", bname, o->stream.base_model, in->base);
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
    read_aligned_card(in->aligned, &m);
    char *bname = input_name(o->stream.base_path, o->stream.base_model);
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

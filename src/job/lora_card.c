/* lora_card.c - what a loxstream adapter says about itself (lora_int.h):
 * adapter_config.json holds LoraConfig's own fields and nothing else
 * (PEFT before 0.14 passes every key of the file to LoraConfig(**kwargs)
 * and fails on one it does not know), so the provenance goes into the
 * README.md card and the safetensors __metadata__.  The card keeps the
 * aligned card's licence and language (card_meta.c), as apply's does.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "loxstream/card_meta.h"
#include "loxstream/fs.h"
#include "loxstream/hfcache.h"
#include "loxstream/safetensors.h"
#include "lora_int.h"

#define PAPER_URL "https://arxiv.org/abs/2506.15606"

/* Digits of the shortest %g form that reads back as x (1..17). */
static int shortest_digits(double x)
{
    char buf[64];
    for (int prec = 1; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            return prec;
    }
    return 17;
}

/* ---- __metadata__ -------------------------------------------------------- */

static int meta_add(lx_adapter_meta *m, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int meta_add(lx_adapter_meta *m, const char *key, const char *fmt, ...)
{
    char *v = NULL;
    va_list ap;
    va_start(ap, fmt);
    int rc = vasprintf(&v, fmt, ap);
    va_end(ap);
    if (rc < 0)
        return -1;
    m->store[m->nstore++] = v;
    m->keys[m->n] = key;
    m->vals[m->n++] = v;
    return 0;
}

/* "ID@COMMIT" for a model from the Hugging Face cache, else the path. */
static const char *input_name(const char *path, const struct lx_hf_model *hf, char *buf,
                              size_t size)
{
    if (!hf)
        return path;
    snprintf(buf, size, "%s@%s", hf->id, hf->commit);
    return buf;
}

lx_status lx_adapter_meta_build(const lx_adapter_desc *d, lx_adapter_meta *m)
{
    enum { MAXMETA = 24 };
    const lx_lora_opts *o = d->o;
    const lx_engine_opts *e = &o->stream;
    memset(m, 0, sizeof *m);
    m->keys = calloc(MAXMETA, sizeof *m->keys);
    m->vals = calloc(MAXMETA, sizeof *m->vals);
    m->store = calloc(MAXMETA, sizeof *m->store);
    if (!m->keys || !m->vals || !m->store)
        return lx_fail(LX_EFAIL, "out of memory");
    char b1[1024], b2[1024];
    int bad = meta_add(m, "format", "pt");
    bad |= meta_add(m, "loxstream_version", "%s", PACKAGE_VERSION);
    bad |= meta_add(m, "loxstream_rank", "%d", o->rank);
    bad |= meta_add(m, "loxstream_alpha", "%.*g", shortest_digits(o->alpha), o->alpha);
    bad |= meta_add(m, "loxstream_method", "%s", e->svd.exact ? "exact" : "randomized");
    bad |= meta_add(m, "loxstream_seed", "%" PRIu64, e->svd.seed);
    if (!e->svd.exact) {
        bad |= meta_add(m, "loxstream_oversample", "%d", e->svd.oversample);
        if (e->svd.passes > 0) {
            bad |= meta_add(m, "loxstream_passes", "%d", e->svd.passes);
        } else {
            bad |= meta_add(m, "loxstream_tol", "%.*g", shortest_digits(e->svd.tol), e->svd.tol);
            bad |= meta_add(m, "loxstream_max_passes", "%d", e->svd.max_passes);
        }
    }
    bad |= meta_add(m, "loxstream_include", "%s", e->include ? e->include : "");
    bad |= meta_add(m, "loxstream_exclude", "%s", e->exclude ? e->exclude : "");
    bad |= meta_add(m, "loxstream_embedding", "%s",
                    o->embedding ? o->embedding : LX_LORA_EMBEDDING_DEFAULT);
    bad |= meta_add(m, "loxstream_embeddings", "%s", o->no_embeddings ? "none" : "exported");
    bad |= meta_add(m, "loxstream_fan_in_fan_out", "%zu", d->nfifo);
    bad |= meta_add(m, "loxstream_dtype", "%s",
                    o->has_dtype ? lx_dtype_name(o->dtype) : "aligned");
    bad |= meta_add(m, "loxstream_modules", "%zu", d->nmods);
    bad |= meta_add(m, "loxstream_base", "%s",
                    input_name(e->base_path, e->base_model, b1, sizeof b1));
    bad |= meta_add(m, "loxstream_aligned", "%s",
                    input_name(e->aligned_path, e->aligned_model, b2, sizeof b2));
    return bad ? lx_fail(LX_EFAIL, "out of memory") : LX_OK;
}

void lx_adapter_meta_free(lx_adapter_meta *m)
{
    for (size_t i = 0; i < m->nstore; i++)
        free(m->store[i]);
    free(m->store);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- adapter_config.json --------------------------------------------------- */

static int set(json_t *obj, const char *key, json_t *v)
{
    return v ? json_object_set_new(obj, key, v) : -1;
}

/* text + "\n" written atomically at path; text freed. */
static lx_status write_text(const char *path, char *text)
{
    if (!text)
        return lx_fail(LX_EFAIL, "%s: cannot build the text (a name that is not UTF-8, or out "
                       "of memory)", path);
    size_t len = strlen(text);
    char *buf = malloc(len + 2);
    lx_status st;
    if (!buf) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        memcpy(buf, text, len);
        buf[len] = '\n';
        st = lx_write_file_atomic(path, buf, len + 1);
    }
    free(buf);
    free(text);
    return st;
}

lx_status lx_adapter_write_config(const lx_adapter_desc *d, const char *path)
{
    const lx_lora_opts *o = d->o;
    json_t *root = json_object(), *tm = json_array();
    int bad = !root || !tm;
    for (size_t i = 0; !bad && i < d->nleaves; i++)
        bad |= json_array_append_new(tm, json_string(d->leaves[i])) != 0;
    /* the keys PEFT 0.13 writes (PeftConfig's and LoraConfig's fields but
     * runtime_config), with LoraConfig's defaults where loxstream has nothing
     * to say; a later PEFT knows every one of them */
    if (!bad) {
        bad |= set(root, "alpha_pattern", json_object());
        bad |= set(root, "auto_mapping", json_null());
        bad |= set(root, "base_model_name_or_path", json_string(d->base_model));
        bad |= set(root, "bias", json_string("none"));
        bad |= set(root, "fan_in_fan_out", json_boolean(d->nfifo > 0));
        bad |= set(root, "inference_mode", json_true());
        bad |= set(root, "init_lora_weights", json_true());
        bad |= set(root, "layer_replication", json_null());
        bad |= set(root, "layers_pattern", json_null());
        bad |= set(root, "layers_to_transform", json_null());
        bad |= set(root, "loftq_config", json_object());
        bad |= set(root, "lora_alpha", json_real(o->alpha * o->rank));
        bad |= set(root, "lora_dropout", json_real(0.0));
        bad |= set(root, "megatron_config", json_null());
        bad |= set(root, "megatron_core", json_string("megatron.core"));
        bad |= set(root, "modules_to_save", json_null());
        bad |= set(root, "peft_type", json_string("LORA"));
        bad |= set(root, "r", json_integer(o->rank));
        bad |= set(root, "rank_pattern", json_object());
        bad |= set(root, "revision", d->revision ? json_string(d->revision) : json_null());
        bad |= set(root, "target_modules", json_incref(tm));
        bad |= set(root, "task_type", json_string("CAUSAL_LM"));
        bad |= set(root, "use_dora", json_false());
        bad |= set(root, "use_rslora", json_false());
    }
    /* reals with the fewest digits that read back exactly ("7.5", not
     * "7.5000000000000009"): jansson takes one precision for all */
    int digits = shortest_digits(o->alpha * o->rank);
    char *text = bad ? NULL
                     : json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS |
                                            JSON_REAL_PRECISION(digits));
    json_decref(tm);
    json_decref(root);
    return write_text(path, text);
}

/* ---- README.md ----------------------------------------------------------- */

typedef struct card {
    char *buf;
    size_t len;
    FILE *f;
} card;

static void card_method(FILE *f, const lx_lora_opts *o)
{
    const lx_rsvd_opts *s = &o->stream.svd;
    if (s->exact)
        fprintf(f, "exact SVD of every matrix");
    else if (s->passes > 0)
        fprintf(f, "randomized SVD, %d passes, oversample %d", s->passes, s->oversample);
    else
        fprintf(f, "randomized SVD to tol %g (at most %d passes), oversample %d", s->tol,
                s->max_passes, s->oversample);
    fprintf(f, ", seed %" PRIu64, s->seed);
}

static void card_input(FILE *f, const char *role, const char *path, const struct lx_hf_model *hf)
{
    if (hf)
        fprintf(f, "- %s: `%s` (revision `%s`, commit `%s`, in the local Hugging Face cache)\n",
                role, hf->id, hf->revision, hf->commit);
    else
        fprintf(f, "- %s: `%s`\n", role, path);
}

lx_status lx_adapter_write_card(const lx_adapter_desc *d, const char *path)
{
    const lx_lora_opts *o = d->o;
    const lx_engine_opts *e = &o->stream;
    card c = {0};
    c.f = open_memstream(&c.buf, &c.len);
    if (!c.f)
        return lx_fail(LX_EFAIL, "%s: out of memory", path);
    FILE *f = c.f;
    /* the front matter and headings of PEFT's adapter card, with the aligned
     * card's licence and language */
    lx_card_meta m;
    lx_card_read(d->aligned, &m);
    fputs("---\nbase_model: ", f);
    lx_yaml_str(f, d->base_model);
    fputs("\nlibrary_name: peft\ntags:\n- loxstream\n- lox\n- lora\n", f);
    lx_card_write_kept(f, &m);
    lx_card_meta_free(&m);
    fputs("---\n\n", f);
    fprintf(f, "# Model Card for a LoX adapter of %s\n\n", d->base_model);
    fprintf(f, "## Model Details\n\n### Model Description\n\n");
    fprintf(f, "A PEFT LoRA adapter that holds the LoX update (Low-Rank Extrapolation, which makes "
            "an aligned model's safety robust to later fine-tuning) of the aligned model `%s`: "
            "loaded onto that model, or merged into it, it adds alpha = %g times the rank-%d "
            "part of the alignment update (aligned - base) of every module it holds",
            d->base_model, o->alpha, o->rank);
    if (o->no_embeddings)
        fprintf(f, ".  It holds the linear layers only (`--no-embeddings`): it equals "
                "`loxstream apply` with the same options on the linear layers, and leaves the "
                "embedding tables and output heads of the aligned model as they are (%zu left "
                "out).\n\n", d->nskipped);
    else
        fprintf(f, ", which is what `loxstream apply` writes with the same options, up to "
                "rounding.\n\n");
    fprintf(f, "- **Developed by:** loxstream %s\n", PACKAGE_VERSION);
    fprintf(f, "- **Model type:** LoRA adapter, r %d, lora_alpha %g (scaling lora_alpha / r = "
            "%g), %zu modules", o->rank, o->alpha * o->rank, o->alpha, d->nmods);
    if (d->nemb)
        fprintf(f, " (%zu embedding tables or output heads)", d->nemb);
    fprintf(f, "\n");
    if (d->nfifo)
        fprintf(f, "- **fan_in_fan_out:** %zu modules are stored [in, out] (%s)\n", d->nfifo,
                d->fifo_source);
    fprintf(f, "- **Finetuned from model:** %s\n\n", d->base_model);
    fprintf(f, "### Model Sources\n\n- **Paper:** [LoX: Low-Rank Extrapolation Robustifies LLM "
            "Safety Against Fine-tuning](%s)\n\n", PAPER_URL);
    fprintf(f, "## Training Details\n\nNo training: the factors come from the two checkpoints.\n\n");
    if (o->command)
        fprintf(f, "```sh\n%s\n```\n\n", o->command);
    card_input(f, "Base (before alignment)", e->base_path, e->base_model);
    card_input(f, "Aligned", e->aligned_path, e->aligned_model);
    fprintf(f, "- Method: rank %d, alpha %.*g, ", o->rank, shortest_digits(o->alpha), o->alpha);
    card_method(f, o);
    fprintf(f, "\n- Factors: %s\n", o->has_dtype ? lx_dtype_name(o->dtype) : "each aligned tensor's dtype");
    char q[LX_NAME_QUOTE];
    if (d->worst_err >= 0)
        fprintf(f, "- Accuracy: largest estimated relative error %.3g (`%s`), %zu of %zu "
                "matrices above the tolerance\n", d->worst_err,
                lx_st_escape_name(d->worst_name, q, sizeof q), d->unconverged, d->nmods);
    fprintf(f, "\n## Framework versions\n\n- PEFT 0.13 or later (`adapter_config.json` holds "
            "PEFT 0.13's LoraConfig fields only)\n- loxstream %s\n", PACKAGE_VERSION);
    if (fclose(f) != 0 || !c.buf) {
        free(c.buf);
        return lx_fail(LX_EFAIL, "%s: out of memory", path);
    }
    /* write_text adds the last line break */
    if (c.len > 0 && c.buf[c.len - 1] == '\n')
        c.buf[--c.len] = '\0';
    return write_text(path, c.buf);
}

/* synth_files.c - the small files of a model directory written by
 * `loxstream synth`, as transformers writes them: config.json (the model's
 * sizes), generation_config.json, and a placeholder tokenizer
 * (tokenizer_config.json, tokenizer.json) that lets tools load the
 * directory.  The tensors and their shards are synth.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"
#include "loxstream/dtype.h"
#include "loxstream/fs.h"
#include "synth_int.h"

static lx_status write_json(const char *dir, const char *name, json_t *root, size_t flags)
{
    if (!root)
        return lx_fail(LX_EFAIL, "out of memory (%s)", name);
    char *text = json_dumps(root, flags);
    json_decref(root);
    char *path = lx_path_join(dir, name);
    lx_status st = LX_OK;
    if (!text || !path) {
        st = lx_fail(LX_EFAIL, "out of memory (%s)", name);
    } else {
        size_t len = strlen(text);
        char *buf = realloc(text, len + 2);
        if (!buf) {
            st = lx_fail(LX_EFAIL, "out of memory (%s)", name);
        } else {
            text = buf;
            memcpy(text + len, "\n", 2);
            st = lx_write_file_atomic(path, text, len + 1);
        }
    }
    free(text);
    free(path);
    return st;
}

static const char *torch_dtype(lx_dtype dt)
{
    return dt == LX_DT_BF16 ? "bfloat16" : dt == LX_DT_F16 ? "float16" : "float32";
}

/* As transformers writes config files: sorted keys, two-space indent. */
#define CONFIG_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10))

static lx_status write_config(const char *dir, int model, const lx_synth_opts *o)
{
    uint64_t heads, kv_heads, head_dim;
    lx_synth_heads(o, &heads, &kv_heads, &head_dim);
    json_t *seed = o->seed <= INT64_MAX ? json_integer((json_int_t)o->seed) : NULL;
    if (!seed) {
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, o->seed);
        seed = json_string(buf);
    }
    json_t *cfg = json_pack(
        "{s:[s], s:b, s:f, s:i, s:i, s:s, s:I, s:f, s:I, s:i, s:s, s:I, s:I, s:I, s:i, s:f,"
        " s:n, s:f, s:b, s:s, s:b, s:I,"
        " s:{s:s, s:s, s:o, s:s}}",
        "architectures", o->experts ? "MixtralForCausalLM" : "LlamaForCausalLM",
        "attention_bias", 0,
        "attention_dropout", 0.0,
        "bos_token_id", 1,
        "eos_token_id", 2,
        "hidden_act", "silu",
        "hidden_size", (json_int_t)o->hidden,
        "initializer_range", 0.02,
        "intermediate_size", (json_int_t)o->intermediate,
        "max_position_embeddings", 4096,
        "model_type", o->experts ? "mixtral" : "llama",
        "num_attention_heads", (json_int_t)heads,
        "num_hidden_layers", (json_int_t)o->layers,
        "num_key_value_heads", (json_int_t)kv_heads,
        "pretraining_tp", 1,
        "rms_norm_eps", 1e-05,
        "rope_scaling",
        "rope_theta", 10000.0,
        "tie_word_embeddings", 0,
        "torch_dtype", torch_dtype(o->dtype),
        "use_cache", 1,
        "vocab_size", (json_int_t)o->vocab,
        "loxstream_synth",
        "generator", "loxstream " PACKAGE_VERSION " synth",
        "model", lx_synth_model_dirs[model],
        "seed", seed,
        "note", "synthetic weights for testing; not a trained model");
    /* Mixtral's keys (transformers reads either layout of the experts) */
    if (cfg && o->experts &&
        (json_object_set_new(cfg, "num_local_experts", json_integer((json_int_t)o->experts)) ||
         json_object_set_new(cfg, "num_experts_per_tok",
                             json_integer(o->experts < 2 ? (json_int_t)o->experts : 2)) ||
         json_object_set_new(cfg, "router_aux_loss_coef", json_real(0.02)) ||
         json_object_set_new(cfg, "output_router_logits", json_false()))) {
        json_decref(cfg);
        cfg = NULL;
    }
    return write_json(dir, "config.json", cfg, CONFIG_FLAGS);
}

lx_status lx_synth_model_files(const char *dir, int model, const lx_synth_opts *o)
{
    lx_status st = write_config(dir, model, o);
    if (st != LX_OK)
        return st;
    json_t *gen = json_pack("{s:b, s:i, s:i}", "_from_model_config", 1, "bos_token_id", 1,
                            "eos_token_id", 2);
    if ((st = write_json(dir, "generation_config.json", gen, CONFIG_FLAGS)) != LX_OK)
        return st;

    static const char note[] =
        "placeholder written by loxstream synth: the weights are random, there is no real "
        "vocabulary; this three-token tokenizer only lets tools load the directory";
    json_t *tcfg = json_pack("{s:b, s:b, s:s, s:s, s:s, s:n, s:I, s:s, s:b, s:s}",
                             "add_bos_token", 1, "add_eos_token", 0, "bos_token", "<s>",
                             "eos_token", "</s>", "unk_token", "<unk>", "pad_token",
                             "model_max_length", (json_int_t)4096,
                             "tokenizer_class", "PreTrainedTokenizerFast",
                             "clean_up_tokenization_spaces", 0, "loxstream_placeholder", note);
    if ((st = write_json(dir, "tokenizer_config.json", tcfg, CONFIG_FLAGS)) != LX_OK)
        return st;

    /* A valid tokenizers file (WordLevel over the special tokens); the
     * library ignores the extra top-level key that says what it is. */
    const char *fmt = "{s:s, s:n, s:n, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b},"
                      " {s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b}],"
                      " s:n, s:{s:s}, s:n, s:n, s:{s:s, s:{s:i, s:i, s:i}, s:s}, s:s}";
    json_t *tok = json_pack(fmt, "version", "1.0", "truncation", "padding", "added_tokens",
                            "id", 0, "content", "<unk>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "id", 1, "content", "<s>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "id", 2, "content", "</s>", "single_word", 0, "lstrip", 0, "rstrip", 0,
                            "normalized", 0, "special", 1,
                            "normalizer", "pre_tokenizer", "type", "Whitespace", "post_processor",
                            "decoder", "model", "type", "WordLevel", "vocab", "<unk>", 0, "<s>", 1,
                            "</s>", 2, "unk_token", "<unk>", "loxstream_placeholder", note);
    return write_json(dir, "tokenizer.json", tok, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
}

/* lora_int.h - inside the lora job: what lora.c hands to lora_card.c, which
 * writes what the adapter says about itself (adapter_config.json with
 * LoraConfig's fields only, the README.md card, the provenance in the
 * adapter's safetensors __metadata__). */
#ifndef LOXSTREAM_LORA_INT_H
#define LOXSTREAM_LORA_INT_H

#include <stddef.h>

#include "loxstream/lora.h"

typedef struct lx_adapter_desc {
    const lx_lora_opts *o;
    const lx_checkpoint *aligned;  /* its README.md: the licence and language kept */
    const char *base_model;        /* base_model_name_or_path */
    const char *revision;          /* the aligned model's commit (HF cache), or NULL */
    const char **leaves;           /* target_modules: sorted, unique */
    size_t nleaves;
    size_t nmods;                  /* modules exported */
    size_t nemb;                   /* of them embedding tables and output heads */
    size_t nfifo;                  /* of them stored [in, out] (fan_in_fan_out) */
    size_t nskipped;               /* embeddings and heads left out (--no-embeddings) */
    const char *fifo_source;       /* why nfifo > 0: "config.json model_type gpt2", ... */
    /* the run's accuracy, for the card (after the modules) */
    size_t unconverged;
    double worst_err;              /* largest err_est of a randomized factorisation, -1: none */
    const char *worst_name;
} lx_adapter_desc;

/* The __metadata__ of adapter_model.safetensors: format pt and the
 * loxstream_* provenance pairs; *keys and *vals malloc'd arrays of *n
 * strings, the strings in *store (free each with lx_adapter_meta_free). */
typedef struct lx_adapter_meta {
    const char **keys, **vals;
    size_t n;
    char **store;
    size_t nstore;
} lx_adapter_meta;
lx_status lx_adapter_meta_build(const lx_adapter_desc *d, lx_adapter_meta *m);
void lx_adapter_meta_free(lx_adapter_meta *m);

/* adapter_config.json (atomic): the fields of PEFT 0.13's LoraConfig,
 * sorted and indented as PEFT writes them. */
lx_status lx_adapter_write_config(const lx_adapter_desc *d, const char *path);
/* README.md (atomic): PEFT's adapter card layout (YAML front matter with
 * base_model, library_name: peft and the aligned card's license,
 * license_name, license_link and language), the provenance in its body. */
lx_status lx_adapter_write_card(const lx_adapter_desc *d, const char *path);

#endif

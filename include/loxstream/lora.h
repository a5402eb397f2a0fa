/* lora.h - the LoX update as a PEFT LoRA adapter (loxstream lora).
 *
 * The plan and the factorisation are the engine's (engine.h: same filters,
 * pairing and checks as apply);
 * every transformed 2-D tensor whose name ends in ".weight" becomes one
 * adapter module, factored by the same randomized SVD as apply (same
 * options, same per-matrix seed), so that merging the adapter onto the
 * aligned model gives what `loxstream apply` writes, up to rounding.
 *
 * With dW ~ U_k S_k V_k^T (k = the rank clamped to min(m, n)), s = sqrt(S),
 * and r = the requested rank (one r for every module, as vLLM requires):
 *   linear W [m = out, n = in]:
 *     <module>.lora_A.weight [r, n], row i = s_i V[:, i]^T
 *     <module>.lora_B.weight [m, r], column i = U[:, i] s_i
 *   embedding (name matches the embedding regex) W [m = vocab, n = dim]:
 *     <module>.lora_embedding_A [r, m], row i = s_i U[:, i]^T
 *     <module>.lora_embedding_B [n, r], column i = V[:, i] s_i
 * (keys prefixed with "base_model.model.", <module> = name without
 * ".weight"); rows/columns i >= k are zero.  alpha is not folded into the
 * factors: adapter_config.json's lora_alpha is alpha * r, so PEFT's scaling
 * lora_alpha / r is alpha.
 *
 * Output: DIR (new or empty) receives adapter_model.safetensors (written as
 * adapter_model.safetensors.partial, one module's factors in memory at a
 * time, synced, then renamed) and then adapter_config.json (atomically).
 * On failure neither final name is left behind.
 */
#ifndef LOXSTREAM_LORA_H
#define LOXSTREAM_LORA_H

#include <stdint.h>

#include "loxstream/engine.h"
#include "loxstream/plan.h"
#include "loxstream/dtype.h"
#include "loxstream/error.h"
#include "loxstream/rsvd.h"

#define LX_LORA_ADAPTER_NAME "adapter_model.safetensors"
#define LX_LORA_CONFIG_NAME "adapter_config.json"
#define LX_LORA_KEY_PREFIX "base_model.model."
/* POSIX ERE: the embedding tables (torch.nn.Embedding) of Llama, GPT-2
 * (with its position table wpe), BERT, OPT, BLOOM and GPT-NeoX */
#define LX_LORA_EMBEDDING_DEFAULT                                                            \
    "(^|\\.)(embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|"     \
    "embed_positions|embed_in)\\.weight$"

typedef struct lx_lora_opts {
    lx_engine_opts stream;         /* inputs, SVD, filters, memory, threads, reporting */
    const char *output_path;
    int rank;                      /* r >= 1 */
    double alpha;                  /* -> lora_alpha = alpha * r */
    const char *embedding;         /* ERE on tensor names; NULL: LX_LORA_EMBEDDING_DEFAULT */
    int has_dtype;                 /* 0: the aligned tensor's dtype if BF16/F16/F32, else F32 */
    lx_dtype dtype;                /* BF16, F16 or F32 */
    /* the adapter's form (lora_card.c) */
    int no_embeddings;             /* leave out the embedding tables and output heads */
    int fan_in_fan_out;            /* LX_FIFO_AUTO, _NEVER or _ALL (below) */
    const char *base_model_name;   /* base_model_name_or_path; NULL: the model ID of
                                    * --aligned if from the HF cache, else its absolute path */
    const char *command;           /* the command line, for the card (NULL: not recorded) */
} lx_lora_opts;

/* Linear weights stored [in, out] (transformers' Conv1D): AUTO takes
 * c_attn, q_attn, c_proj and c_fc of a model whose config.json model_type
 * is one of LX_LORA_CONV1D_TYPES; ALL every linear module; NEVER none. */
enum { LX_FIFO_AUTO = 0, LX_FIFO_NEVER, LX_FIFO_ALL };
#define LX_LORA_CONV1D_TYPES "gpt2, openai-gpt, imagegpt, decision_transformer"
/* output heads, left out with the embeddings by no_embeddings (POSIX ERE) */
#define LX_LORA_HEAD_REGEX "(^|\\.)(lm_head|embed_out)\\.weight$"
#define LX_LORA_CARD_NAME "README.md"

/* rank 6, alpha 1.25, lx_rsvd_opts_default, 1 GiB, online CPUs. */
void lx_lora_opts_default(lx_lora_opts *o);

/* Parse "bf16", "f16" or "f32" (any case); LX_EUSAGE otherwise. */
lx_status lx_lora_parse_dtype(const char *s, lx_dtype *out);

/* The whole job.  Statuses: LX_EUSAGE (rank 0, a bad regex, --max-memory
 * too small, no module selected while --include/--exclude are given),
 * LX_EINPUT (inputs rejected, NaN/Inf in dW, no module in the model, a
 * factor value beyond the range of the adapter's dtype),
 * LX_EOUTPUT (DIR exists and is not an empty directory), LX_EFAIL. */
lx_status lx_lora_run(const lx_lora_opts *o);

#endif

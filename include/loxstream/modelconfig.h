/* modelconfig.h - what two models' config.json files say about their
 * architectures (src/io/modelconfig.c): for the message that explains why
 * the tensors of two checkpoints do not match.
 */
#ifndef LOXSTREAM_MODELCONFIG_H
#define LOXSTREAM_MODELCONFIG_H

#include <stddef.h>

/* Compare the architecture fields (model_type, architectures, hidden_size,
 * num_hidden_layers, vocab_size, intermediate_size, num_attention_heads,
 * num_key_value_heads) of DIR_A/config.json and DIR_B/config.json, named
 * name_a and name_b: into buf a list such as "hidden_size 768 in base,
 * 1024 in aligned; ..." and the number of fields that differ; 0 (buf
 * empty) when they agree or when either file is missing or unreadable. */
size_t lx_config_differences(const char *dir_a, const char *name_a, const char *dir_b,
                             const char *name_b, char *buf, size_t len);

#endif

/* apply_identity.h - what an apply output is a function of (journal.h's
 * identity: the options that change its bytes, the version, each input
 * shard's size and header checksum) and the files it writes: the shards,
 * the index, the side files of the aligned model directory.
 */
#ifndef LOXSTREAM_APPLY_IDENTITY_H
#define LOXSTREAM_APPLY_IDENTITY_H

#include "loxstream/apply.h"
#include "loxstream/apply_writer.h"
#include "loxstream/journal.h"

typedef struct lx_apply_identity {
    lx_identity id;
    uint64_t hash;                 /* lx_identity_hash: what the journals name */
    char **side;                   /* side files of the aligned directory, sorted */
    size_t nside;
} lx_apply_identity;

/* The side files (config.json, tokenizer files...: the regular files of the
 * aligned directory on the allow-list of apply_identity.c, never weights of
 * another format; the others are named in one warning), then the identity
 * of the run writing w's shards. */
lx_status lx_apply_identity_build(lx_apply_identity *ri, const lx_apply_opts *o,
                                  const lx_checkpoint *base, const lx_checkpoint *aligned,
                                  const lx_apply_writer *w);
void lx_apply_identity_free(lx_apply_identity *ri);

#endif

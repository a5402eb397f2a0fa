/* apply_card.h - the model card (README.md) of an apply output: YAML front
 * matter for the Hugging Face Hub (base_model, base_model_relation, tags,
 * and the aligned card's license and language), then what was done and
 * the command that does it again.  No date or host in it: the same run
 * writes the same bytes.
 */
#ifndef LOXSTREAM_APPLY_CARD_H
#define LOXSTREAM_APPLY_CARD_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/apply.h"
#include "loxstream/apply_writer.h"
#include "loxstream/card_meta.h"
#include "loxstream/plan.h"

#define LX_CARD_NAME LX_CARD_META_NAME

/* Write OUTDIR/README.md (atomically) for the run of o over in, with the
 * shards of w, and its XXH3 into *xxh3.  The aligned card
 * (ALIGNED/README.md) is read for its front matter; one warning when it
 * cannot be parsed. */
lx_status lx_card_write(const lx_apply_opts *o, const lx_inputs *in, const lx_apply_writer *w,
                        uint64_t *xxh3);

#endif

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
#include "loxstream/plan.h"

#define LX_CARD_NAME "README.md"

/* The aligned card's front matter, as far as the output keeps it: a
 * YAML subset (top-level "key: scalar", "key: [a, b]" and "key:" with
 * "- item" lines; other keys' nested blocks skipped). */
#define LX_CARD_KEYS 4             /* license, license_name, license_link, language */
typedef struct lx_card_meta {
    char *value[LX_CARD_KEYS];     /* a scalar, or NULL */
    char **list[LX_CARD_KEYS];     /* a list (nlist entries), or NULL */
    size_t nlist[LX_CARD_KEYS];
} lx_card_meta;

/* Parse text (a README.md) into m.  No front matter: LX_OK, nothing kept.
 * Front matter outside the subset: LX_EINPUT with what and where (the
 * caller warns and keeps nothing), m empty. */
lx_status lx_card_parse(const char *text, lx_card_meta *m);
void lx_card_meta_free(lx_card_meta *m);

/* Write OUTDIR/README.md (atomically) for the run of o over in, with the
 * shards of w, and its XXH3 into *xxh3.  The aligned card
 * (ALIGNED/README.md) is read for its front matter; one warning when it
 * cannot be parsed. */
lx_status lx_card_write(const lx_apply_opts *o, const lx_inputs *in, const lx_apply_writer *w,
                        uint64_t *xxh3);

#endif

/* card_meta.h - the front matter of the aligned model's card
 * (ALIGNED/README.md) as far as an output's card keeps it (license,
 * license_name, license_link, language): read in a YAML subset and
 * written again.  apply's model card and lora's adapter card use it.
 */
#ifndef LOXSTREAM_CARD_META_H
#define LOXSTREAM_CARD_META_H

#include <stddef.h>
#include <stdio.h>

#include "loxstream/checkpoint.h"
#include "loxstream/error.h"

#define LX_CARD_META_NAME "README.md"

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

/* Read ALIGNED/README.md's front matter into m: what cannot be read or
 * parsed keeps nothing, with one warning; no card keeps nothing. */
void lx_card_read(const lx_checkpoint *aligned, lx_card_meta *m);
/* The kept keys of m as YAML front-matter lines (scalars double-quoted,
 * lists as "- item" lines), in the order above. */
void lx_card_write_kept(FILE *f, const lx_card_meta *m);
/* s as a YAML double-quoted scalar (JSON's string syntax is one). */
void lx_yaml_str(FILE *f, const char *s);

#endif

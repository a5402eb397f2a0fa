/* journal_int.h - internals shared by the files of the journal module
 * (journal.c, journal_identity.c, journal_state.c): the small-file helpers
 * and the magic lines.  Nothing outside the module includes it.
 */
#ifndef LOXSTREAM_JOURNAL_INT_H
#define LOXSTREAM_JOURNAL_INT_H

#include <stddef.h>

#include "loxstream/error.h"

#define IDENTITY_MAGIC "loxstream-identity 1"
#define JOURNAL_MAGIC "loxstream-journal\t1"
#define MARKER_MAGIC "loxstream-complete 1"
#define SMALL_FILE_MAX (256u << 20) /* identity, journal, list: far below this */

/* Read a small file whole (NUL-terminated); *exists = 0 if it is absent. */
lx_status lx_jr_read_text(const char *path, char **out, size_t *len, int *exists);
/* Write outdir/rel atomically, creating outdir/.loxstream if needed.  A
 * leftover path.tmp is removed first: its name is ours, and whatever it
 * is (a link too) must not receive the bytes. */
lx_status lx_jr_write_state_file(const char *outdir, const char *rel, const char *body,
                                 size_t len);

/* A growing string; oom set (and the text left as it was) when out of memory. */
typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text;

void lx_jr_text_put(text *t, const char *s, size_t n);
void lx_jr_text_puts(text *t, const char *s);

#endif

/* outdir.h - apply's output directory before a byte is written: where it
 * really is (never inside an input), what is in it (new, empty, an output
 * of ours, something else) and whether the file system has room for what
 * is still to be written.  (Its state directory and locks: journal.h.)
 */
#ifndef LOXSTREAM_OUTDIR_H
#define LOXSTREAM_OUTDIR_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "loxstream/checkpoint.h"
#include "loxstream/error.h"

/* Refuse (LX_EOUTPUT) an output directory `out` that is, or is inside, the
 * directory of one of the n inputs (NULL entries skipped): writing there
 * could overwrite them.  out may not exist yet; its absolute, symlink-free
 * form goes to resolved, and the length of its existing part to *existing. */
lx_status lx_output_outside(const char *out, const lx_checkpoint *const *ins, size_t n,
                            char resolved[PATH_MAX], size_t *existing);

/* The absolute, symlink-free form of a path that may not exist yet (its
 * deepest existing ancestor through realpath, the rest lexically);
 * *existing gets the length of the part that exists.  LX_EOUTPUT if it
 * cannot be resolved. */
lx_status lx_outdir_resolve(const char *path, char out[PATH_MAX], size_t *existing);
/* 1 if the resolved path inner is outer or inside it. */
int lx_path_within(const char *inner, const char *outer);

typedef enum lx_out_state {
    LX_OUT_NEW,                    /* does not exist */
    LX_OUT_EMPTY,                  /* empty, or only loxstream's leftovers of a run
                                    * stopped before its identity was written */
    LX_OUT_OURS,                   /* holds an identity */
    LX_OUT_FOREIGN                 /* anything else */
} lx_out_state;

/* What `out` holds; LX_EOUTPUT for LX_OUT_FOREIGN (loxstream never
 * overwrites files it did not write) or an inaccessible directory. */
lx_status lx_outdir_classify(const char *out, lx_out_state *state);

/* Refuse (LX_EFAIL) when the file system holding resolved[0..existing)
 * (lx_output_outside) has less than `need` bytes available; `total` is
 * what the whole output takes, for the message. */
lx_status lx_outdir_check_space(const char *out, const char *resolved, size_t existing,
                                uint64_t need, uint64_t total);

/* Unlink dir/name+suffix, if it exists. */
lx_status lx_unlink_in(const char *dir, const char *name, const char *suffix);

#endif

/* outdir.h - apply's output directory before a byte is written: where it
 * really is (never inside an input), what is in it (new, empty, an output
 * of ours, something else), its locks (the protocol of journal.h) and
 * whether the file system has room for what is still to be written.
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

/* The locks of journal.h, flock(2)s that the kernel releases when the
 * process ends, however it ends (descriptors, -1 when not held). */
typedef struct lx_outdir_locks {
    int lock_fd;                   /* the output lock */
    int complete_fd;               /* the completion lock */
    int part_lock_fd;              /* the part's own lock (--part only) */
} lx_outdir_locks;

void lx_outdir_locks_init(lx_outdir_locks *l);
/* Take them in journal.h's order: the part's own lock (nparts > 1), the
 * completion lock (waited for), the output lock (exclusive without --part,
 * shared by parts).  Refused: LX_EOUTPUT naming the process's rival. */
lx_status lx_outdir_lock(lx_outdir_locks *l, const char *out, unsigned part, unsigned nparts);
/* Let the completion lock go (at the end of the preparation) and wait for it
 * again (before completing). */
void lx_outdir_release_completion(lx_outdir_locks *l);
lx_status lx_outdir_wait_completion(lx_outdir_locks *l, const char *out);
/* Turn the shared output lock into an exclusive one, without waiting: 1 if
 * no other process writes the output.  (On Linux a refused conversion drops
 * the shared lock.) */
int lx_outdir_alone(lx_outdir_locks *l);
void lx_outdir_locks_close(lx_outdir_locks *l);

/* Unlink dir/name+suffix, if it exists. */
lx_status lx_unlink_in(const char *dir, const char *name, const char *suffix);

#endif

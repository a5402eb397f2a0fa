/* apply_resume.h - apply's preparation of its output directory and the
 * resumption of an earlier run in it: the refusals, the locks, taking over
 * an output of ours (same identity, or --restart), a completed output
 * checked, the records of every journal indexed, the shards back under
 * their temporary names, and per tensor whether the earlier bytes are kept.
 */
#ifndef LOXSTREAM_APPLY_RESUME_H
#define LOXSTREAM_APPLY_RESUME_H

#include "loxstream/apply.h"
#include "loxstream/apply_identity.h"
#include "loxstream/apply_writer.h"
#include "loxstream/outdir.h"
#include "loxstream/plan.h"

#define LX_RESUME_CHECK_CHUNK (4u << 20) /* bytes per read when checking a kept tensor */

typedef struct lx_apply_resume {
    const lx_journal_record **rec; /* aligned tensor index -> its latest record or NULL */
    lx_journal *others;            /* the output's other journals, by name */
    size_t nothers;
    int resuming;                  /* an earlier run's output is continued */
    int complete_already;          /* it was complete and intact: nothing to do */
    int prepared;                  /* the output directory is in its running state */
    size_t recorded;               /* tensors with a record when the run started */
    size_t own_recorded;           /* of the part's, with a record when it started */
    size_t kept, redone;           /* earlier tensors kept; recorded but computed again */
    unsigned char *rbuf;           /* for reading kept tensors back */
    XXH3_state_t *tstate, *snap;   /* a kept tensor's checksum; a stream snapshot */
} lx_apply_resume;

lx_status lx_resume_init(lx_apply_resume *rs, size_t ntensors);
void lx_resume_free(lx_apply_resume *rs);

/* The state of OUTDIR: refusals, the locks, the identity, a complete
 * output checked (then rs->complete_already), the earlier runs' records
 * indexed, the shards back under their temporary names, w's journal open.
 * The completion lock is held from lx_outdir_lock to the end, so that
 * parts starting at once see each other's identity and none prepares while
 * another completes. */
lx_status lx_resume_prepare(lx_apply_resume *rs, const lx_apply_opts *o, const lx_inputs *in,
                            const lx_part *pt, lx_apply_writer *w, const lx_apply_identity *ri,
                            lx_locks *locks);

/* Keep tensor i from the earlier run if its record fits, its inputs are
 * unchanged and its bytes in the .partial still match; its bytes then
 * continue the shard's whole-file checksum.  Writer idle. */
lx_status lx_resume_check_kept(lx_apply_resume *rs, const lx_inputs *in, lx_apply_writer *w,
                               size_t i, lx_out_shard *os, int *keep);

/* Item i (its output tensor in shard os): os opened on first use, the
 * earlier run's bytes kept (lx_resume_check_kept: *need = 0, counted in
 * rs->kept) or the tensor begun in the writer (*need = 1). */
lx_status lx_resume_item_begin(lx_apply_resume *rs, const lx_inputs *in, lx_apply_writer *w,
                               size_t i, lx_out_shard *os, int *need);
/* rs->rec from the records of the other journals, in name order, then of
 * w's own: the last record of each tensor wins.  Returns the number of
 * tensors with a record. */
size_t lx_resume_index(lx_apply_resume *rs, const lx_inputs *in, const lx_apply_writer *w);
/* Load w's journal and every other one of the output again (finish). */
lx_status lx_resume_reload(lx_apply_resume *rs, const lx_part *pt, lx_apply_writer *w,
                           const lx_apply_identity *ri);
/* Does record r describe item i where this run puts it? */
int lx_resume_record_fits(const lx_inputs *in, const lx_apply_writer *w, size_t i,
                          const lx_journal_record *r);

#endif

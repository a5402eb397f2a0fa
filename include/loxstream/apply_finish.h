/* apply_finish.h - the end of an apply run: once every tensor is durable
 * and recorded, the output is completed (side files, the model card, shards
 * renamed into place, index, checksum list, marker, each step durable before the next);
 * with --part, the last part to finish reads every shard back against the
 * records of all journals and completes it, the others say what is missing.
 */
#ifndef LOXSTREAM_APPLY_FINISH_H
#define LOXSTREAM_APPLY_FINISH_H

#include "loxstream/apply.h"
#include "loxstream/apply_identity.h"
#include "loxstream/apply_resume.h"
#include "loxstream/apply_writer.h"
#include "loxstream/outdir.h"
#include "loxstream/plan.h"

typedef struct lx_apply_finish {
    const lx_apply_opts *o;        /* the run's options (set by the caller): the card */
    int completed;                 /* this process completed the output */
    char msg[1024];                /* a part's last line: completed, or what it waits for */
    int final_message;             /* the error message needs no "run again to resume" */
} lx_apply_finish;

/* A run without --part: complete the output under the completion lock. */
lx_status lx_finish_run(lx_apply_finish *fin, const lx_inputs *in, const lx_part *pt,
                        lx_apply_writer *w, const lx_apply_identity *ri, lx_apply_resume *rs,
                        lx_locks *locks);
/* A part has made its tensors durable.  Under the completion lock: if
 * every tensor of the plan has a record in one of the journals and no other
 * process writes the output (lx_locks_alone), complete it; else say which
 * parts are missing (fin->msg). */
lx_status lx_finish_part(lx_apply_finish *fin, const lx_inputs *in, const lx_part *pt,
                         lx_apply_writer *w, const lx_apply_identity *ri, lx_apply_resume *rs,
                         lx_locks *locks);

#endif

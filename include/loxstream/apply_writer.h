/* apply_writer.h - apply's output shards and the writer thread that fills
 * them: the shards' layouts (the aligned model's names, tensor order and
 * offsets, with this run's metadata), opening each NAME.partial (reused,
 * created, or shared between parts), and every write, output checksum,
 * sync and journal append, in push order on one thread (wqueue.h).
 */
#ifndef LOXSTREAM_APPLY_WRITER_H
#define LOXSTREAM_APPLY_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/apply.h"
#include "loxstream/journal.h"
#include "loxstream/plan.h"
#include "loxstream/safetensors.h"
#include "loxstream/wqueue.h"
#include "loxstream/xxh.h"

#define LX_STREAM_BROKEN UINT64_MAX
#define LX_INDEX_NAME "model.safetensors.index.json"

typedef struct lx_out_shard {
    const char *name;              /* its file name: the aligned shard's, or own_name */
    char *own_name;                /* re-sharded: model-0000i-of-0000N.safetensors */
    lx_st_entry *entries;
    lx_st_layout layout;
    lx_st_out file;
    char *final_path, *partial_path;
    int open;
    int fresh;                     /* created by this process: nothing earlier to keep */
    XXH3_state_t *stream;          /* whole-file XXH3 while bytes arrive in file order */
    uint64_t stream_at;            /* file offset reached; LX_STREAM_BROKEN when out of order */
    uint64_t xxh3;                 /* whole-file checksum, at completion */
} lx_out_shard;

#define LX_WRITE_BEHIND_MAX 64 /* large writes under way at most (lx_apply_writer.behind) */

typedef struct lx_apply_writer {
    const char *output_path;
    unsigned nparts;               /* > 1: shards shared with other parts */
    const lx_plan *plan;
    int anchor_base;               /* --anchor base: copies come from base */
    const lx_inputs *in;
    /* the output's tensors and shards (names, dtypes, shapes, order): the
     * aligned model for apply; another (factor.h) whose tensor i is written
     * for plan item i, with its shards' metadata as they are */
    const lx_checkpoint *layout;
    uint64_t *in_xxh3;             /* 2 per plan item: its inputs' XXH3 before the
                                    * computation read them (lx_writer_hash_inputs) */
    double in_hash_seconds;        /* main thread: lx_writer_hash_inputs */
    lx_out_shard *shards;          /* one per aligned shard, or per --out-shard-size shard */
    size_t nshards;
    int has_index;                 /* an index is written (the aligned model has one,
                                    * or the output is re-sharded into several) */
    size_t *shard_of;              /* aligned tensor index -> its output shard */
    size_t *slot;                  /* aligned tensor index -> entry index in its shard */
    lx_journal journal;            /* this process's, appended to after each tensor */
    lx_wqueue *wq;
    XXH3_state_t *tstate;          /* the tensor being written */
    /* the last computed tensor, written but not yet synced and recorded
     * (lx_writer_flush); its names are borrowed from the checkpoint */
    int pending;
    lx_out_shard *pending_shard;
    size_t pending_idx;
    lx_journal_record pending_rec;
    /* within a memory limit, or when the data exceed the RAM (lx_budget):
     * each tensor's input pages are dropped from the page cache once done */
    int evict;
    /* NULL, or per plan item: nonzero when the next plan item reads the same
     * inputs (factor's five output tensors of one matrix), whose pages are
     * then dropped only once the last of them is done, not read again from
     * storage for each one's record */
    const unsigned char *keep_inputs;
    /* NULL, or per plan item: the writers (a sweep's outputs) yet to finish
     * it; the last one drops its input pages, the others keep them for the
     * last's record (set before lx_writer_end_item) */
    _Atomic unsigned *users;
    /* written output pages are dropped from the page cache in every run
     * (engine.h): each tensor's once it is durable, and each large write
     * once it is on the disk and later ones are under way.  These are the
     * large writes under way, oldest first, not yet dropped: each is
     * waited for and dropped once the later ones exceed behind_window
     * (apply_writer.c), so that several are on their way to the disk */
    struct lx_writer_behind {
        lx_out_shard *shard;
        size_t idx;
        uint64_t off, len;
    } behind[LX_WRITE_BEHIND_MAX];
    unsigned behind_head, behind_n;
    uint64_t behind_bytes;
    uint64_t behind_window;        /* bytes of them at most (lx_budget.behind) */
    /* --stats */
    double write_seconds;          /* pwrite of output bytes, with their XXH3 */
    uint64_t direct_bytes;         /* of them, written past the page cache (direct.h) */
    double hash_seconds;           /* XXH3 of inputs */
    double sync_seconds;           /* writeback start and fdatasync */
} lx_apply_writer;

/* The layouts of every output shard (apply_layout.c): shard_of, slot,
 * shards with their names, entries, headers and paths.  No file is touched. */
lx_status lx_writer_layouts(lx_apply_writer *w, const lx_apply_opts *o,
                            const lx_checkpoint *aligned);
/* The layouts (lx_writer_layouts) and the state. */
lx_status lx_writer_init(lx_apply_writer *w, const lx_apply_opts *o, const lx_inputs *in,
                         unsigned nparts);
/* The same with the output's tensors and shards of layout (see above). */
lx_status lx_writer_init_layout(lx_apply_writer *w, const lx_apply_opts *o, const lx_inputs *in,
                                const lx_checkpoint *layout, unsigned nparts);
void lx_writer_free(lx_apply_writer *w);
/* The output tensor of plan item i. */
static inline const lx_tensor *lx_writer_out(const lx_apply_writer *w, size_t i)
{
    return &w->layout->tensors[i];
}

/* Where a copied item's bytes come from: W_anchor, i.e. with --anchor base
 * the base tensor when it has the aligned one's dtype and shape, else (and
 * by default) the aligned tensor. */
const lx_tensor *lx_writer_copy_source(const lx_apply_writer *w, const lx_plan_item *it);
/* Does an item's output depend on its base tensor (journal.h's has_base)? */
int lx_writer_uses_base(const lx_apply_writer *w, const lx_plan_item *it);

/* The absolute offset in its shard file of byte off of entry idx. */
uint64_t lx_writer_file_offset(const lx_out_shard *os, size_t idx, uint64_t off);
/* Feed the shard's whole-file checksum, if the bytes continue it. */
void lx_writer_stream_feed(lx_out_shard *os, uint64_t file_off, const void *buf, size_t len);
/* Open the shard's .partial on first use (writer idle): reuse the earlier
 * run's file if its size and header are right, else create it (sparse);
 * with parts, the shared file (lx_st_out_open_shared). */
lx_status lx_writer_shard_open(lx_apply_writer *w, lx_out_shard *os);

/* The thread: out_buffer bytes per buffer, OUT_BUFFERS of them. */
lx_status lx_writer_start(lx_apply_writer *w, size_t buffer_bytes);
void lx_writer_stop(lx_apply_writer *w);
/* Wait until the thread is idle; its first failure, if any. */
lx_status lx_writer_drain(lx_apply_writer *w);
/* A free output buffer (its slot for lx_writer_put), NULL after a failure. */
unsigned char *lx_writer_buffer(lx_apply_writer *w, int *slot);
/* A writer buffer for bytes that go at offset off of tensor idx of os: the
 * pool buffer (lx_writer_buffer) moved by the page offset of their file
 * offset, so that direct writes take them without a copy (direct.h); at
 * most the buffer size from there.  NULL as lx_writer_buffer. */
unsigned char *lx_writer_buffer_at(lx_apply_writer *w, const lx_out_shard *os, size_t idx,
                                   uint64_t off, int *slot);
/* Main thread, before plan item i (transformed) is computed: the XXH3 of
 * its inputs.  When the item is finished, its inputs are hashed again and
 * their shards stat'ed (lx_shard_unchanged): a difference means that an
 * input changed while the passes read it, LX_EINPUT naming the file, and
 * the item is not recorded. */
void lx_writer_hash_inputs(lx_apply_writer *w, size_t i);
/* Queue: a tensor begins; len bytes at off of entry idx of os (slot: the
 * buffer's, -1 for mapped input bytes); plan item i is written (its record
 * is appended once its bytes are durable, then its input pages let go). */
lx_status lx_writer_begin(lx_apply_writer *w);
lx_status lx_writer_put(lx_apply_writer *w, lx_out_shard *os, size_t idx, uint64_t off,
                        const void *buf, size_t len, int slot);
lx_status lx_writer_end_item(lx_apply_writer *w, size_t i, lx_out_shard *os, size_t idx);
/* Make the pending tensor durable and append its record (writer idle). */
lx_status lx_writer_flush(lx_apply_writer *w);
/* The end of a run's items, st its status so far: the writer drained and
 * the last tensor recorded, whatever happened (kept for a later run after
 * a failure); the writer's own failure comes first. */
lx_status lx_writer_end_items(lx_apply_writer *w, lx_status st);

#endif

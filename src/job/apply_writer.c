/* apply_writer.c - apply's output shards and its writer thread (see
 * apply_writer.h).
 *
 * Durability (journal.h): each shard is filled as NAME.partial; after each
 * tensor its bytes are fdatasync'ed, then its journal record is appended
 * and fdatasync'ed.  Everything that writes, hashes output, syncs or
 * appends to the journal runs on the writer thread, in push order: W_BEGIN
 * (a tensor starts: its checksum is reset), W_PUT (out_put), W_FINISH
 * (finish_item, then the tensor's input pages are let go).  The main
 * thread touches that state only after lx_writer_drain.  Tensors are
 * written in file order, so each shard's whole-file XXH3 is accumulated on
 * the way (stream_feed); a shard not streamed in order is read back at the
 * end (apply_finish.c).
 */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/apply_writer.h"
#include "loxstream/fs.h"
#include "loxstream/linalg.h"
#include "loxstream/sys.h"
#include "loxstream/testhook.h"

#define WRITEBACK_MIN (1u << 20)    /* start writeback for writes at least this large */
#define OUT_BUFFERS 3               /* output panels in flight to the writer */
#define WRITER_JOBS 64              /* jobs queued to the writer at most */

/* Feed the shard's whole-file checksum, if the bytes continue it. */
void lx_writer_stream_feed(lx_out_shard *os, uint64_t file_off, const void *buf, size_t len)
{
    if (os->stream_at != file_off) {
        os->stream_at = LX_STREAM_BROKEN;
        return;
    }
    XXH3_64bits_update(os->stream, buf, len);
    os->stream_at += len;
}

const lx_tensor *lx_writer_copy_source(const lx_apply_writer *w, const lx_plan_item *it)
{
    const lx_tensor *a = it->aligned, *b = it->base;
    if (!w->anchor_base || !b || b->dtype != a->dtype || b->ndim != a->ndim ||
        b->nbytes != a->nbytes)
        return a;
    for (int d = 0; d < a->ndim; d++)
        if (b->shape[d] != a->shape[d])
            return a;
    return b;
}

int lx_writer_uses_base(const lx_apply_writer *w, const lx_plan_item *it)
{
    return it->action != LX_ACT_COPY || lx_writer_copy_source(w, it) != it->aligned;
}

uint64_t lx_writer_file_offset(const lx_out_shard *os, size_t idx, uint64_t off)
{
    return os->layout.header_size + os->layout.entries[idx].begin + off;
}

/* Make the pending tensor's bytes durable, then append its record.  This
 * is deferred from finish_item to just before the next tensor writes (or
 * a shard is opened, or the run ends): by then the kernel has written the
 * bytes back during the next tensor's SVD (out_put starts the writeback),
 * so the fdatasync finds little to do instead of stalling the
 * computation; a crash meanwhile costs one more tensor to redo. */
lx_status lx_writer_flush(lx_apply_writer *J)
{
    if (!J->pending)
        return LX_OK;
    J->pending = 0;
    double t0 = lx_now();
    lx_status st = lx_st_out_sync(&J->pending_shard->file);
    J->sync_seconds += lx_now() - t0;
    if (st != LX_OK)
        return st;
    st = lx_st_out_release(&J->pending_shard->file, J->pending_idx, 0, J->pending_rec.length, 0);
    J->behind_n = 0; /* durable, and dropped with the whole tensor */
    J->behind_bytes = 0;
    if (st != LX_OK)
        return st;
    lx_test_point("data-sync");
    return lx_journal_append(&J->journal, &J->pending_rec);
}

/* A large write is dropped from the page cache once it is on the disk.  Waiting for the write just before would leave one or
 * two on their way at a time, and the writer waiting on each; so the
 * writes under way are kept in J->behind and only the oldest are waited
 * for and dropped, once the later ones add up to J->behind_window bytes. */
static lx_status behind_push(lx_apply_writer *J, lx_out_shard *os, size_t idx, uint64_t off,
                             uint64_t len)
{
    lx_status st = LX_OK;
    while (st == LX_OK && J->behind_n &&
           (J->behind_bytes + len > J->behind_window || J->behind_n == LX_WRITE_BEHIND_MAX)) {
        struct lx_writer_behind *b = &J->behind[J->behind_head];
        J->behind_head = (J->behind_head + 1) % LX_WRITE_BEHIND_MAX;
        J->behind_n--;
        J->behind_bytes -= b->len;
        if (b->shard->open)
            st = lx_st_out_release(&b->shard->file, b->idx, b->off, b->len, 1);
    }
    J->behind[(J->behind_head + J->behind_n++) % LX_WRITE_BEHIND_MAX] =
        (struct lx_writer_behind){os, idx, off, len};
    J->behind_bytes += len;
    return st;
}

/* Write output bytes of tensor idx and account for them in the tensor's
 * and the shard's checksums; start writeback of large writes so that the
 * tensor's fdatasync has little left to do. */
static lx_status out_put(lx_apply_writer *J, lx_out_shard *os, size_t idx, uint64_t off, const void *buf,
                         size_t len)
{
    lx_status st = lx_writer_flush(J);
    if (st != LX_OK)
        return st;
    double t0 = lx_now();
    uint64_t direct0 = os->file.dio.direct_bytes;
    st = lx_st_out_write(&os->file, idx, off, buf, len);
    double t1 = lx_now();
    J->write_seconds += t1 - t0;
    J->direct_bytes += os->file.dio.direct_bytes - direct0;
    if (st != LX_OK)
        return st;
    XXH3_64bits_update(J->tstate, buf, len);
    lx_writer_stream_feed(os, lx_writer_file_offset(os, idx, off), buf, len);
    J->hash_seconds += lx_now() - t1;
    if (st != LX_OK)
        return st;
    double t2 = lx_now();
    st = len >= WRITEBACK_MIN ? lx_st_out_writeback(&os->file, idx, off, len) : LX_OK;
    if (st == LX_OK && len >= WRITEBACK_MIN)
        st = behind_push(J, os, idx, off, len);
    J->sync_seconds += lx_now() - t2;
    return st;
}

/* ---- the writer thread (wqueue.h) ----
 * Everything that writes, hashes output, syncs or appends to the journal
 * runs there, in push order: W_BEGIN (a tensor starts: its checksum is
 * reset), W_PUT (out_put), W_FINISH (finish_item, then the tensor's input
 * pages are let go).  The main thread touches that state only after
 * lx_wq_drain. */
enum { W_BEGIN, W_PUT, W_FINISH };

static lx_status finish_item(lx_apply_writer *J, size_t i, lx_out_shard *os, size_t idx);

static lx_status writer_job(void *ctx, const lx_wq_job *w)
{
    lx_apply_writer *J = ctx;
    switch (w->kind) {
    case W_BEGIN:
        XXH3_64bits_reset(J->tstate);
        return LX_OK;
    case W_PUT:
        return out_put(J, w->p, w->a, w->off, w->buf, w->len);
    default: {
        lx_status st = finish_item(J, w->a, w->p, w->b);
        int last = !J->users || atomic_fetch_sub(&J->users[w->a], 1) == 1;
        lx_plan_item_release(&J->plan->items[w->a],
                             J->evict && last && !(J->keep_inputs && J->keep_inputs[w->a]));
        return st;
    }
    }
}

/* A file of the output directory that the run writes into is its own
 * (lx_fd_own_file: regular, one link, on the directory's device) and not
 * one of the inputs (renamed into it); else LX_EOUTPUT. */
static lx_status own_file(const lx_apply_writer *J, int fd, const char *path)
{
    struct stat d, sb;
    if (stat(J->output_path, &d) != 0 || fstat(fd, &sb) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    lx_status st = lx_fd_own_file(fd, path, (uint64_t)d.st_dev, LX_EOUTPUT);
    const lx_shard *in = lx_checkpoint_find_inode(J->in->base, (uint64_t)sb.st_dev,
                                                  (uint64_t)sb.st_ino);
    if (!in)
        in = lx_checkpoint_find_inode(J->in->aligned, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
    if (st == LX_OK && in)
        st = lx_fail(LX_EOUTPUT, "%s: is the input %s (the same file): loxstream does not write "
                     "into it", path, in->path);
    return st;
}

/* An existing .partial, before anything reads or writes it: our own file
 * (own_file), else refused with what to do. */
static lx_status check_existing(const lx_apply_writer *J, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    lx_status st;
    if (fd < 0 && errno == ELOOP)
        st = lx_fail(LX_EOUTPUT, "%s: a symbolic link: loxstream does not write through it", path);
    else if (fd < 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", path);
    else
        st = own_file(J, fd, path);
    if (fd >= 0)
        close(fd);
    if (st == LX_EOUTPUT)
        st = lx_fail_append(st, "; if it is not needed, remove it and run the same command again");
    return st;
}

/* Open the shard's .partial on first use: reuse the earlier run's file if
 * its size and header are right, else create it (sparse). */
lx_status lx_writer_shard_open(lx_apply_writer *J, lx_out_shard *os)
{
    struct stat sb;
    int reuse = lstat(os->partial_path, &sb) == 0;
    if (reuse && !S_ISREG(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: not a regular file (%s)", os->partial_path,
                       lx_file_kind(sb.st_mode));
    lx_status st = reuse ? check_existing(J, os->partial_path) : LX_OK;
    if (st != LX_OK)
        return st;
    if (J->nparts > 1) {
        /* shared with the other parts: created whole if absent, never
         * truncated; a file of another size or header is not replaced, as
         * other parts may be writing into it */
        char *sdir = lx_path_join(J->output_path, LX_STATE_DIR);
        int created = 0;
        st = sdir ? lx_st_out_open_shared(&os->file, os->partial_path, sdir, &os->layout, &created)
                  : lx_fail(LX_EFAIL, "out of memory");
        free(sdir);
        if (st == LX_EOUTPUT)
            return lx_fail_append(LX_EOUTPUT, "; parts do not replace a shard other parts may be "
                                  "filling: run apply without --part to write it again");
        /* the name must be durable before any record points into the file */
        if (st == LX_OK)
            st = lx_sync_dir(J->output_path);
        if (st == LX_OK && created)
            lx_test_point("create");
        if (st != LX_OK) {
            if (os->file.path)
                lx_st_out_close(&os->file);
            return st;
        }
        reuse = !created;
    } else if (reuse) {
        st = lx_st_out_open(&os->file, os->partial_path, &os->layout, 1);
        if (st == LX_EOUTPUT) {
            lx_warn("%s; writing it again", lx_errmsg());
            reuse = 0;
        } else if (st != LX_OK) {
            return st;
        }
    }
    if (!reuse && J->nparts == 1) {
        st = lx_st_out_open(&os->file, os->partial_path, &os->layout, 0);
        if (st == LX_OK)
            st = lx_sync_dir(J->output_path);
        if (st == LX_OK)
            lx_test_point("create");
        else if (os->file.path)
            lx_st_out_close(&os->file); /* not open for the job: close it here */
    }
    /* again on the descriptor written through (the name may have changed) */
    if (st == LX_OK && (st = own_file(J, os->file.fd, os->partial_path)) != LX_OK)
        lx_st_out_close(&os->file);
    if (st != LX_OK)
        return st;
    os->open = 1;
    os->fresh = !reuse;
    XXH3_64bits_reset(os->stream);
    os->stream_at = 0;
    lx_writer_stream_feed(os, 0, os->layout.header, os->layout.header_size);
    return LX_OK;
}

void lx_writer_hash_inputs(lx_apply_writer *J, size_t i)
{
    const lx_plan_item *it = &J->plan->items[i];
    double t0 = lx_now();
    /* on the main thread, which waits for it: on all the job's threads */
    lx_plan_item_hash(it, &J->in_xxh3[2 * i], lx_linalg_threads());
    J->in_hash_seconds += lx_now() - t0;
}

/* The inputs of item i are what they were when the run opened them, and,
 * for a transformed item, the bytes hashed now (r) are the bytes hashed
 * before the computation (lx_writer_hash_inputs). */
static lx_status inputs_unchanged(const lx_apply_writer *J, size_t i, const lx_journal_record *r)
{
    const lx_plan_item *it = &J->plan->items[i];
    const lx_shard *as = &J->in->aligned->shards[it->aligned->shard];
    const lx_shard *bs = it->base ? &J->in->base->shards[it->base->shard] : NULL;
    lx_status st = lx_shard_unchanged(as);
    if (st == LX_OK && bs)
        st = lx_shard_unchanged(bs);
    const lx_shard *moved = !r->has_base || it->action == LX_ACT_COPY ? NULL
                            : r->aligned_xxh3 != J->in_xxh3[2 * i] ? as
                            : r->base_xxh3 != J->in_xxh3[2 * i + 1] ? bs : NULL;
    if (st == LX_OK && moved)
        st = lx_fail(LX_EINPUT, "%s: changed while loxstream read it (the bytes of tensor '%s' "
                     "differ between the first pass and the last)", moved->path, it->aligned->name);
    if (st != LX_OK) {
        char q[LX_NAME_QUOTE];
        st = lx_fail_append(st, "; tensor '%s' is not recorded: run the same command again "
                            "once the inputs no longer change",
                            lx_st_escape_name(it->aligned->name, q, sizeof q));
    }
    return st;
}

/* The tensor's bytes are written: its record, to be appended once they are
 * durable (lx_writer_flush). */
static lx_status finish_item(lx_apply_writer *J, size_t i, lx_out_shard *os, size_t idx)
{
    const lx_plan_item *it = &J->plan->items[i];
    lx_status st = lx_writer_flush(J); /* a tensor without bytes wrote nothing */
    if (st != LX_OK)
        return st;
    lx_test_point("data");
    lx_journal_record r;
    memset(&r, 0, sizeof r);
    r.tensor = (char *)lx_writer_out(J, i)->name;
    r.shard = (char *)os->name;
    r.offset = lx_writer_file_offset(os, idx, 0);
    r.length = lx_writer_out(J, i)->nbytes;
    r.out_xxh3 = XXH3_64bits_digest(J->tstate);
    r.has_base = lx_writer_uses_base(J, it);
    if (!r.has_base) {
        r.aligned_xxh3 = r.out_xxh3; /* a copy of aligned: the same bytes */
    } else {
        /* read again from the mapping, just after the computation read it */
        double t0 = lx_now();
        uint64_t h[2];
        lx_plan_item_hash(it, h, 1); /* the writer's thread, beside the computation */
        r.aligned_xxh3 = h[0];
        r.base_xxh3 = h[1];
        J->hash_seconds += lx_now() - t0;
    }
    if ((st = inputs_unchanged(J, i, &r)) != LX_OK)
        return st;
    J->pending_rec = r;
    J->pending_shard = os;
    J->pending_idx = idx;
    J->pending = 1;
    return LX_OK;
}

lx_status lx_writer_init(lx_apply_writer *w, const lx_apply_opts *o, const lx_inputs *in,
                         unsigned nparts)
{
    return lx_writer_init_layout(w, o, in, in->aligned, nparts);
}

lx_status lx_writer_init_layout(lx_apply_writer *w, const lx_apply_opts *o, const lx_inputs *in,
                                const lx_checkpoint *layout, unsigned nparts)
{
    memset(w, 0, sizeof *w);
    w->journal.fd = -1;
    w->output_path = o->output_path;
    w->nparts = nparts;
    w->plan = &in->plan;
    w->in = in;
    w->anchor_base = o->anchor_base;
    w->layout = layout;
    if (!(w->tstate = XXH3_createState()) ||
        !(w->in_xxh3 = calloc(2 * (in->plan.n ? in->plan.n : 1), sizeof *w->in_xxh3)))
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    lx_status st = lx_writer_layouts(w, o, layout);
    for (size_t s = 0; s < w->nshards && st == LX_OK; s++)
        if (!(w->shards[s].stream = XXH3_createState()))
            st = lx_fail(LX_EFAIL, "out of memory");
    return st;
}

void lx_writer_free(lx_apply_writer *w)
{
    for (size_t s = 0; s < w->nshards; s++) {
        lx_out_shard *os = &w->shards[s];
        if (os->open)
            lx_st_out_close(&os->file);
        lx_st_layout_free(&os->layout);
        XXH3_freeState(os->stream);
        free(os->entries);
        free(os->final_path);
        free(os->partial_path);
        free(os->own_name);
    }
    free(w->shards);
    free(w->slot);
    free(w->shard_of);
    free(w->in_xxh3);
    XXH3_freeState(w->tstate);
    lx_journal_close(&w->journal);
    memset(w, 0, sizeof *w);
    w->journal.fd = -1;
}

lx_status lx_writer_start(lx_apply_writer *w, size_t buffer_bytes)
{
    return lx_wq_start(&w->wq, writer_job, w, OUT_BUFFERS, buffer_bytes, WRITER_JOBS);
}

void lx_writer_stop(lx_apply_writer *w)
{
    lx_wq_stop(w->wq);
    w->wq = NULL;
}

lx_status lx_writer_drain(lx_apply_writer *w)
{
    return lx_wq_drain(w->wq);
}

unsigned char *lx_writer_buffer(lx_apply_writer *w, int *slot)
{
    return lx_wq_buffer(w->wq, slot);
}

unsigned char *lx_writer_buffer_at(lx_apply_writer *w, const lx_out_shard *os, size_t idx,
                                   uint64_t off, int *slot)
{
    unsigned char *b = lx_wq_buffer(w->wq, slot);
    return b ? b + lx_writer_file_offset(os, idx, off) % LX_WQ_SLACK : NULL;
}

lx_status lx_writer_begin(lx_apply_writer *w)
{
    lx_wq_job begin = {.kind = W_BEGIN, .slot = -1};
    return lx_wq_push(w->wq, &begin);
}

lx_status lx_writer_put(lx_apply_writer *w, lx_out_shard *os, size_t idx, uint64_t off,
                        const void *buf, size_t len, int slot)
{
    lx_wq_job j = {W_PUT, os, idx, 0, off, buf, len, slot};
    return lx_wq_push(w->wq, &j);
}

lx_status lx_writer_end_item(lx_apply_writer *w, size_t i, lx_out_shard *os, size_t idx)
{
    lx_wq_job fin = {.kind = W_FINISH, .p = os, .a = i, .b = idx, .slot = -1};
    return lx_wq_push(w->wq, &fin);
}

lx_status lx_writer_end_items(lx_apply_writer *w, lx_status st)
{
    /* the writer's failure, if it had one, comes before the computation's
     * (it happened first); then the writer is idle */
    lx_status wst = lx_writer_drain(w);
    if (wst != LX_OK)
        st = wst;
    if (st == LX_OK)
        return lx_writer_flush(w);
    /* keep what was done before the failure: a later run resumes from it */
    if (w->pending && w->pending_shard->open) {
        char *msg = lx_err_save();
        lx_writer_flush(w);
        lx_err_restore(st, msg);
    }
    return st;
}

/* apply_resume.c - preparing apply's output directory and resuming an
 * earlier run in it (see apply_resume.h).
 *
 * A later run with the same identity keeps every tensor whose record still
 * matches its output bytes and its inputs, and computes the rest; as each
 * tensor's bytes are a function of its inputs and the options only, the
 * result is the same bytes as an uninterrupted run's.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/apply_resume.h"
#include "loxstream/factor.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/linalg.h"
#include "loxstream/testhook.h"
#include "loxstream/verify.h"


static lx_status unlink_outputs(const char *out, const lx_identity *id)
{
    lx_identity_output *f;
    size_t n;
    lx_status st = lx_identity_outputs(id, &f, &n);
    for (size_t i = 0; i < n && st == LX_OK; i++) {
        if (!f[i].name || !lx_is_plain_filename(f[i].name))
            continue; /* never follow a damaged entry outside the directory */
        st = lx_unlink_in(out, f[i].name, "");
        if (st == LX_OK)
            st = lx_unlink_in(out, f[i].name, LX_PARTIAL_SUFFIX);
        if (st == LX_OK)
            st = lx_unlink_in(out, f[i].name, ".tmp");
    }
    lx_identity_outputs_free(f, n);
    return st;
}

/* --restart: remove what loxstream wrote in this directory (its state, the
 * outputs named by the old and the new identity), nothing else.  The marker
 * goes first, so that no intermediate state claims to be complete. */
static lx_status remove_own_files(const char *out, const lx_apply_identity *ri,
                                  const lx_identity *old)
{
    char *sdir = lx_path_join(out, LX_STATE_DIR);
    if (!sdir)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_unlink_in(sdir, "complete", "");
    if (st == LX_OK)
        st = lx_sync_dir(sdir);
    if (st == LX_OK)
        st = lx_unlink_in(out, LX_LIST_NAME, "");
    if (st == LX_OK)
        st = lx_unlink_in(out, LX_LIST_NAME, ".tmp");
    if (st == LX_OK)
        st = unlink_outputs(out, old);
    if (st == LX_OK)
        st = unlink_outputs(out, &ri->id);
    if (st == LX_OK)
        st = lx_state_remove(out, 1u << LX_STATE_JOURNAL | 1u << LX_STATE_TEMP |
                                      1u << LX_STATE_SHARD_TEMP);
    if (st == LX_OK)
        st = lx_sync_dir(sdir);
    if (st == LX_OK)
        st = lx_sync_dir(out);
    free(sdir);
    if (st == LX_OK)
        lx_test_point("restart");
    return st;
}

/* Free space for what is still to be written, before the first byte: the
 * blocks a shard lacks (its .partial is sparse until filled), the side
 * files, and a margin for the index, journal and list. */
static lx_status check_space(const char *out, const lx_inputs *in, const lx_apply_writer *w,
                             const lx_apply_identity *ri, const char *resolved, size_t existing)
{
    uint64_t need = 0, total = 0;
    struct stat sb;
    for (size_t s = 0; s < w->nshards; s++) {
        const lx_out_shard *os = &w->shards[s];
        uint64_t size = os->layout.file_size, have = 0;
        if (stat(os->partial_path, &sb) == 0 || stat(os->final_path, &sb) == 0)
            have = (uint64_t)sb.st_blocks * 512;
        total += size;
        need += size > have ? size - have : 0;
    }
    for (size_t i = 0; i < ri->nside; i++) {
        char *src = lx_path_join(in->aligned->dir, ri->side[i]);
        if (src && stat(src, &sb) == 0) {
            need += (uint64_t)sb.st_size;
            total += (uint64_t)sb.st_size;
        }
        free(src);
    }
    uint64_t margin = 4096 * (uint64_t)(w->nshards + ri->nside + 8) + 512 * (uint64_t)in->plan.n;
    need += margin;
    total += margin;
    return lx_outdir_check_space(out, resolved, existing, need, total);
}

/* Back to the state before completion: no marker, list or index, shards
 * under their temporary names, so that nothing looks complete while
 * tensors are done again. */
static lx_status reopen_output(const char *out, const lx_inputs *in, lx_apply_writer *w)
{
    char *sdir = lx_path_join(out, LX_STATE_DIR), *marker = lx_path_join(out, LX_COMPLETE_PATH);
    lx_status st = !sdir || !marker ? lx_fail(LX_EFAIL, "out of memory") : LX_OK;
    struct stat sb;
    if (st == LX_OK && lstat(marker, &sb) == 0) {
        st = lx_unlink_if(marker);
        if (st == LX_OK)
            st = lx_sync_dir(sdir);
        if (st == LX_OK)
            lx_test_point("uncomplete");
    }
    if (st == LX_OK)
        st = lx_unlink_in(out, LX_LIST_NAME, "");
    if (st == LX_OK && w->has_index)
        st = lx_unlink_in(out, LX_INDEX_NAME, "");
    for (size_t s = 0; s < w->nshards && st == LX_OK; s++) {
        lx_out_shard *os = &w->shards[s];
        if (lstat(os->partial_path, &sb) != 0 && errno == ENOENT &&
            lstat(os->final_path, &sb) == 0 && S_ISREG(sb.st_mode) &&
            rename(os->final_path, os->partial_path) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", os->final_path,
                               os->partial_path);
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    free(sdir);
    free(marker);
    return st;
}

/* lx_tensor_index over the output's tensors (plan items are in their
 * order): the aligned checkpoint's lookup, or a search of another layout
 * (it has no lookup table) */
static long layout_index(void *ctx, const char *tensor)
{
    const lx_checkpoint *ck = ctx;
    if (ck->lookup) {
        const lx_tensor *t = lx_checkpoint_find(ck, tensor);
        return t ? (long)(t - ck->tensors) : -1;
    }
    for (size_t i = 0; i < ck->ntensors; i++)
        if (!strcmp(ck->tensors[i].name, tensor))
            return (long)i;
    return -1;
}

size_t lx_resume_index(lx_apply_resume *rs, const lx_inputs *in, const lx_apply_writer *w)
{
    (void)in;
    return lx_journal_latest(rs->others, rs->nothers, &w->journal, layout_index,
                             (void *)w->layout, rs->rec, w->layout->ntensors);
}

/* Does record r describe tensor i where this run puts it, computed from
 * the inputs as they are now? */
int lx_resume_record_fits(const lx_inputs *in, const lx_apply_writer *w, size_t i,
                          const lx_journal_record *r)
{
    const lx_plan_item *it = &in->plan.items[i];
    const lx_tensor *t = lx_writer_out(w, i);
    const lx_out_shard *os = &w->shards[w->shard_of[i]];
    size_t idx = w->slot[i];
    return !strcmp(r->shard, os->name) && r->offset == lx_writer_file_offset(os, idx, 0) &&
           r->length == t->nbytes && r->has_base == lx_writer_uses_base(w, it);
}

static int inputs_match(const lx_inputs *in, size_t i, const lx_journal_record *r)
{
    const lx_plan_item *it = &in->plan.items[i];
    if (!r->has_base)
        return XXH3_64bits(it->aligned->data, it->aligned->nbytes) == r->aligned_xxh3;
    uint64_t h[2];
    lx_plan_item_hash(it, h, lx_linalg_threads());
    return h[0] == r->aligned_xxh3 && h[1] == r->base_xxh3;
}

static void warn_problem(void *ctx, const char *msg)
{
    lx_warn("%s", msg);
}

/* A completed output: is it intact, and still what these inputs give? */
static lx_status check_complete(const lx_apply_resume *rs, const lx_apply_opts *o,
                                const lx_inputs *in, const lx_apply_writer *w,
                                const lx_apply_identity *ri, int *intact)
{
    *intact = 0;
    lx_verify_result res;
    lx_status st = lx_verify_output(o->output_path, warn_problem, NULL, &res);
    if (st == LX_EVERIFY) {
        lx_warn("%s", lx_errmsg());
        return LX_OK;
    }
    if (st != LX_OK)
        return st;
    for (size_t i = 0; i < in->plan.n; i++) {
        const lx_journal_record *r = rs->rec[i];
        char q[LX_NAME_QUOTE];
        const char *why = !r                      ? "it has no journal record"
                          : !lx_resume_record_fits(in, w, i, r) ? "its journal record is not this run's"
                          : !inputs_match(in, i, r) ? "its inputs changed since the output was completed"
                                                   : NULL;
        lx_plan_item_advise(&in->plan.items[i], MADV_DONTNEED);
        if (why) {
            lx_warn("tensor '%s': %s: computing it again",
                    lx_st_escape_name(in->plan.items[i].aligned->name, q, sizeof q), why);
            return LX_OK;
        }
    }
    lx_listed_file *list;
    size_t n;
    uint64_t lh;
    if ((st = lx_list_read(o->output_path, &list, &n, &lh)) != LX_OK)
        return st == LX_EVERIFY ? LX_OK : st;
    int same = 1;
    for (size_t i = 0; i < ri->nside && same && st == LX_OK; i++) {
        char *src = lx_path_join(in->aligned->dir, ri->side[i]);
        uint64_t h = 0;
        st = src ? lx_file_xxh3(src, 0, &h) : lx_fail(LX_EFAIL, "out of memory");
        same = 0;
        for (size_t k = 0; k < n && st == LX_OK; k++)
            same |= !strcmp(list[k].name, ri->side[i]) && list[k].xxh3 == h;
        if (st == LX_OK && !same)
            lx_warn("%s: changed in the aligned model since the output was completed: copying it "
                    "again", src);
        free(src);
    }
    lx_list_free(list, n);
    *intact = st == LX_OK && same;
    return st;
}

/* An output of ours: its identity against this run's (or --restart). */
static lx_status take_over(const lx_apply_opts *o, const lx_apply_identity *ri,
                           lx_out_state *state)
{
    const char *out = o->output_path;
    lx_identity old;
    int exists;
    lx_status st = lx_identity_read(out, &old, &exists);
    if (st == LX_EOUTPUT && !o->restart)
        return lx_fail_append(LX_EOUTPUT, " (use --restart to discard this output)");
    if (st == LX_OK && o->restart) {
        st = remove_own_files(o->output_path, ri, &old);
        *state = LX_OUT_EMPTY;
    } else if (st == LX_EOUTPUT) {
        lx_identity_init(&old);
        st = remove_own_files(o->output_path, ri, &old);
        *state = LX_OUT_EMPTY;
    } else if (st == LX_OK) {
        char ctx[PATH_MAX + 64];
        snprintf(ctx, sizeof ctx, "%s holds a run with other options or inputs", out);
        st = lx_identity_compare(&old, &ri->id, ctx);
        if (st == LX_EOUTPUT)
            st = lx_fail_append(LX_EOUTPUT, "; use --restart to discard it, or choose another "
                                "output directory");
    }
    lx_identity_free(&old);
    return st;
}

/* See apply_resume.h. */
lx_status lx_resume_prepare(lx_apply_resume *rs, const lx_apply_opts *o, const lx_inputs *in,
                            const lx_part *pt, lx_apply_writer *w, const lx_apply_identity *ri,
                            lx_locks *locks)
{
    const char *out = o->output_path;
    char ro[PATH_MAX];
    size_t existing = 0;
    /* the factor output too: --restart would delete what the run reads */
    const lx_checkpoint *ins[3] = {in->base, in->aligned,
                                   o->stream.factors ? lx_factor_store_checkpoint(o->stream.factors)
                                                     : NULL};
    lx_status st = lx_output_outside(out, ins, 3, ro, &existing);
    if (st != LX_OK)
        return st;
    lx_out_state state;
    if ((st = lx_outdir_classify(out, &state)) != LX_OK)
        return st;
    int space_checked = 0;
    if (state != LX_OUT_OURS) {
        /* refused for space before anything is created */
        if ((st = check_space(out, in, w, ri, ro, existing)) != LX_OK || (st = lx_mkdir_p(out)) != LX_OK)
            return st;
        space_checked = 1;
    }
    if ((st = lx_locks_take(locks, out, pt->part, pt->nparts)) != LX_OK)
        return st;
    /* under the completion lock: parts of one output split it one way */
    char other[64];
    if (pt->nparts > 1 && lx_journal_other_split(out, pt->nparts, other, sizeof other))
        return lx_fail(LX_EOUTPUT, "%s: --part %u/%u: the output is being split into another "
                       "number of parts (it holds %s/%s): use that number of parts, or run "
                       "apply without --part to finish it", out, pt->part, pt->nparts,
                       LX_STATE_DIR, other);
    /* again under the locks: another part may have started it meanwhile */
    if ((st = lx_outdir_classify(out, &state)) != LX_OK)
        return st;
    if (state == LX_OUT_OURS && (st = take_over(o, ri, &state)) != LX_OK)
        return st;
    char *jpath = lx_journal_path(out, pt->part, pt->nparts);
    if (!jpath)
        return lx_fail(LX_EFAIL, "out of memory");
    if (state == LX_OUT_OURS) {
        int marker = 0;
        uint64_t mid, mlist;
        st = lx_journal_load(&w->journal, jpath, ri->hash);
        if (st == LX_OK)
            st = lx_journal_load_all(out, ri->hash, jpath, &rs->others, &rs->nothers, NULL);
        if (st == LX_OK) {
            lx_resume_index(rs, in, w);
            st = lx_marker_read(out, &marker, &mid, &mlist);
            if (st == LX_EVERIFY) {
                marker = 1;  /* damaged: check_complete says what and the run redoes it */
                st = LX_OK;
            }
        }
        int intact = 0;
        if (st == LX_OK && marker)
            st = check_complete(rs, o, in, w, ri, &intact);
        lx_journal_close(&w->journal);
        memset(rs->rec, 0, w->layout->ntensors * sizeof *rs->rec);
        if (st == LX_OK && intact) {
            rs->complete_already = 1;
            free(jpath);
            return LX_OK;
        }
        rs->resuming = 1;
    }
    if (st == LX_OK && !space_checked)
        st = check_space(out, in, w, ri, ro, existing);
    /* a resumed run rewrites it too: the side files may have changed */
    if (st == LX_OK)
        st = lx_identity_write(&ri->id, out);
    if (st == LX_OK)
        lx_test_point("identity");
    if (st == LX_OK && state == LX_OUT_OURS)
        st = reopen_output(out, in, w);
    if (st == LX_OK)
        st = lx_journal_open(&w->journal, jpath, pt->part, pt->nparts, ri->hash);
    if (st == LX_OK) {
        if (w->journal.foreign)
            lx_warn("%s: written for another run: ignored", jpath);
        if (w->journal.damaged)
            lx_warn("%s: %zu damaged records ignored (their tensors are computed again)", jpath,
                    w->journal.damaged);
        rs->recorded = lx_resume_index(rs, in, w);
        for (size_t i = pt->lo; i < pt->hi; i++)
            rs->own_recorded += rs->rec[i] != NULL;
        rs->prepared = 1;
    }
    free(jpath);
    if (st == LX_OK)
        lx_locks_release_completion(locks);
    return st;
}

/* See apply_resume.h. */
lx_status lx_resume_check_kept(lx_apply_resume *rs, const lx_inputs *in, lx_apply_writer *w,
                               size_t i, lx_out_shard *os, int *keep)
{
    *keep = 0;
    const lx_journal_record *r = rs->rec[i];
    const lx_plan_item *it = &in->plan.items[i];
    char q[LX_NAME_QUOTE];
    if (!r || os->fresh || !lx_resume_record_fits(in, w, i, r))
        return LX_OK;
    lx_st_escape_name(it->aligned->name, q, sizeof q);
    if (!inputs_match(in, i, r)) {
        lx_warn("tensor '%s': its inputs changed since it was written: computing it again", q);
        rs->redone++;
        return LX_OK;
    }
    XXH3_copyState(rs->snap, os->stream);
    uint64_t at0 = os->stream_at;
    XXH3_64bits_reset(rs->tstate);
    for (uint64_t off = 0; off < r->length;) {
        size_t len = r->length - off < LX_RESUME_CHECK_CHUNK ? (size_t)(r->length - off) : LX_RESUME_CHECK_CHUNK;
        ssize_t got = pread(os->file.fd, rs->rbuf, len, (off_t)(r->offset + off));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return lx_fail_errno(LX_EFAIL, got < 0 ? errno : EIO,
                                 "%s: tensor '%s': reading back %zu bytes at %" PRIu64 " failed",
                                 os->partial_path, q, len, r->offset + off);
        XXH3_64bits_update(rs->tstate, rs->rbuf, (size_t)got);
        lx_writer_stream_feed(os, r->offset + off, rs->rbuf, (size_t)got);
        off += (uint64_t)got;
    }
    /* dropped from the page cache, as the writer drops what it writes */
    lx_status rst = lx_st_out_release(&os->file, w->slot[i], 0, r->length, 0);
    if (rst != LX_OK)
        return rst;
    if (XXH3_64bits_digest(rs->tstate) != r->out_xxh3) {
        lx_warn("%s: tensor '%s': its bytes do not match its journal record: computing it again",
                os->partial_path, q);
        XXH3_copyState(os->stream, rs->snap);
        os->stream_at = at0;
        rs->redone++;
        return LX_OK;
    }
    *keep = 1;
    return LX_OK;
}

lx_status lx_resume_reload(lx_apply_resume *rs, const lx_part *pt, lx_apply_writer *w,
                           const lx_apply_identity *ri)
{
    char *jpath = lx_journal_path(w->output_path, pt->part, pt->nparts);
    if (!jpath)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_journal_close(&w->journal);
    lx_journals_free(rs->others, rs->nothers);
    rs->others = NULL;
    rs->nothers = 0;
    lx_status st = lx_journal_load(&w->journal, jpath, ri->hash);
    free(jpath);
    if (st == LX_OK)
        st = lx_journal_load_all(w->output_path, ri->hash, w->journal.path, &rs->others, &rs->nothers,
                                 NULL);
    return st;
}

lx_status lx_resume_init(lx_apply_resume *rs, size_t ntensors)
{
    memset(rs, 0, sizeof *rs);
    rs->rbuf = malloc(LX_RESUME_CHECK_CHUNK);
    rs->rec = calloc(ntensors ? ntensors : 1, sizeof *rs->rec);
    rs->tstate = XXH3_createState();
    rs->snap = XXH3_createState();
    if (!rs->rbuf || !rs->rec || !rs->tstate || !rs->snap)
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    return LX_OK;
}

void lx_resume_free(lx_apply_resume *rs)
{
    free(rs->rbuf);
    free(rs->rec);
    XXH3_freeState(rs->tstate);
    XXH3_freeState(rs->snap);
    lx_journals_free(rs->others, rs->nothers);
    memset(rs, 0, sizeof *rs);
}

lx_status lx_resume_item_begin(lx_apply_resume *rs, const lx_inputs *in, lx_apply_writer *w,
                               size_t i, lx_out_shard *os, int *need)
{
    int keep = 0;
    lx_status st = LX_OK;
    *need = 0;
    /* opening a shard and checking a kept tensor touch the writer's
     * state: only with the writer idle */
    if (!os->open || (rs->resuming && rs->rec[i]))
        st = lx_writer_drain(w);
    if (st == LX_OK && !os->open && (st = lx_writer_flush(w)) == LX_OK)
        st = lx_writer_shard_open(w, os);
    if (st == LX_OK && rs->resuming)
        st = lx_resume_check_kept(rs, in, w, i, os, &keep);
    if (st == LX_OK && keep) {
        rs->kept++;
    } else if (st == LX_OK) {
        *need = 1;
        st = lx_writer_begin(w);
    }
    return st;
}

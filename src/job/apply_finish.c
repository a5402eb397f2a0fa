/* apply_finish.c - completing an apply output (see apply_finish.h).
 *
 * Completion: side files, renames, index, checksum list, marker, each step
 * durable before the next.  A part (--part I/N) reads each shard back whole
 * for its checksum, as the other parts' bytes never pass through this
 * process, and checks every tensor against its record on the way.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/apply_card.h"
#include "loxstream/apply_finish.h"
#include "loxstream/fs.h"
#include "loxstream/hash.h"
#include "loxstream/testhook.h"

#define CHECK_CHUNK (4u << 20)      /* bytes per read when reading a shard back */

/* The run's parts, borrowed for the completion. */
typedef struct fin_run {
    const lx_inputs *in;
    const lx_part *pt;
    lx_apply_writer *w;
    const lx_apply_identity *ri;
    lx_apply_resume *rs;
    lx_locks *locks;
    lx_apply_finish *fin;
    unsigned char *buf;            /* CHECK_CHUNK bytes */
    XXH3_state_t *t;               /* a tensor's checksum */
} fin_run;

static lx_status write_index(fin_run *J)
{
    if (!J->w->has_index)
        return LX_OK;
    const lx_checkpoint *lay = J->w->layout;
    size_t n = lay->ntensors;
    const char **tn = malloc((n ? n : 1) * sizeof *tn), **sn = malloc((n ? n : 1) * sizeof *sn);
    if (!tn || !sn) {
        free(tn);
        free(sn);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        tn[i] = lay->tensors[i].name;
        sn[i] = J->w->shards[J->w->shard_of[i]].name;
    }
    char *path = lx_path_join(J->w->output_path, LX_INDEX_NAME);
    lx_status st = path ? lx_index_write(path, lay->total_bytes, n, tn, sn)
                        : lx_fail(LX_EFAIL, "out of memory");
    free(path);
    free(tn);
    free(sn);
    return st;
}

static lx_status list_add(lx_listed_file *files, size_t *n, const char *name, uint64_t h)
{
    if (!(files[*n].name = strdup(name)))
        return lx_fail(LX_EFAIL, "out of memory");
    files[(*n)++].xxh3 = h;
    return LX_OK;
}

/* ---- parts: checking back and completing ------------------------------- */

static int cmp_unsigned(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

/* "part 3" or "parts 1, 3-5, 8, 9" into buf (ps: ascending, duplicates
 * allowed), cut short with "..." when buf is full. */
static void format_parts(const unsigned *ps, size_t n, char *buf, size_t len)
{
    size_t at = 0, distinct = 0;
    for (size_t k = 0; k < n; k++)
        distinct += k == 0 || ps[k] != ps[k - 1];
    at += (size_t)snprintf(buf, len, "%s ", distinct == 1 ? "part" : "parts");
    for (size_t k = 0; k < n && at < len;) {
        size_t e = k;
        while (e + 1 < n && (ps[e + 1] == ps[e] || ps[e + 1] == ps[e] + 1))
            e++;
        if (at > len - 40) {
            snprintf(buf + at, len - at, "...");
            return;
        }
        if (ps[e] == ps[k]) {
            at += (size_t)snprintf(buf + at, len - at, "%s%u", k ? ", " : "", ps[k]);
        } else if (ps[e] == ps[k] + 1) {
            /* two in a row: "2, 3" */
            at += (size_t)snprintf(buf + at, len - at, "%s%u", k ? ", " : "", ps[k]);
            while (ps[k + 1] == ps[k])
                k++;
            k++;
            continue;
        } else {
            at += (size_t)snprintf(buf + at, len - at, "%s%u-%u", k ? ", " : "", ps[k], ps[e]);
        }
        k = e + 1;
    }
}

/* Read len bytes at off of fd into the checksums (whole file, and t if
 * not NULL); with expect, the bytes must equal it. */
static lx_status read_back(fin_run *J, int fd, const char *path, uint64_t off, uint64_t len,
                           XXH3_state_t *whole, XXH3_state_t *t, const char *expect, int *same)
{
    for (uint64_t done = 0; done < len;) {
        size_t want = len - done < CHECK_CHUNK ? (size_t)(len - done) : CHECK_CHUNK;
        ssize_t got = pread(fd, J->buf, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return lx_fail_errno(LX_EFAIL, got < 0 ? errno : EIO,
                                 "%s: reading back %zu bytes at %" PRIu64 " failed", path, want,
                                 off + done);
        XXH3_64bits_update(whole, J->buf, (size_t)got);
        if (t)
            XXH3_64bits_update(t, J->buf, (size_t)got);
        if (expect && memcmp(J->buf, expect + done, (size_t)got))
            *same = 0;
        done += (uint64_t)got;
    }
    return LX_OK;
}

/* With several writers the shard's checksum cannot be streamed: read the
 * shard back whole for it, and check each tensor's bytes against the
 * record J->rs->rec holds for it; the parts of those that do not match (each
 * named in a warning) are appended to bad[*nbad]. */
static lx_status readback_shard(fin_run *J, size_t s, unsigned *bad, size_t *nbad)
{
    lx_out_shard *os = &J->w->shards[s];
    const char *path = os->partial_path;
    int fd;
    struct stat sb;
    lx_status st = lx_open_regular(path, O_RDONLY, LX_EOUTPUT, &fd, &sb);
    if (st == LX_OK && fd < 0)
        st = lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open", path);
    if (st != LX_OK)
        return st;
    int same = 1;
    if ((uint64_t)sb.st_size != os->layout.file_size)
        st = lx_fail(LX_EFAIL, "%s: %" PRIu64 " bytes, the run writes %" PRIu64, path,
                     (uint64_t)sb.st_size, os->layout.file_size);
    XXH3_64bits_reset(os->stream);
    if (st == LX_OK)
        st = read_back(J, fd, path, 0, os->layout.header_size, os->stream, NULL,
                       os->layout.header, &same);
    if (st == LX_OK && !same)
        st = lx_fail(LX_EFAIL, "%s: its header is not the one the run writes", path);
    for (size_t i = 0; i < J->in->plan.n && st == LX_OK; i++) {
        const lx_tensor *t = lx_writer_out(J->w, i);
        if (J->w->shard_of[i] != s)
            continue;
        XXH3_64bits_reset(J->t);
        st = read_back(J, fd, path, lx_writer_file_offset(os, J->w->slot[i], 0), t->nbytes, os->stream,
                       J->t, NULL, NULL);
        if (st == LX_OK && XXH3_64bits_digest(J->t) != J->rs->rec[i]->out_xxh3) {
            char q[LX_NAME_QUOTE];
            unsigned p = lx_part_of(J->pt, i);
            lx_warn("%s: tensor '%s' (part %u/%u): its bytes do not match its journal record",
                    path, lx_st_escape_name(t->name, q, sizeof q), p, J->pt->nparts);
            bad[(*nbad)++] = p;
        }
    }
    if (st == LX_OK)
        os->xxh3 = XXH3_64bits_digest(os->stream);
    close(fd);
    return st;
}

/* Every tensor is durable and recorded.  Side files and the card, then
 * the shards' final names, then index, checksum list and marker: each step durable
 * before the next, the marker last.  bad: room for one part number per
 * tensor (parts, readback_shard). */
static lx_status complete_output(fin_run *J, unsigned *bad)
{
    const char *out = J->w->output_path;
    /* leftovers of a part killed while creating a shard (lx_st_out_open_shared):
     * removed once no other process writes the output */
    lx_status st = lx_state_remove(out, 1u << LX_STATE_SHARD_TEMP);
    size_t nfiles = 0, nbad = 0;
    lx_listed_file *files = calloc(J->w->nshards + J->ri->nside + 2, sizeof *files);
    if (!files)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t s = 0; s < J->w->nshards && st == LX_OK; s++) {
        lx_out_shard *os = &J->w->shards[s];
        if (!os->open)
            st = lx_writer_shard_open(J->w, os); /* a shard without tensors, or of other parts */
        if (st == LX_OK)
            st = lx_st_out_sync(&os->file);
        if (st == LX_OK)
            st = lx_st_out_close(&os->file);
        os->open = 0;
        if (st == LX_OK && J->pt->nparts > 1)
            st = readback_shard(J, s, bad, &nbad);
        else if (st == LX_OK && os->stream_at == os->layout.file_size)
            os->xxh3 = XXH3_64bits_digest(os->stream);
        else if (st == LX_OK)
            st = lx_file_xxh3(os->partial_path, 0, &os->xxh3); /* not streamed in order */
        if (st == LX_OK)
            st = list_add(files, &nfiles, os->name, os->xxh3);
    }
    if (st == LX_OK && nbad) {
        char parts[512];
        qsort(bad, nbad, sizeof *bad, cmp_unsigned);
        format_parts(bad, nbad, parts, sizeof parts);
        st = lx_fail(LX_EFAIL, "%s: not completed: %zu tensors do not match their journal "
                     "records; run %s again (or apply without --part) to compute them again",
                     out, nbad, parts);
        J->fin->final_message = 1;
    }
    uint64_t index_h = 0;
    for (size_t i = 0; i < J->ri->nside && st == LX_OK; i++) {
        char *src = lx_path_join(J->in->aligned->dir, J->ri->side[i]), *dst = lx_path_join(out, J->ri->side[i]);
        uint64_t h;
        /* replaced, not written through: what is there under our name may be a link */
        st = src && dst ? lx_unlink_if(dst) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK)
            st = lx_copy_file(src, dst);
        if (st == LX_OK)
            st = lx_file_xxh3(dst, 1, &h);
        if (st == LX_OK) {
            lx_test_point("side");
            st = list_add(files, &nfiles, J->ri->side[i], h);
        }
        free(src);
        free(dst);
    }
    uint64_t card_h = 0;
    /* the model card goes with the aligned model's layout only */
    int card = J->w->layout == J->in->aligned;
    if (st == LX_OK && card)
        st = lx_card_write(J->fin->o, J->in, J->w, &card_h);
    if (st == LX_OK && card) {
        lx_test_point("card");
        st = list_add(files, &nfiles, LX_CARD_NAME, card_h);
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    for (size_t s = 0; s < J->w->nshards && st == LX_OK; s++) {
        lx_out_shard *os = &J->w->shards[s];
        if (rename(os->partial_path, os->final_path) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", os->partial_path,
                               os->final_path);
        else
            lx_test_point("rename");
    }
    if (st == LX_OK)
        st = lx_sync_dir(out);
    if (st == LX_OK && J->w->has_index) {
        char *path = lx_path_join(out, LX_INDEX_NAME);
        st = path ? lx_unlink_in(out, LX_INDEX_NAME, ".tmp") : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK)
            st = write_index(J);
        if (st == LX_OK)
            st = lx_file_xxh3(path, 0, &index_h);
        if (st == LX_OK) {
            lx_test_point("index");
            st = list_add(files, &nfiles, LX_INDEX_NAME, index_h);
        }
        free(path);
    }
    uint64_t list_h = 0;
    if (st == LX_OK)
        st = lx_list_write(out, files, nfiles, &list_h);
    if (st == LX_OK) {
        lx_test_point("list");
        st = lx_marker_write(out, J->ri->hash, list_h);
    }
    if (st == LX_OK)
        lx_test_point("marker");
    lx_list_free(files, nfiles);
    return st;
}

static lx_status finish_part(fin_run *J)
{
    const char *out = J->w->output_path;
    lx_status st = lx_locks_wait_completion(J->locks, out);
    if (st != LX_OK)
        return st;
    /* (on Linux a refused conversion drops the shared lock: this process
     * writes nothing more, whatever happens) */
    int alone = lx_locks_alone(J->locks);
    /* completed meanwhile?  (not while this part ran, by the locks) */
    int marker = 0;
    uint64_t mid, mlist;
    st = lx_marker_read(out, &marker, &mid, &mlist);
    if (st == LX_OK && marker && mid == J->ri->hash) {
        snprintf(J->fin->msg, sizeof J->fin->msg, "apply: part %u/%u done; %s was completed "
                 "by another process", J->pt->part, J->pt->nparts, out);
        return LX_OK;
    }
    /* every journal as it is now, this part's last */
    if ((st = lx_resume_reload(J->rs, J->pt, J->w, J->ri)) != LX_OK)
        return st;
    lx_resume_index(J->rs, J->in, J->w);
    unsigned *missing = malloc((J->in->plan.n ? J->in->plan.n : 1) * sizeof *missing);
    if (!missing)
        return lx_fail(LX_EFAIL, "out of memory");
    size_t nmissing = 0;
    for (size_t i = 0; i < J->in->plan.n; i++)
        if (!J->rs->rec[i] || !lx_resume_record_fits(J->in, J->w, i, J->rs->rec[i]))
            missing[nmissing++] = lx_part_of(J->pt, i);
    char parts[512];
    if (nmissing) {
        format_parts(missing, nmissing, parts, sizeof parts);
        snprintf(J->fin->msg, sizeof J->fin->msg, "apply: part %u/%u done; waiting for %s; "
                 "the last part to finish completes the output", J->pt->part, J->pt->nparts, parts);
    } else if (!alone) {
        snprintf(J->fin->msg, sizeof J->fin->msg, "apply: part %u/%u done; every tensor is "
                 "done, but another process is still writing %s: it completes the output",
                 J->pt->part, J->pt->nparts, out);
    } else {
        st = complete_output(J, missing);
        if (st == LX_OK) {
            J->fin->completed = 1;
            snprintf(J->fin->msg, sizeof J->fin->msg, "apply: part %u/%u done, the last: "
                     "%s is complete", J->pt->part, J->pt->nparts, out);
        }
    }
    free(missing);
    return st;
}

static lx_status with_run(lx_apply_finish *fin, const lx_inputs *in, const lx_part *pt,
                          lx_apply_writer *w, const lx_apply_identity *ri, lx_apply_resume *rs,
                          lx_locks *locks, int part)
{
    fin_run J = {in, pt, w, ri, rs, locks, fin, malloc(CHECK_CHUNK), XXH3_createState()};
    lx_status st;
    if (!J.buf || !J.t)
        st = lx_fail(LX_EFAIL, "out of memory allocating buffers");
    else if (part)
        st = finish_part(&J);
    else if ((st = lx_locks_wait_completion(locks, w->output_path)) == LX_OK)
        st = complete_output(&J, NULL);
    free(J.buf);
    XXH3_freeState(J.t);
    return st;
}

lx_status lx_finish_run(lx_apply_finish *fin, const lx_inputs *in, const lx_part *pt,
                        lx_apply_writer *w, const lx_apply_identity *ri, lx_apply_resume *rs,
                        lx_locks *locks)
{
    return with_run(fin, in, pt, w, ri, rs, locks, 0);
}

lx_status lx_finish_part(lx_apply_finish *fin, const lx_inputs *in, const lx_part *pt,
                         lx_apply_writer *w, const lx_apply_identity *ri, lx_apply_resume *rs,
                         lx_locks *locks)
{
    return with_run(fin, in, pt, w, ri, rs, locks, 1);
}

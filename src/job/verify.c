/* verify.c - check an output directory against its identity, journals,
 * checksum list and completion marker (see verify.h).
 *
 * Each shard is read once, sequentially: the bytes feed the whole-file XXH3
 * (for loxstream.xxh3) and the XXH3 of every journal record they fall in.
 * Nothing is mapped, so a file that shrinks meanwhile is a read error, not a
 * SIGBUS.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "loxstream/xxh.h"

#include "loxstream/journal.h"
#include "loxstream/safetensors.h"
#include "loxstream/fs.h"
#include "loxstream/parse.h"
#include "loxstream/verify.h"

#define CHUNK (4u << 20)

typedef struct vctx {
    const char *dir;
    lx_verify_report report;
    void *ctx;
    lx_verify_result *res;
    size_t problems;
    unsigned char *buf;
} vctx;

static void vreport(vctx *v, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (v->report)
        v->report(v->ctx, msg);
}

static void problem(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What makes the output incomplete or damaged. */
static void problem(vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(v, fmt, ap);
    va_end(ap);
    v->problems++;
}

/* Something found that does not change the verdict. */
static void note(vctx *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(v, fmt, ap);
    va_end(ap);
}

/* One file the identity says the run writes. */
typedef struct out_file {
    char *name;
    int shard;                     /* a safetensors shard (else index or side file) */
    uint64_t size;                 /* shards: expected size */
    size_t tensors;                /* shards: tensors in it */
    int has_header;                /* shards: want_header set (by the identity) */
    uint64_t want_header;          /* XXH3 of the header the run writes */
    const lx_journal_record **recs;/* shards: latest records, by offset */
    size_t nrec;
    int header_ok;                 /* shards: h parsed (the validating parser of inspect) */
    lx_st_header h;
    uint64_t header_xxh3;          /* of the header bytes found */
} out_file;

static int cmp_rec_offset(const void *a, const void *b)
{
    const lx_journal_record *x = *(const lx_journal_record *const *)a,
                            *y = *(const lx_journal_record *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* The lines of journal j that give no record, each by number: ignored by
 * apply and verify alike (journal.h), so they are reported, not counted as
 * damage; what a lost record leaves uncovered is found by the checks. */
static void report_bad_lines(vctx *v, const lx_journal *j)
{
    for (size_t i = 0; i < j->nbad; i++)
        note(v, "%s: line %zu: %s: ignored", j->path, j->bad[i].line,
             j->bad[i].kind == LX_LINE_CHECKSUM
                 ? "damaged (its checksum does not match its bytes)"
                 : "forged or corrupt (its checksum matches, but it is not a valid record)");
    if (j->damaged > j->nbad)
        note(v, "%s: %zu more lines that give no record: ignored", j->path, j->damaged - j->nbad);
    if (j->torn)
        note(v, "%s: line %zu: torn (an unfinished last line, as a crash while appending "
             "leaves; the next apply cuts it off): ignored", j->path, j->torn_line);
    v->res->journal_lines += j->damaged + (size_t)(j->torn != 0);
}

/* Every journal of dir/.loxstream (journal.h's scan), the foreign ones named. */
static lx_status load_journals(vctx *v, uint64_t identity, lx_journal **out, size_t *n)
{
    int unlisted = 0;
    lx_status st = lx_journal_load_all(v->dir, identity, NULL, out, n, &unlisted);
    if (st == LX_EOUTPUT)
        return LX_EVERIFY; /* a journal that is no regular file, named by the message */
    if (st == LX_OK && unlisted)
        problem(v, "%s/%s: cannot list: %s", v->dir, LX_STATE_DIR, strerror(unlisted));
    for (size_t k = 0; st == LX_OK && k < *n; k++) {
        const lx_journal *j = &(*out)[k];
        if (j->foreign)
            problem(v, "%s: belongs to another run (its identity differs)", j->path);
        report_bad_lines(v, j);
    }
    return st;
}

/* The files named by the identity's "output NAME" entries. */
static lx_status expected_outputs(vctx *v, const lx_identity *id, out_file **out, size_t *n)
{
    lx_identity_output *o;
    size_t no;
    *n = 0;
    lx_status st = lx_identity_outputs(id, &o, &no);
    if (st == LX_OK && !(*out = calloc(no ? no : 1, sizeof **out)))
        st = lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; st == LX_OK && i < no; i++) {
        if (!o[i].name) {
            problem(v, "%s: malformed entry '%s'", LX_IDENTITY_PATH, o[i].key);
            continue;
        }
        out_file *f = &(*out)[(*n)++];
        f->name = o[i].name;
        o[i].name = NULL;
        f->shard = o[i].shard;
        f->size = o[i].size;
        f->tensors = o[i].tensors;
        f->has_header = o[i].has_header;
        f->want_header = o[i].header_xxh3;
    }
    lx_identity_outputs_free(o, no);
    return st;
}

/* Before completion a shard has its temporary name. */
static lx_status shard_path(vctx *v, const out_file *f, char **path, int *partial)
{
    char *final = lx_path_join(v->dir, f->name), *tmp = NULL;
    if (!final || asprintf(&tmp, "%s" LX_PARTIAL_SUFFIX, final) < 0) {
        free(final);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    struct stat sb;
    *partial = !v->res->complete && f->shard && stat(tmp, &sb) == 0;
    *path = *partial ? tmp : final;
    free(*partial ? final : tmp);
    return LX_OK;
}

/* Parse the shard's header into f->h with the parser inspect uses
 * (lx_st_parse_header), and hash its bytes; a header it rejects is a
 * problem.  A file that is missing or no regular file is left to
 * scan_file to report: f->header_ok = 0. */
static lx_status read_header(vctx *v, out_file *f)
{
    f->header_ok = 0;
    memset(&f->h, 0, sizeof f->h);
    char *path;
    int partial, fd;
    lx_status st = shard_path(v, f, &path, &partial);
    if (st != LX_OK)
        return st;
    char q[LX_NAME_QUOTE], shown[LX_NAME_QUOTE + 16];
    snprintf(shown, sizeof shown, "%s%s", lx_st_escape_name(f->name, q, sizeof q),
             partial ? LX_PARTIAL_SUFFIX : "");
    struct stat sb;
    if (lx_open_regular(path, O_RDONLY, LX_EVERIFY, &fd, &sb) != LX_OK || fd < 0) {
        free(path);
        return LX_OK;
    }
    uint64_t size = (uint64_t)sb.st_size, n = 0;
    unsigned char len8[8];
    if (size < 8 || pread(fd, len8, 8, 0) != 8) {
        problem(v, "%s: %" PRIu64 " bytes: too short for a safetensors header", shown, size);
    } else {
        for (int b = 7; b >= 0; b--)
            n = n << 8 | len8[b];
        /* what the file holds of the header, at most the parser's limit */
        uint64_t have = n > LX_ST_MAX_HEADER ? 8 : n < size - 8 ? 8 + n : size;
        unsigned char *buf = malloc((size_t)have);
        if (!buf)
            st = lx_fail(LX_EFAIL, "out of memory");
        else if (pread(fd, buf, (size_t)have, 0) != (ssize_t)have)
            problem(v, "%s: cannot read its header: %s", shown, strerror(errno));
        else if (lx_st_parse_header(buf, have, size, shown, &f->h) != LX_OK)
            problem(v, "%s: not a valid safetensors file (inspect rejects it too): %s", shown,
                    lx_errmsg());
        else {
            f->header_ok = 1;
            f->header_xxh3 = XXH3_64bits(buf, (size_t)have);
        }
        free(buf);
    }
    close(fd);
    free(path);
    return st;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* lx_tensor_index over the sorted names of the run's tensors */
typedef struct names {
    char **v;
    size_t n;
} names;

static long name_index(void *ctx, const char *tensor)
{
    const names *t = ctx;
    char *const *hit = bsearch(&tensor, t->v, t->n, sizeof *t->v, cmp_name);
    return hit ? (long)(hit - t->v) : -1;
}

/* The tensors the run writes: those of the shards' headers, and for a shard
 * whose header cannot be read, every tensor a record puts in it. */
static lx_status run_tensors(vctx *v, out_file *files, size_t nfiles, const lx_journal *js,
                             size_t nj, names *t)
{
    size_t cap = 0;
    lx_status st = LX_OK;
    for (size_t i = 0; st == LX_OK && i < nfiles; i++) {
        if (!files[i].shard)
            continue;
        if ((st = read_header(v, &files[i])) != LX_OK)
            break;
        const lx_st_header *h = &files[i].h;
        int known = files[i].header_ok;
        size_t nr = 0;
        for (size_t j = 0; !known && j < nj; j++)
            nr += js[j].n;
        if (t->n + h->ntensors + nr > cap) {
            cap = 2 * (t->n + h->ntensors + nr) + 16;
            char **p = realloc(t->v, cap * sizeof *p);
            if (!p)
                return lx_fail(LX_EFAIL, "out of memory");
            t->v = p;
        }
        for (size_t k = 0; k < h->ntensors && st == LX_OK; k++)
            if (!(t->v[t->n++] = strdup(h->tensors[k].name)))
                st = lx_fail(LX_EFAIL, "out of memory");
        for (size_t j = 0; !known && j < nj; j++)
            for (size_t k = 0; k < js[j].n; k++)
                if (!strcmp(js[j].records[k].shard, files[i].name) &&
                    !(t->v[t->n++] = strdup(js[j].records[k].tensor)))
                    st = lx_fail(LX_EFAIL, "out of memory");
    }
    if (st == LX_OK && t->n > 1) {
        qsort(t->v, t->n, sizeof *t->v, cmp_name);
        size_t u = 0;
        for (size_t k = 0; k < t->n; k++) {
            if (u && !strcmp(t->v[k], t->v[u - 1]))
                free(t->v[k]);
            else
                t->v[u++] = t->v[k];
        }
        t->n = u;
    }
    return st;
}

/* Read the file once: its XXH3 (when file_hash) and the XXH3 of each record's
 * range, compared with the record.  *exists = 0 if there is no such file,
 * -1 if what is there is no regular file (reported). */
static lx_status scan_file(vctx *v, const char *path, const char *shown, uint64_t *file_hash,
                           out_file *f, int *exists, uint64_t *size, uint64_t *header_size)
{
    *exists = 0;
    *size = 0;
    *header_size = 0;
    int fd;
    struct stat sb;
    if (lx_open_regular(path, O_RDONLY, LX_EVERIFY, &fd, &sb) != LX_OK) {
        problem(v, "%s", lx_errmsg());
        *exists = -1; /* there, but not to be read */
        return LX_OK;
    }
    if (fd < 0)
        return LX_OK;
    *exists = 1;
    *size = (uint64_t)sb.st_size;
    size_t n = f ? f->nrec : 0;
    XXH3_state_t *fs = file_hash ? XXH3_createState() : NULL;
    XXH3_state_t **rs = calloc(n ? n : 1, sizeof *rs);
    lx_status st = LX_OK;
    if ((file_hash && !fs) || !rs) {
        st = lx_fail(LX_EFAIL, "out of memory");
        goto out;
    }
    if (fs)
        XXH3_64bits_reset(fs);
    int read_error = 0;
    size_t first = 0;
    for (uint64_t off = 0; off < *size;) {
        size_t want = *size - off < CHUNK ? (size_t)(*size - off) : CHUNK;
        ssize_t r = pread(fd, v->buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            problem(v, "%s: read failed at byte %" PRIu64 ": %s", shown, off,
                    r < 0 ? strerror(errno) : "file shrank");
            read_error = 1;
            break;
        }
        if (off == 0 && r >= 8) {
            uint64_t nh = 0;
            for (int b = 7; b >= 0; b--)
                nh = nh << 8 | v->buf[b];
            *header_size = nh <= *size - 8 ? 8 + nh : 0;
        }
        if (fs)
            XXH3_64bits_update(fs, v->buf, (size_t)r);
        uint64_t c0 = off, c1 = off + (uint64_t)r;
        for (size_t k = first; k < n && f->recs[k]->offset < c1; k++) {
            const lx_journal_record *rec = f->recs[k];
            if (rec->length == 0 || rec->length > UINT64_MAX - rec->offset)
                continue;
            uint64_t e = rec->offset + rec->length;
            if (e <= c0)
                continue;
            if (!rs[k]) {
                if (!(rs[k] = XXH3_createState())) {
                    st = lx_fail(LX_EFAIL, "out of memory");
                    goto out;
                }
                XXH3_64bits_reset(rs[k]);
            }
            uint64_t lo = rec->offset > c0 ? rec->offset : c0, hi = e < c1 ? e : c1;
            XXH3_64bits_update(rs[k], v->buf + (lo - c0), (size_t)(hi - lo));
        }
        while (first < n && f->recs[first]->offset + f->recs[first]->length <= c1)
            first++;
        off = c1;
        v->res->bytes += (uint64_t)r;
    }
    for (size_t k = 0; k < n && !read_error; k++) {
        const lx_journal_record *rec = f->recs[k];
        char q[LX_NAME_QUOTE], h1[LX_HEX64], h2[LX_HEX64];
        lx_st_escape_name(rec->tensor, q, sizeof q);
        if (rec->length > UINT64_MAX - rec->offset || rec->offset + rec->length > *size) {
            problem(v, "%s: tensor '%s': its recorded bytes %" PRIu64 "..%" PRIu64
                    " lie beyond the end of the file (%" PRIu64 " bytes)", shown, q, rec->offset,
                    rec->offset + rec->length, *size);
            v->res->bad_tensors++;
            continue;
        }
        uint64_t h = rs[k] ? XXH3_64bits_digest(rs[k]) : XXH3_64bits(NULL, 0);
        if (h != rec->out_xxh3) {
            problem(v, "%s: tensor '%s' (bytes %" PRIu64 "..%" PRIu64 "): XXH3 %s, its journal "
                    "record says %s", shown, q, rec->offset, rec->offset + rec->length,
                    lx_hex64(h, h1), lx_hex64(rec->out_xxh3, h2));
            v->res->bad_tensors++;
        }
    }
    if (read_error)
        v->res->bad_tensors += n;
    if (fs && !read_error)
        *file_hash = XXH3_64bits_digest(fs);
    else if (read_error)
        *exists = -1; /* reported */
out:
    for (size_t k = 0; k < n; k++)
        XXH3_freeState(rs[k]);
    free(rs);
    XXH3_freeState(fs);
    close(fd);
    return st;
}

/* Every byte after the header lies in exactly one record. */
static void check_coverage(vctx *v, const char *shown, const out_file *f, uint64_t header_size,
                           uint64_t size)
{
    uint64_t pos = header_size;
    for (size_t k = 0; k < f->nrec; k++) {
        const lx_journal_record *r = f->recs[k];
        if (r->length == 0)
            continue;
        if (r->offset > pos)
            problem(v, "%s: bytes %" PRIu64 "..%" PRIu64 " are not covered by any journal record",
                    shown, pos, r->offset);
        else if (r->offset < pos)
            problem(v, "%s: journal records overlap at byte %" PRIu64, shown, r->offset);
        if (r->offset + r->length > pos)
            pos = r->offset + r->length;
    }
    if (pos < size)
        problem(v, "%s: bytes %" PRIu64 "..%" PRIu64 " are not covered by any journal record",
                shown, pos, size);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const lx_st_tensor *const *)a)->name, (*(const lx_st_tensor *const *)b)->name);
}

/* The shard's header against the run's records: the header bytes the
 * identity records (they fix every tensor's name, dtype, shape and
 * offsets), its tensor count, and each journal record's tensor at the
 * bytes the header gives it. */
static lx_status check_header(vctx *v, const char *shown, const out_file *f)
{
    const lx_st_header *h = &f->h;
    char h1[LX_HEX64], h2[LX_HEX64], q[LX_NAME_QUOTE];
    if (f->has_header && f->header_xxh3 != f->want_header)
        problem(v, "%s: its header (%" PRIu64 " bytes) is not the one the run wrote: XXH3 %s, "
                "%s records %s (a tensor's name, dtype, shape or offsets changed)", shown,
                h->data_start, lx_hex64(f->header_xxh3, h1), LX_IDENTITY_PATH,
                lx_hex64(f->want_header, h2));
    if (h->ntensors != f->tensors)
        problem(v, "%s: its header lists %zu tensors, the run writes %zu", shown, h->ntensors,
                f->tensors);
    const lx_st_tensor **by_name = malloc((h->ntensors ? h->ntensors : 1) * sizeof *by_name);
    if (!by_name)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t k = 0; k < h->ntensors; k++)
        by_name[k] = &h->tensors[k];
    qsort(by_name, h->ntensors, sizeof *by_name, cmp_tensor_name);
    for (size_t k = 0; k < f->nrec; k++) {
        const lx_journal_record *r = f->recs[k];
        lx_st_tensor key = {.name = r->tensor};
        const lx_st_tensor *kp = &key, **hit =
            bsearch(&kp, by_name, h->ntensors, sizeof *by_name, cmp_tensor_name);
        lx_st_escape_name(r->tensor, q, sizeof q);
        if (!hit) {
            problem(v, "%s: tensor '%s' has a journal record but is not in the header", shown, q);
        } else if (h->data_start + (*hit)->begin != r->offset ||
                   (*hit)->end - (*hit)->begin != r->length) {
            problem(v, "%s: tensor '%s': the header puts it at bytes %" PRIu64 "..%" PRIu64
                    ", its journal record at %" PRIu64 "..%" PRIu64, shown, q,
                    h->data_start + (*hit)->begin, h->data_start + (*hit)->end, r->offset,
                    r->offset + r->length);
        }
    }
    free(by_name);
    return LX_OK;
}

static const lx_listed_file *find_listed(const lx_listed_file *l, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(l[i].name, name))
            return &l[i];
    return NULL;
}

static lx_status check_files(vctx *v, out_file *files, size_t nfiles, const lx_listed_file *list,
                             size_t nlist)
{
    lx_verify_result *res = v->res;
    lx_status st = LX_OK;
    for (size_t i = 0; i < nfiles && st == LX_OK; i++) {
        out_file *f = &files[i];
        char q[LX_NAME_QUOTE];
        const char *shown = lx_st_escape_name(f->name, q, sizeof q);
        const lx_listed_file *l = res->complete ? find_listed(list, nlist, f->name) : NULL;
        if (res->complete && !l && strcmp(f->name, LX_LIST_NAME))
            problem(v, "%s: not in %s", shown, LX_LIST_NAME);
        if (!f->shard && !l)
            continue;
        char *path;
        int partial;
        if ((st = shard_path(v, f, &path, &partial)) != LX_OK)
            return st;
        char shown_partial[LX_NAME_QUOTE + 16];
        if (partial) {
            snprintf(shown_partial, sizeof shown_partial, "%s" LX_PARTIAL_SUFFIX, shown);
            shown = shown_partial;
        }
        uint64_t h = 0, size, hs;
        int exists;
        st = scan_file(v, path, shown, l ? &h : NULL, f->shard ? f : NULL, &exists, &size, &hs);
        if (st == LX_OK && f->shard)
            res->done += f->nrec;
        if (st == LX_OK && f->shard && exists > 0 && f->header_ok)
            st = check_header(v, shown, f);
        if (st == LX_OK && l) {
            char h1[LX_HEX64], h2[LX_HEX64];
            res->files++;
            if (exists <= 0) {
                if (!exists)
                    problem(v, "%s: missing", shown);
                res->bad_files++;
            } else if (h != l->xxh3) {
                problem(v, "%s: XXH3 %s, %s says %s", shown, lx_hex64(h, h1), LX_LIST_NAME,
                        lx_hex64(l->xxh3, h2));
                res->bad_files++;
            }
        }
        if (st == LX_OK && res->complete && f->shard && exists > 0) {
            if (size != f->size)
                problem(v, "%s: %" PRIu64 " bytes, the run writes %" PRIu64, shown, size, f->size);
            if (f->nrec != f->tensors)
                problem(v, "%s: %zu of its %zu tensors have a journal record", shown, f->nrec,
                        f->tensors);
            check_coverage(v, shown, f, hs, size);
        }
        free(path);
    }
    return st;
}

lx_status lx_verify_output(const char *dir, lx_verify_report report, void *ctx,
                           lx_verify_result *res)
{
    memset(res, 0, sizeof *res);
    vctx v = {dir, report, ctx, res, 0, NULL};
    lx_identity id;
    int exists;
    lx_status st = lx_identity_read(dir, &id, &exists);
    if (st == LX_EOUTPUT)
        return LX_EVERIFY; /* the message names the malformed identity */
    if (st != LX_OK)
        return st;
    if (!exists)
        return lx_fail(LX_EVERIFY, "%s: not a loxstream output directory (no %s)", dir,
                       LX_IDENTITY_PATH);
    uint64_t ih = lx_identity_hash(&id);
    lx_journal *js = NULL;
    size_t nj = 0, nfiles = 0, nlist = 0;
    out_file *files = NULL;
    lx_listed_file *list = NULL;
    const lx_journal_record **latest = NULL;
    if (!(v.buf = malloc(CHUNK)))
        st = lx_fail(LX_EFAIL, "out of memory");
    if (st == LX_OK)
        st = load_journals(&v, ih, &js, &nj);
    if (st == LX_OK)
        st = expected_outputs(&v, &id, &files, &nfiles);

    uint64_t mid = 0, mlist = 0, lh = 0;
    int marker_bad = 0;
    if (st == LX_OK) {
        st = lx_marker_read(dir, &res->complete, &mid, &mlist);
        if (st == LX_EVERIFY || st == LX_EOUTPUT) { /* malformed, or no regular file */
            problem(&v, "%s", lx_errmsg());
            res->complete = 1;
            marker_bad = 1;
            st = LX_OK;
        }
    }
    if (st == LX_OK && res->complete) {
        if (!marker_bad && mid != ih)
            problem(&v, "%s: names another identity than %s", LX_COMPLETE_PATH, LX_IDENTITY_PATH);
        st = lx_list_read(dir, &list, &nlist, &lh);
        if (st == LX_EVERIFY || st == LX_EOUTPUT) {
            problem(&v, "%s", lx_errmsg());
            st = LX_OK;
        } else if (st == LX_OK && !marker_bad && lh != mlist) {
            problem(&v, "%s: changed since the run completed (its XXH3 differs from the one in %s)",
                    LX_LIST_NAME, LX_COMPLETE_PATH);
        }
    }
    /* the latest record of each tensor the run writes (journal.h's rule),
     * grouped by shard, by offset */
    names run = {NULL, 0};
    size_t nlatest = 0;
    if (st == LX_OK)
        st = run_tensors(&v, files, nfiles, js, nj, &run);
    if (st == LX_OK && !(latest = calloc(run.n ? run.n : 1, sizeof *latest)))
        st = lx_fail(LX_EFAIL, "out of memory");
    if (st == LX_OK) {
        lx_journal_latest(js, nj, NULL, name_index, &run, latest, run.n);
        for (size_t k = 0; k < run.n; k++)
            if (latest[k])
                latest[nlatest++] = latest[k];
        qsort(latest, nlatest, sizeof *latest, cmp_rec_offset);
    }
    for (size_t i = 0; st == LX_OK && i < nfiles; i++) {
        out_file *f = &files[i];
        if (!f->shard)
            continue;
        res->tensors += f->tensors;
        if (!(f->recs = malloc((nlatest ? nlatest : 1) * sizeof *f->recs))) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        for (size_t k = 0; k < nlatest; k++)
            if (!strcmp(latest[k]->shard, f->name))
                f->recs[f->nrec++] = latest[k];
    }
    for (size_t k = 0; k < run.n; k++)
        free(run.v[k]);
    free(run.v);
    if (st == LX_OK)
        st = check_files(&v, files, nfiles, list, nlist);
    /* files listed but not among the outputs (the list was edited) */
    for (size_t i = 0; st == LX_OK && i < nlist; i++) {
        int known = 0;
        for (size_t k = 0; k < nfiles && !known; k++)
            known = !strcmp(files[k].name, list[i].name);
        if (!known) {
            char q[LX_NAME_QUOTE];
            problem(&v, "%s: listed in %s but not written by this run",
                    lx_st_escape_name(list[i].name, q, sizeof q), LX_LIST_NAME);
        }
    }

    if (st == LX_OK) {
        if (!res->complete) {
            char extra[128] = "";
            if (res->bad_tensors)
                snprintf(extra, sizeof extra, ", %zu of them damaged", res->bad_tensors);
            st = lx_fail(LX_EVERIFY, "%s: incomplete loxstream output: %zu of %zu tensors done%s "
                         "(run apply again to resume)", dir, res->done, res->tensors, extra);
        } else if (v.problems) {
            st = lx_fail(LX_EVERIFY, "%s: the output is complete but damaged: %zu problems "
                         "(%zu of %zu files and %zu of %zu tensors do not match)", dir, v.problems,
                         res->bad_files, res->files, res->bad_tensors, res->tensors);
        }
    }
    for (size_t i = 0; i < nfiles; i++) {
        free(files[i].name);
        free(files[i].recs);
        lx_st_header_free(&files[i].h);
    }
    free(files);
    free(latest);
    lx_list_free(list, nlist);
    lx_journals_free(js, nj);
    free(v.buf);
    lx_identity_free(&id);
    return st;
}

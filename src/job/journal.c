/* journal.c - the journals of an output directory (see journal.h): their
 * lines, loading, appending, the scan of OUTDIR/.loxstream for them, and
 * the one rule that picks each tensor's record.
 *
 * A journal only grows, one fdatasync'ed line per finished tensor, so a
 * crash can only leave its last line torn, which the next load cuts off.
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

#include "config.h"
#include "loxstream/xxh.h"

#include "loxstream/fs.h"
#include "loxstream/journal.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"
#include "loxstream/testhook.h"
#include "journal_int.h"

/* ---- journal -------------------------------------------------------------- */

const char *lx_journal_name(unsigned part, unsigned nparts, char *buf, size_t len)
{
    snprintf(buf, len, LX_JOURNAL_PREFIX "%04u-of-%04u", part, nparts);
    return buf;
}

char *lx_unescape_name(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        if (++i >= len)
            goto bad;
        switch (s[i]) {
        case '\\': *o++ = '\\'; break;
        case 't': *o++ = '\t'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 'x': {
            unsigned v = 0;
            for (int k = 1; k <= 2; k++) {
                char c = i + (size_t)k < len ? s[i + (size_t)k] : '\0';
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
                if (d < 0)
                    goto bad;
                v = v * 16 + (unsigned)d;
            }
            if (v == 0)
                goto bad;
            *o++ = (char)v;
            i += 2;
            break;
        }
        default:
            goto bad;
        }
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

/* Split line[0..len) at tabs into at most max fields; returns the count. */
static size_t split_fields(const char *line, size_t len, const char **f, size_t *fl, size_t max)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || line[i] == '\t') {
            if (n == max)
                return max + 1;
            f[n] = line + start;
            fl[n++] = i - start;
            start = i + 1;
        }
    }
    return n;
}

/* The last field is the XXH3 of everything before it (including the tab). */
static int line_checksum_ok(const char *line, size_t len)
{
    if (len < 17 || line[len - 17] != '\t')
        return 0;
    uint64_t want;
    if (lx_parse_hex64(line + len - 16, 16, &want) != 0)
        return 0;
    return XXH3_64bits(line, len - 16) == want;
}

static int parse_u64_field(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static void record_free(lx_journal_record *r)
{
    free(r->tensor);
    free(r->shard);
    memset(r, 0, sizeof *r);
}

/* One record line (checksum already checked); 0 on success. */
static int parse_record(const char *line, size_t len, lx_journal_record *r)
{
    const char *f[10];
    size_t fl[10];
    memset(r, 0, sizeof *r);
    if (split_fields(line, len, f, fl, 8) != 8 || fl[0] != 1 || f[0][0] != 'T')
        return -1;
    if (parse_u64_field(f[3], fl[3], &r->offset) || parse_u64_field(f[4], fl[4], &r->length) ||
        lx_parse_hex64(f[5], fl[5], &r->out_xxh3) || lx_parse_hex64(f[6], fl[6], &r->aligned_xxh3))
        return -1;
    /* a range no file can hold (past off_t, or offset + length overflowing):
     * forged or damaged, never a byte range to read or add up */
    if (r->offset > (uint64_t)INT64_MAX || r->length > (uint64_t)INT64_MAX - r->offset)
        return -1;
    if (fl[7] == 1 && f[7][0] == '-')
        r->has_base = 0;
    else if (lx_parse_hex64(f[7], fl[7], &r->base_xxh3) == 0)
        r->has_base = 1;
    else
        return -1;
    r->tensor = lx_unescape_name(f[1], fl[1]);
    r->shard = lx_unescape_name(f[2], fl[2]);
    if (!r->tensor || !r->shard || !*r->tensor || !*r->shard) {
        record_free(r);
        return -1;
    }
    return 0;
}

static int header_ok(const char *line, size_t len, uint64_t identity)
{
    /* MAGIC \t "part I/N" \t identity-hash */
    const char *f[3];
    size_t fl[3];
    uint64_t id;
    size_t ml = strlen(JOURNAL_MAGIC);
    return len > ml && !memcmp(line, JOURNAL_MAGIC, ml) && line[ml] == '\t' &&
           split_fields(line + ml + 1, len - ml - 1, f, fl, 2) == 2 &&
           lx_parse_hex64(f[1], fl[1], &id) == 0 && id == identity;
}

static lx_status push_record(lx_journal *j, lx_journal_record *r)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        lx_journal_record *p = realloc(j->records, cap * sizeof *p);
        if (!p) {
            record_free(r);
            return lx_fail(LX_EFAIL, "out of memory");
        }
        j->records = p;
        j->cap = cap;
    }
    j->records[j->n++] = *r;
    return LX_OK;
}

/* A complete line that gives no record: counted, and kept while few. */
static lx_status bad_line(lx_journal *j, size_t lineno, lx_bad_line_kind kind)
{
    j->damaged++;
    if (j->nbad >= LX_BAD_LINES_KEPT)
        return LX_OK;
    if (!j->nbad && !(j->bad = malloc(LX_BAD_LINES_KEPT * sizeof *j->bad)))
        return lx_fail(LX_EFAIL, "out of memory");
    j->bad[j->nbad++] = (lx_bad_line){lineno, kind};
    return LX_OK;
}

/* Parse buf; *keep = bytes up to the end of the last complete line (0 when
 * the header is not ours). */
static lx_status parse_journal(lx_journal *j, const char *buf, size_t len, uint64_t identity,
                               size_t *keep)
{
    *keep = 0;
    size_t at = 0, lineno = 0;
    lx_status st;
    while (at < len) {
        const char *line = buf + at, *nl = memchr(line, '\n', len - at);
        if (!nl) {
            j->torn = 1;
            j->torn_line = lineno + 1;
            break;
        }
        size_t ll = (size_t)(nl - line);
        at += ll + 1;
        int ok = line_checksum_ok(line, ll);
        if (lineno++ == 0) {
            if (!ok || !header_ok(line, ll - 17, identity)) {
                j->foreign = 1;
                return LX_OK;
            }
        } else if (!ok) {
            if ((st = bad_line(j, lineno, LX_LINE_CHECKSUM)) != LX_OK)
                return st;
        } else {
            lx_journal_record r;
            if (parse_record(line, ll - 17, &r) != 0) {
                if ((st = bad_line(j, lineno, LX_LINE_INVALID)) != LX_OK)
                    return st;
            } else if ((st = push_record(j, &r)) != LX_OK) {
                return st;
            }
        }
        *keep = at;
    }
    return LX_OK;  /* no complete line: a new journal, or its header was torn */
}

lx_status lx_journal_load(lx_journal *j, const char *path, uint64_t identity)
{
    memset(j, 0, sizeof *j);
    j->fd = -1;
    if (!(j->path = strdup(path)))
        return lx_fail(LX_EFAIL, "out of memory");
    char *buf;
    size_t len, keep;
    int exists;
    lx_status st = lx_jr_read_text(path, &buf, &len, &exists);
    if (st == LX_OK && exists)
        st = parse_journal(j, buf, len, identity, &keep);
    free(buf);
    if (st != LX_OK)
        lx_journal_close(j);
    return st;
}

/* write(2) all of buf at the end (O_APPEND); in a crash test, in two
 * halves with a durability point between them, so that a torn line can be
 * produced on purpose. */
static lx_status append_bytes(lx_journal *j, const char *buf, size_t len)
{
    size_t first = lx_test_hooks() ? len / 2 : len;
    lx_status st = lx_write_all(j->fd, buf, first, j->path);
    if (st == LX_OK && first < len) {
        lx_test_point("record-half");
        st = lx_write_all(j->fd, buf + first, len - first, j->path);
    }
    return st;
}

static lx_status append_line(lx_journal *j, text *t)
{
    char hex[LX_HEX64];
    lx_jr_text_puts(t, lx_hex64(XXH3_64bits(t->s, t->len), hex));
    lx_jr_text_puts(t, "\n");
    if (t->oom)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = append_bytes(j, t->s, t->len);
    if (st == LX_OK)
        lx_test_point("record");
    if (st == LX_OK && fdatasync(j->fd) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: fdatasync failed", j->path);
    if (st == LX_OK)
        lx_test_point("journal-sync");
    return st;
}

/* lx_fd_own_file, on the device of the directory holding path. */
static lx_status own_in_dir(int fd, const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    struct stat d;
    lx_status st = !dir ? lx_fail(LX_EFAIL, "out of memory")
                   : stat(dir, &d) != 0 ? lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", dir)
                   : lx_fd_own_file(fd, path, (uint64_t)d.st_dev, LX_EOUTPUT);
    free(dir);
    return st;
}

lx_status lx_journal_open(lx_journal *j, const char *path, unsigned part, unsigned nparts,
                          uint64_t identity)
{
    char *buf;
    size_t len, keep = 0;
    int exists;
    memset(j, 0, sizeof *j);
    j->fd = -1;
    if (!(j->path = strdup(path)))
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_jr_read_text(path, &buf, &len, &exists);
    if (st == LX_OK && exists)
        st = parse_journal(j, buf, len, identity, &keep);
    free(buf);
    if (st == LX_OK) {
        st = lx_open_regular(path, O_WRONLY | O_CREAT | O_APPEND, LX_EOUTPUT, &j->fd, NULL);
        if (st == LX_OK && j->fd < 0)
            st = lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open for appending", path);
    }
    /* never appended to or cut through a link to another file */
    if (st == LX_OK)
        st = own_in_dir(j->fd, path);
    /* Cut a torn last line (or all of a foreign journal): a record appended
     * after a torn line would otherwise share its line and be lost. */
    if (st == LX_OK && (!exists || keep != len) && ftruncate(j->fd, (off_t)keep) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot truncate to %zu bytes", path, keep);
    if (st == LX_OK && keep == 0) {
        for (size_t i = 0; i < j->n; i++)
            record_free(&j->records[i]);
        j->n = 0;
        char hex[LX_HEX64], line[128];
        snprintf(line, sizeof line, JOURNAL_MAGIC "\tpart %u/%u\t%s\t", part, nparts,
                 lx_hex64(identity, hex));
        text t = {0};
        lx_jr_text_puts(&t, line);
        st = append_line(j, &t);
        free(t.s);
        /* the new file's directory entry must be durable too */
        if (st == LX_OK)
            st = lx_sync_parent(path);
    } else if (st == LX_OK && keep != len && fdatasync(j->fd) != 0) {
        st = lx_fail_errno(LX_EFAIL, errno, "%s: fdatasync failed", path);
    }
    if (st != LX_OK)
        lx_journal_close(j);
    return st;
}

lx_status lx_journal_append(lx_journal *j, const lx_journal_record *r)
{
    char *tn = lx_st_escape_dup(r->tensor), *sn = lx_st_escape_dup(r->shard);
    char nums[160], h1[LX_HEX64], h2[LX_HEX64], h3[LX_HEX64];
    text t = {0};
    lx_status st = LX_OK;
    if (!tn || !sn) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        snprintf(nums, sizeof nums, "\t%" PRIu64 "\t%" PRIu64 "\t%s\t%s\t%s\t", r->offset,
                 r->length, lx_hex64(r->out_xxh3, h1), lx_hex64(r->aligned_xxh3, h2),
                 r->has_base ? lx_hex64(r->base_xxh3, h3) : "-");
        lx_jr_text_puts(&t, "T\t");
        lx_jr_text_puts(&t, tn);
        lx_jr_text_puts(&t, "\t");
        lx_jr_text_puts(&t, sn);
        lx_jr_text_puts(&t, nums);
        st = append_line(j, &t);
    }
    free(t.s);
    free(tn);
    free(sn);
    return st;
}

void lx_journal_close(lx_journal *j)
{
    if (j->fd >= 0)
        close(j->fd);
    for (size_t i = 0; i < j->n; i++)
        record_free(&j->records[i]);
    free(j->records);
    free(j->bad);
    free(j->path);
    memset(j, 0, sizeof *j);
    j->fd = -1;
}


char *lx_journal_path(const char *outdir, unsigned part, unsigned nparts)
{
    char name[64], *path = NULL;
    lx_journal_name(part, nparts, name, sizeof name);
    if (asprintf(&path, "%s/%s/%s", outdir, LX_STATE_DIR, name) < 0)
        return NULL;
    return path;
}

/* ---- every journal of an output ------------------------------------------ */

static int cmp_journal_path(const void *a, const void *b)
{
    return strcmp(((const lx_journal *)a)->path, ((const lx_journal *)b)->path);
}

void lx_journals_free(lx_journal *js, size_t n)
{
    for (size_t k = 0; k < n; k++)
        lx_journal_close(&js[k]);
    free(js);
}

lx_status lx_journal_load_all(const char *outdir, uint64_t identity, const char *skip,
                              lx_journal **out, size_t *n, int *unlisted)
{
    *out = NULL;
    *n = 0;
    char *sdir = lx_path_join(outdir, LX_STATE_DIR);
    DIR *d = sdir ? opendir(sdir) : NULL;
    if (!sdir || !d) {
        lx_status st = LX_OK;
        if (!sdir)
            st = lx_fail(LX_EFAIL, "out of memory");
        else if (unlisted)
            *unlisted = errno;
        else
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", sdir);
        free(sdir);
        return st;
    }
    lx_status st = LX_OK;
    size_t cap = 0;
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        if (lx_state_classify(de->d_name) != LX_STATE_JOURNAL)
            continue;
        char *path = lx_path_join(sdir, de->d_name);
        if (!path) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        if (skip && !strcmp(path, skip)) {
            free(path);
            continue;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            lx_journal *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                free(path);
                st = lx_fail(LX_EFAIL, "out of memory");
                break;
            }
            *out = p;
        }
        st = lx_journal_load(&(*out)[*n], path, identity);
        if (st == LX_OK)
            (*n)++;
        free(path);
    }
    closedir(d);
    free(sdir);
    if (st != LX_OK) {
        lx_journals_free(*out, *n);
        *out = NULL;
        *n = 0;
        return st;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_journal_path);
    return LX_OK;
}

size_t lx_journal_latest(const lx_journal *js, size_t nj, const lx_journal *last,
                         lx_tensor_index index, void *ctx, const lx_journal_record **latest,
                         size_t ntensors)
{
    size_t n = 0;
    memset(latest, 0, ntensors * sizeof *latest);
    for (size_t k = 0; k <= nj; k++) {
        const lx_journal *j = k < nj ? &js[k] : last;
        for (size_t r = 0; j && r < j->n; r++) {
            long t = index(ctx, j->records[r].tensor);
            if (t < 0 || (size_t)t >= ntensors)
                continue;
            n += !latest[t];
            latest[t] = &j->records[r];
        }
    }
    return n;
}

/* journal.c - identity, journal, checksum list and completion marker of an
 * output directory (see journal.h).
 *
 * All files here are small text files.  The identity, the list and the
 * marker are replaced atomically (write, fsync, rename, fsync directory);
 * the journal only grows, one fdatasync'ed line per finished tensor, so a
 * crash can only leave its last line torn, which the next load cuts off.
 */
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

#define IDENTITY_MAGIC "loxstream-identity 1"
#define JOURNAL_MAGIC "loxstream-journal\t1"
#define MARKER_MAGIC "loxstream-complete 1"
#define SMALL_FILE_MAX (256u << 20) /* identity, journal, list: far below this */

/* ---- small helpers ------------------------------------------------------- */

/* Read a small file whole (NUL-terminated); *exists = 0 if it is absent. */
static lx_status read_text(const char *path, char **out, size_t *len, int *exists)
{
    *out = NULL;
    *len = 0;
    *exists = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return LX_OK;
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", path);
    }
    *exists = 1;
    struct stat sb;
    lx_status st = LX_OK;
    if (fstat(fd, &sb) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    else if (!S_ISREG(sb.st_mode))
        st = lx_fail(LX_EOUTPUT, "%s: not a regular file", path);
    else if ((uint64_t)sb.st_size > SMALL_FILE_MAX)
        st = lx_fail(LX_EOUTPUT, "%s: %" PRIu64 " bytes, far more than loxstream writes there",
                     path, (uint64_t)sb.st_size);
    else
        st = lx_read_fd_text(fd, (size_t)sb.st_size, path, out, len);
    close(fd);
    return st;
}

static char *join_state(const char *outdir, const char *rel)
{
    return lx_path_join(outdir, rel);
}

/* Write outdir/rel atomically, creating outdir/.loxstream if needed.  A
 * leftover path.tmp is removed first: its name is ours, and whatever it
 * is (a link too) must not receive the bytes. */
static lx_status write_state_file(const char *outdir, const char *rel, const char *text, size_t len)
{
    char *dir = lx_path_join(outdir, LX_STATE_DIR), *path = join_state(outdir, rel), *tmp = NULL;
    lx_status st = !dir || !path || asprintf(&tmp, "%s.tmp", path) < 0
                       ? lx_fail(LX_EFAIL, "out of memory") : LX_OK;
    if (st == LX_OK && strchr(rel, '/'))
        st = lx_mkdir_p(dir);
    if (st == LX_OK)
        st = lx_unlink_if(tmp);
    if (st == LX_OK)
        st = lx_write_file_atomic(path, text, len);
    free(tmp);
    free(dir);
    free(path);
    return st;
}

/* A growing string. */
typedef struct text {
    char *s;
    size_t len, cap;
    int oom;
} text;

static void text_put(text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (t->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
}

static void text_puts(text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

/* ---- identity ------------------------------------------------------------ */

void lx_identity_init(lx_identity *id)
{
    memset(id, 0, sizeof *id);
}

void lx_identity_free(lx_identity *id)
{
    for (size_t i = 0; i < id->n; i++) {
        free(id->keys[i]);
        free(id->values[i]);
    }
    free(id->keys);
    free(id->values);
    memset(id, 0, sizeof *id);
}

lx_status lx_identity_add(lx_identity *id, const char *key, const char *value)
{
    if (!*key || strpbrk(key, "\t\n\r") || strpbrk(value, "\t\n\r"))
        return lx_fail(LX_EFAIL, "identity entry '%s' holds a tab or a line break", key);
    if (id->n == id->cap) {
        size_t cap = id->cap ? 2 * id->cap : 32;
        char **k = realloc(id->keys, cap * sizeof *k);
        if (!k)
            return lx_fail(LX_EFAIL, "out of memory");
        id->keys = k;
        char **v = realloc(id->values, cap * sizeof *v);
        if (!v)
            return lx_fail(LX_EFAIL, "out of memory");
        id->values = v;
        id->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    id->keys[id->n] = k;
    id->values[id->n++] = v;
    return LX_OK;
}

const char *lx_identity_get(const lx_identity *id, const char *key)
{
    for (size_t i = 0; i < id->n; i++)
        if (!strcmp(id->keys[i], key))
            return id->values[i];
    return NULL;
}

static int compared_key(const char *key)
{
    return strncmp(key, "output ", 7) != 0;
}

static int cmp_entry(const void *a, const void *b, void *ctx)
{
    const lx_identity *id = ctx;
    return strcmp(id->keys[*(const size_t *)a], id->keys[*(const size_t *)b]);
}

uint64_t lx_identity_hash(const lx_identity *id)
{
    /* in key order, so that the hash does not depend on the order of lines */
    size_t *order = malloc((id->n ? id->n : 1) * sizeof *order);
    XXH3_state_t *s = XXH3_createState();
    uint64_t h = 0;
    if (order && s) {
        for (size_t i = 0; i < id->n; i++)
            order[i] = i;
        qsort_r(order, id->n, sizeof *order, cmp_entry, (void *)id);
        XXH3_64bits_reset(s);
        for (size_t i = 0; i < id->n; i++) {
            size_t e = order[i];
            if (!compared_key(id->keys[e]))
                continue;
            XXH3_64bits_update(s, id->keys[e], strlen(id->keys[e]));
            XXH3_64bits_update(s, "\t", 1);
            XXH3_64bits_update(s, id->values[e], strlen(id->values[e]));
            XXH3_64bits_update(s, "\n", 1);
        }
        h = XXH3_64bits_digest(s);
    }
    free(order);
    XXH3_freeState(s);
    return h;
}

lx_status lx_identity_write(const lx_identity *id, const char *outdir)
{
    text t = {0};
    text_puts(&t, IDENTITY_MAGIC "\n");
    for (size_t i = 0; i < id->n; i++) {
        text_puts(&t, id->keys[i]);
        text_puts(&t, "\t");
        text_puts(&t, id->values[i]);
        text_puts(&t, "\n");
    }
    lx_status st = t.oom ? lx_fail(LX_EFAIL, "out of memory")
                         : write_state_file(outdir, LX_IDENTITY_PATH, t.s, t.len);
    free(t.s);
    return st;
}

lx_status lx_identity_read(const char *outdir, lx_identity *id, int *exists)
{
    lx_identity_init(id);
    char *path = join_state(outdir, LX_IDENTITY_PATH), *buf = NULL;
    size_t len;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = read_text(path, &buf, &len, exists);
    if (st == LX_OK && *exists) {
        char *line = buf, *nl;
        size_t lineno = 0;
        while (st == LX_OK && *line && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            lineno++;
            char *tab = strchr(line, '\t');
            if (lineno == 1) {
                if (strcmp(line, IDENTITY_MAGIC))
                    st = lx_fail(LX_EOUTPUT, "%s: not a loxstream identity file (first line)", path);
            } else if (!tab || strchr(tab + 1, '\t')) {
                st = lx_fail(LX_EOUTPUT, "%s: line %zu is malformed", path, lineno);
            } else {
                *tab = '\0';
                st = lx_identity_add(id, line, tab + 1);
            }
            line = nl + 1;
        }
        if (st == LX_OK && (*line || lineno == 0))
            st = lx_fail(LX_EOUTPUT, "%s: truncated (no line break at the end)", path);
    }
    free(buf);
    free(path);
    if (st != LX_OK)
        lx_identity_free(id);
    return st;
}

/* "size N header H" -> N and H as strings (for the message). */
static void split_input(const char *v, uint64_t *size, char *header, size_t hlen)
{
    *size = 0;
    header[0] = '\0';
    char h[64];
    if (sscanf(v, "size %" SCNu64 " header %63s", size, h) == 2)
        snprintf(header, hlen, "%s", h);
}

static void describe_difference(text *t, const char *key, const char *was, const char *now)
{
    if (t->len)
        text_puts(t, "; ");
    char line[1024];
    if (!strncmp(key, "input ", 6)) {
        uint64_t s0, s1;
        char h0[64], h1[64];
        if (!was)
            snprintf(line, sizeof line, "%s: a new input shard, not in the journal", key);
        else if (!now)
            snprintf(line, sizeof line, "%s: in the journal, no longer among the inputs", key);
        else {
            split_input(was, &s0, h0, sizeof h0);
            split_input(now, &s1, h1, sizeof h1);
            if (s0 != s1)
                snprintf(line, sizeof line, "%s: size changed (journal %" PRIu64 " bytes, now %"
                         PRIu64 ")", key, s0, s1);
            else
                snprintf(line, sizeof line, "%s: header checksum changed", key);
        }
    } else {
        const char *name = !strncmp(key, "option ", 7) ? key + 7 : key;
        snprintf(line, sizeof line, "%s: journal %s, now %s", name, was ? was : "(none)",
                 now ? now : "(none)");
    }
    text_puts(t, line);
}

#define MAX_DIFFERENCES 8 /* named in the message; the others are counted */

lx_status lx_identity_compare(const lx_identity *journal, const lx_identity *now,
                              const char *context)
{
    text t = {0};
    size_t n = 0;
    for (size_t i = 0; i < journal->n; i++) {
        const char *k = journal->keys[i];
        if (!compared_key(k))
            continue;
        const char *v = lx_identity_get(now, k);
        if ((!v || strcmp(v, journal->values[i])) && n++ < MAX_DIFFERENCES)
            describe_difference(&t, k, journal->values[i], v);
    }
    for (size_t i = 0; i < now->n; i++) {
        const char *k = now->keys[i];
        if (compared_key(k) && !lx_identity_get(journal, k) && n++ < MAX_DIFFERENCES)
            describe_difference(&t, k, NULL, now->values[i]);
    }
    if (n > MAX_DIFFERENCES) {
        char more[64];
        snprintf(more, sizeof more, "; and %zu more differences", n - MAX_DIFFERENCES);
        text_puts(&t, more);
    }
    lx_status st = LX_OK;
    if (t.oom)
        st = lx_fail(LX_EFAIL, "out of memory");
    else if (t.len)
        st = lx_fail(LX_EOUTPUT, "%s: %s", context, t.s);
    free(t.s);
    return st;
}

/* ---- journal -------------------------------------------------------------- */

const char *lx_journal_name(unsigned part, unsigned nparts, char *buf, size_t len)
{
    snprintf(buf, len, "journal.part-%04u-of-%04u", part, nparts);
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

/* Parse buf; *keep = bytes up to the end of the last complete line (0 when
 * the header is not ours). */
static lx_status parse_journal(lx_journal *j, const char *buf, size_t len, uint64_t identity,
                               size_t *keep)
{
    *keep = 0;
    size_t at = 0, lineno = 0;
    while (at < len) {
        const char *line = buf + at, *nl = memchr(line, '\n', len - at);
        if (!nl) {
            j->torn = 1;
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
            j->damaged++;
        } else {
            lx_journal_record r;
            if (parse_record(line, ll - 17, &r) != 0) {
                j->damaged++;
            } else {
                lx_status st = push_record(j, &r);
                if (st != LX_OK)
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
    lx_status st = read_text(path, &buf, &len, &exists);
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
    text_puts(t, lx_hex64(XXH3_64bits(t->s, t->len), hex));
    text_puts(t, "\n");
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
    lx_status st = read_text(path, &buf, &len, &exists);
    if (st == LX_OK && exists)
        st = parse_journal(j, buf, len, identity, &keep);
    free(buf);
    if (st == LX_OK) {
        j->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (j->fd < 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot open for appending", path);
    }
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
        text_puts(&t, line);
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
        text_puts(&t, "T\t");
        text_puts(&t, tn);
        text_puts(&t, "\t");
        text_puts(&t, sn);
        text_puts(&t, nums);
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
    free(j->path);
    memset(j, 0, sizeof *j);
    j->fd = -1;
}

/* ---- checksum list -------------------------------------------------------- */

lx_status lx_list_write(const char *outdir, const lx_listed_file *files, size_t n,
                        uint64_t *list_xxh3)
{
    text t = {0};
    for (size_t i = 0; i < n; i++) {
        if (strpbrk(files[i].name, "\n\r")) {
            char q[LX_NAME_QUOTE];
            free(t.s);
            return lx_fail(LX_EFAIL, "%s: output file name '%s' holds a line break, which a "
                           "checksum list cannot hold", outdir,
                           lx_st_escape_name(files[i].name, q, sizeof q));
        }
        char hex[LX_HEX64];
        text_puts(&t, "XXH3 (");
        text_puts(&t, files[i].name);
        text_puts(&t, ") = ");
        text_puts(&t, lx_hex64(files[i].xxh3, hex));
        text_puts(&t, "\n");
    }
    if (t.oom) {
        free(t.s);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    *list_xxh3 = XXH3_64bits(t.s ? t.s : "", t.len);
    lx_status st = write_state_file(outdir, LX_LIST_NAME, t.s ? t.s : "", t.len);
    free(t.s);
    return st;
}

void lx_list_free(lx_listed_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i].name);
    free(files);
}

lx_status lx_list_read(const char *outdir, lx_listed_file **files, size_t *n, uint64_t *list_xxh3)
{
    *files = NULL;
    *n = 0;
    char *path = join_state(outdir, LX_LIST_NAME), *buf = NULL;
    size_t len;
    int exists;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = read_text(path, &buf, &len, &exists);
    if (st == LX_OK && !exists)
        st = lx_fail(LX_EVERIFY, "%s: missing", path);
    size_t cap = 0, lineno = 0;
    lx_listed_file *v = NULL;
    if (st == LX_OK) {
        *list_xxh3 = XXH3_64bits(buf, len);
        const char *at = buf, *end = buf + len;
        while (st == LX_OK && at < end) {
            const char *nl = memchr(at, '\n', (size_t)(end - at));
            size_t ll = nl ? (size_t)(nl - at) : (size_t)(end - at);
            lineno++;
            uint64_t h;
            /* "XXH3 (" NAME ") = " 16 hex */
            if (!nl || ll < 6 + 1 + 4 + 16 || memcmp(at, "XXH3 (", 6) ||
                memcmp(at + ll - 20, ") = ", 4) || lx_parse_hex64(at + ll - 16, 16, &h)) {
                st = lx_fail(LX_EVERIFY, "%s: line %zu is not an XXH3 checksum line", path, lineno);
                break;
            }
            if (*n == cap) {
                cap = cap ? 2 * cap : 16;
                lx_listed_file *p = realloc(v, cap * sizeof *p);
                if (!p) {
                    st = lx_fail(LX_EFAIL, "out of memory");
                    break;
                }
                v = p;
            }
            v[*n].xxh3 = h;
            if (!(v[*n].name = strndup(at + 6, ll - 26))) {
                st = lx_fail(LX_EFAIL, "out of memory");
                break;
            }
            (*n)++;
            at = nl + 1;
        }
    }
    free(buf);
    free(path);
    if (st != LX_OK) {
        lx_list_free(v, *n);
        *n = 0;
        return st;
    }
    *files = v;
    return LX_OK;
}

/* ---- completion marker ---------------------------------------------------- */

lx_status lx_marker_write(const char *outdir, uint64_t identity, uint64_t list_xxh3)
{
    char buf[128], h1[LX_HEX64], h2[LX_HEX64];
    int len = snprintf(buf, sizeof buf, MARKER_MAGIC "\nidentity %s\nlist %s\n",
                       lx_hex64(identity, h1), lx_hex64(list_xxh3, h2));
    return write_state_file(outdir, LX_COMPLETE_PATH, buf, (size_t)len);
}

lx_status lx_marker_read(const char *outdir, int *exists, uint64_t *identity, uint64_t *list_xxh3)
{
    char *path = join_state(outdir, LX_COMPLETE_PATH), *buf = NULL;
    size_t len;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = read_text(path, &buf, &len, exists);
    if (st == LX_OK && *exists) {
        size_t ml = strlen(MARKER_MAGIC);
        /* MAGIC \n "identity " 16 \n "list " 16 \n */
        if (len != ml + 1 + 9 + 16 + 1 + 5 + 16 + 1 || memcmp(buf, MARKER_MAGIC "\nidentity ", ml + 10) ||
            lx_parse_hex64(buf + ml + 10, 16, identity) || memcmp(buf + ml + 26, "\nlist ", 6) ||
            lx_parse_hex64(buf + ml + 32, 16, list_xxh3) || buf[len - 1] != '\n')
            st = lx_fail(LX_EVERIFY, "%s: malformed completion marker", path);
    }
    free(buf);
    free(path);
    return st;
}

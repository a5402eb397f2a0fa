/* journal_state.c - the small files of an output's state (see journal.h):
 * the file names and the one rule that classifies the names in
 * OUTDIR/.loxstream, the locks, the checksum list and the completion
 * marker, and the helpers for small files the module shares
 * (journal_int.h).  The list and the marker are replaced atomically (write,
 * fsync, rename, fsync directory).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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

/* ---- small files --------------------------------------------------------- */


lx_status lx_jr_read_text(const char *path, char **out, size_t *len, int *exists)
{
    *out = NULL;
    *len = 0;
    *exists = 0;
    int fd;
    struct stat sb;
    lx_status st = lx_open_regular(path, O_RDONLY, LX_EOUTPUT, &fd, &sb);
    if (st != LX_OK || fd < 0)
        return st;
    *exists = 1;
    if ((uint64_t)sb.st_size > SMALL_FILE_MAX)
        st = lx_fail(LX_EOUTPUT, "%s: %" PRIu64 " bytes, far more than loxstream writes there",
                     path, (uint64_t)sb.st_size);
    else
        st = lx_read_fd_text(fd, (size_t)sb.st_size, path, out, len);
    close(fd);
    return st;
}

/* Write outdir/rel atomically, creating outdir/.loxstream if needed.  A
 * leftover path.tmp is removed first: its name is ours, and whatever it
 * is (a link too) must not receive the bytes. */
lx_status lx_jr_write_state_file(const char *outdir, const char *rel, const char *body, size_t len)
{
    char *dir = lx_path_join(outdir, LX_STATE_DIR), *path = lx_path_join(outdir, rel), *tmp = NULL;
    lx_status st = !dir || !path || asprintf(&tmp, "%s.tmp", path) < 0
                       ? lx_fail(LX_EFAIL, "out of memory") : LX_OK;
    if (st == LX_OK && strchr(rel, '/'))
        st = lx_mkdir_p(dir);
    if (st == LX_OK)
        st = lx_unlink_if(tmp);
    if (st == LX_OK)
        st = lx_write_file_atomic(path, body, len);
    free(tmp);
    free(dir);
    free(path);
    return st;
}

void lx_jr_text_put(text *t, const char *s, size_t n)
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

void lx_jr_text_puts(text *t, const char *s)
{
    lx_jr_text_put(t, s, strlen(s));
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
        lx_jr_text_puts(&t, "XXH3 (");
        lx_jr_text_puts(&t, files[i].name);
        lx_jr_text_puts(&t, ") = ");
        lx_jr_text_puts(&t, lx_hex64(files[i].xxh3, hex));
        lx_jr_text_puts(&t, "\n");
    }
    if (t.oom) {
        free(t.s);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    *list_xxh3 = XXH3_64bits(t.s ? t.s : "", t.len);
    lx_status st = lx_jr_write_state_file(outdir, LX_LIST_NAME, t.s ? t.s : "", t.len);
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
    char *path = lx_path_join(outdir, LX_LIST_NAME), *buf = NULL;
    size_t len;
    int exists;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_jr_read_text(path, &buf, &len, &exists);
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
    return lx_jr_write_state_file(outdir, LX_COMPLETE_PATH, buf, (size_t)len);
}

lx_status lx_marker_read(const char *outdir, int *exists, uint64_t *identity, uint64_t *list_xxh3)
{
    char *path = lx_path_join(outdir, LX_COMPLETE_PATH), *buf = NULL;
    size_t len;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_jr_read_text(path, &buf, &len, exists);
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

/* ---- names in the state directory ----------------------------------------- */

#define SHARD_TEMP_PREFIX "shard-"  /* lx_st_out_open_shared's temporary files */

static int has_prefix(const char *s, const char *p)
{
    return !strncmp(s, p, strlen(p));
}

lx_state_kind lx_state_classify(const char *nm)
{
    size_t len = strlen(nm);
    if (len > 4 && !strcmp(nm + len - 4, ".tmp"))
        return has_prefix(nm, SHARD_TEMP_PREFIX) && len > strlen(SHARD_TEMP_PREFIX) + 4
                   ? LX_STATE_SHARD_TEMP : LX_STATE_TEMP;
    if (has_prefix(nm, LX_JOURNAL_PREFIX))
        return LX_STATE_JOURNAL;
    size_t sl = strlen(LX_STATE_DIR "/");
    if (!strcmp(nm, LX_LOCK_PATH + sl) || !strcmp(nm, LX_COMPLETE_LOCK_PATH + sl) ||
        has_prefix(nm, LX_PART_LOCK_PREFIX))
        return LX_STATE_LOCK;
    return LX_STATE_OTHER;
}

/* OUTDIR/.loxstream listed, or NULL */
static DIR *open_state_dir(const char *out)
{
    char *sdir = lx_path_join(out, LX_STATE_DIR);
    DIR *d = sdir ? opendir(sdir) : NULL;
    free(sdir);
    return d;
}

int lx_state_is_bare(const char *out)
{
    DIR *d = open_state_dir(out);
    if (!d)
        return 0;
    int bare = 1;
    struct dirent *de;
    while (bare && (de = readdir(d))) {
        const char *nm = de->d_name;
        lx_state_kind k = lx_state_classify(nm);
        bare = !strcmp(nm, ".") || !strcmp(nm, "..") || k == LX_STATE_LOCK ||
               k == LX_STATE_TEMP || k == LX_STATE_SHARD_TEMP;
    }
    closedir(d);
    return bare;
}

int lx_journal_other_split(const char *outdir, unsigned nparts, char *found, size_t len)
{
    DIR *d = open_state_dir(outdir);
    if (!d)
        return 0;
    int other = 0;
    struct dirent *de;
    while (!other && (de = readdir(d))) {
        unsigned i, n;
        char tail;
        if (lx_state_classify(de->d_name) != LX_STATE_JOURNAL ||
            sscanf(de->d_name, LX_JOURNAL_PREFIX "%4u-of-%4u%c", &i, &n, &tail) != 2)
            continue;
        if (n > 1 && n != nparts) {
            other = 1;
            snprintf(found, len, "%s", de->d_name);
        }
    }
    closedir(d);
    return other;
}

lx_status lx_state_remove(const char *outdir, unsigned kinds)
{
    char *sdir = lx_path_join(outdir, LX_STATE_DIR);
    if (!sdir)
        return lx_fail(LX_EFAIL, "out of memory");
    DIR *d = opendir(sdir);
    lx_status st = d ? LX_OK : lx_fail_errno(LX_EFAIL, errno, "%s: cannot list", sdir);
    struct dirent *de;
    while (st == LX_OK && (de = readdir(d))) {
        if (!(kinds & (1u << lx_state_classify(de->d_name))))
            continue;
        char *p = lx_path_join(sdir, de->d_name);
        st = p ? lx_unlink_if(p) : lx_fail(LX_EFAIL, "out of memory");
        free(p);
    }
    if (d)
        closedir(d);
    free(sdir);
    return st;
}

/* ---- the locks -------------------------------------------------------------- */

static int flock_wait(int fd, int op)
{
    while (flock(fd, op) != 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static lx_status open_lock(const char *path, int *fd)
{
    lx_status st = lx_open_regular(path, O_RDWR | O_CREAT, LX_EOUTPUT, fd, NULL);
    return st == LX_OK && *fd < 0 ? lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open", path) : st;
}

static const char *part_lock_name(unsigned part, unsigned nparts, char *buf, size_t len)
{
    snprintf(buf, len, LX_PART_LOCK_PREFIX "%04u-of-%04u", part, nparts);
    return buf;
}

/* The locks of journal.h, flock(2)s that the kernel releases when the
 * process ends, however it ends: with --part, the part's own lock
 * (exclusive: one process per part); the completion lock, waited for (it
 * is held only while a process prepares or completes the output); then the
 * output lock, exclusive for a run without --part, shared by parts.  The
 * completion lock is released at the end of the preparation. */
lx_status lx_locks_take(lx_locks *l, const char *out, unsigned part, unsigned nparts)
{
    if (l->lock_fd >= 0)
        return LX_OK;
    char *sdir = lx_path_join(out, LX_STATE_DIR), *path = NULL;
    lx_status st = !sdir ? lx_fail(LX_EFAIL, "out of memory") : lx_mkdir_p(sdir);
    if (st == LX_OK && nparts > 1) {
        char name[64];
        path = lx_path_join(sdir, part_lock_name(part, nparts, name, sizeof name));
        st = path ? open_lock(path, &l->part_lock_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK && flock(l->part_lock_fd, LOCK_EX | LOCK_NB) != 0)
            st = errno == EWOULDBLOCK
                     ? lx_fail(LX_EOUTPUT, "%s: another loxstream process is writing part %u/%u "
                               "of this output (%s is locked)", out, part, nparts, path)
                     : lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
        free(path);
        path = NULL;
    }
    if (st == LX_OK) {
        path = lx_path_join(out, LX_COMPLETE_LOCK_PATH);
        st = path ? open_lock(path, &l->complete_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK && flock_wait(l->complete_fd, LOCK_EX) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
        free(path);
        path = NULL;
    }
    if (st == LX_OK) {
        path = lx_path_join(out, LX_LOCK_PATH);
        st = path ? open_lock(path, &l->lock_fd) : lx_fail(LX_EFAIL, "out of memory");
        if (st == LX_OK &&
            flock(l->lock_fd, (nparts > 1 ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0)
            st = errno == EWOULDBLOCK
                     ? lx_fail(LX_EOUTPUT, "%s: another loxstream process is writing this output "
                               "(%s is locked%s)", out, path,
                               nparts > 1 ? " by a run without --part" : "")
                     : lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock", path);
    }
    free(sdir);
    free(path);
    return st;
}

void lx_locks_release_completion(lx_locks *l)
{
    if (l->complete_fd >= 0)
        flock(l->complete_fd, LOCK_UN);
}

void lx_locks_init(lx_locks *l)
{
    l->lock_fd = l->complete_fd = l->part_lock_fd = -1;
}

lx_status lx_locks_wait_completion(lx_locks *l, const char *out)
{
    if (flock_wait(l->complete_fd, LOCK_EX) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot lock %s", out, LX_COMPLETE_LOCK_PATH);
    return LX_OK;
}

int lx_locks_alone(lx_locks *l)
{
    return flock(l->lock_fd, LOCK_EX | LOCK_NB) == 0;
}

void lx_locks_close(lx_locks *l)
{
    if (l->lock_fd >= 0)
        close(l->lock_fd);
    if (l->complete_fd >= 0)
        close(l->complete_fd);
    if (l->part_lock_fd >= 0)
        close(l->part_lock_fd);
    lx_locks_init(l);
}


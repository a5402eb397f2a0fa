/* st_write.c - the writing half of safetensors.h: plan a file (offsets and
 * header) and fill it in place with positional writes.
 *
 * The header is built with jansson, compact and in insertion order, which for
 * tensors listed in the reference writer's order (dtype size, then name)
 * reproduces its bytes exactly.  The file is created at full size with
 * ftruncate, so the data part is sparse until written: tensors can then be
 * written in any order, from several threads, and a resumed job can reopen a
 * file whose header it recognises.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "loxstream/direct.h"
#include "loxstream/fs.h"
#include "loxstream/safetensors.h"

/* Largest value jansson's json_int_t (long long) holds, and a bound that
 * keeps every file offset representable as off_t. */
#define JSON_INT_LIMIT ((uint64_t)INT64_MAX)
#define NAME_QUOTE 256 /* tensor names in messages are escaped and cut to this */

static int cmp_entry_name(const void *a, const void *b)
{
    const lx_st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Names must be unique and must not collide with the metadata key.  An
 * empty name is valid safetensors (the reference reader accepts it) and is
 * written as it was read. */
static lx_status check_names(const lx_st_entry *entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].name)
            return lx_fail(LX_EFAIL, "safetensors layout: tensor #%zu has no name", i);
        if (!strcmp(entries[i].name, "__metadata__"))
            return lx_fail(LX_EFAIL, "safetensors layout: '__metadata__' is reserved and cannot name a tensor");
    }
    if (n < 2)
        return LX_OK;
    const lx_st_entry **sorted = malloc(n * sizeof *sorted);
    if (!sorted)
        return lx_fail(LX_EFAIL, "out of memory (%zu tensor names)", n);
    for (size_t i = 0; i < n; i++)
        sorted[i] = &entries[i];
    qsort(sorted, n, sizeof *sorted, cmp_entry_name);
    lx_status st = LX_OK;
    for (size_t i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            char q[NAME_QUOTE];
            st = lx_fail(LX_EFAIL, "safetensors layout: duplicate tensor name '%s'",
                         lx_st_escape_name(sorted[i]->name, q, sizeof q));
            break;
        }
    free(sorted);
    return st;
}

/* nbytes = product(shape) x bits / 8, refusing overflow and partial bytes. */
static lx_status entry_size(lx_st_entry *e)
{
    char q[NAME_QUOTE];
    const char *qn = lx_st_escape_name(e->name, q, sizeof q);
    if (e->ndim < 0 || e->ndim > LX_MAX_NDIM)
        return lx_fail(LX_EFAIL, "tensor '%s': %d dimensions (at most %d)", qn, e->ndim, LX_MAX_NDIM);
    if ((unsigned)e->dtype >= LX_DT_COUNT)
        return lx_fail(LX_EFAIL, "tensor '%s': invalid dtype %d", qn, (int)e->dtype);
    uint64_t nelem = 1;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] > JSON_INT_LIMIT)
            return lx_fail(LX_EFAIL, "tensor '%s': dimension %d is too large (%" PRIu64 ")",
                           qn, d, e->shape[d]);
        if (e->shape[d] && nelem > UINT64_MAX / e->shape[d])
            return lx_fail(LX_EFAIL, "tensor '%s': element count overflows", qn);
        nelem *= e->shape[d];
    }
    uint64_t bits = lx_dtype_bits(e->dtype);
    if (bits % 8 == 0) {
        if (bits == 0 || nelem > UINT64_MAX / (bits / 8))
            return lx_fail(LX_EFAIL, "tensor '%s': byte size overflows (%" PRIu64 " elements of %s)",
                           qn, nelem, lx_dtype_name(e->dtype));
        e->nbytes = nelem * (bits / 8);
        return LX_OK;
    }
    /* sub-byte dtypes (F4, F6_*): the elements must fill whole bytes */
    if (nelem > UINT64_MAX / bits)
        return lx_fail(LX_EFAIL, "tensor '%s': byte size overflows (%" PRIu64 " elements of %s)",
                       qn, nelem, lx_dtype_name(e->dtype));
    if ((nelem * bits) % 8)
        return lx_fail(LX_EFAIL, "tensor '%s': %" PRIu64 " elements of %s do not fill whole bytes",
                       qn, nelem, lx_dtype_name(e->dtype));
    e->nbytes = nelem * bits / 8;
    return LX_OK;
}

/* json_object_set_new fails on a key that is not UTF-8. */
static lx_status set_new(json_t *obj, const char *key, json_t *val, const char *what)
{
    if (!val)
        return lx_fail(LX_EFAIL, "safetensors layout: %s: not valid UTF-8 or out of memory", what);
    if (json_object_set_new(obj, key, val) != 0)
    {
        char q[NAME_QUOTE];
        return lx_fail(LX_EFAIL, "safetensors layout: %s: name '%s' is not valid UTF-8", what,
                       lx_st_escape_name(key, q, sizeof q));
    }
    return LX_OK;
}

static lx_status build_json(const lx_st_entry *entries, size_t n, const char *const *meta_keys,
                            const char *const *meta_values, size_t nmeta, json_t **out)
{
    json_t *root = json_object();
    if (!root)
        return lx_fail(LX_EFAIL, "out of memory (safetensors header)");
    lx_status st = LX_OK;
    if (nmeta > 0) {
        json_t *meta = json_object();
        st = set_new(root, "__metadata__", meta, "__metadata__");
        for (size_t i = 0; st == LX_OK && i < nmeta; i++)
            st = set_new(meta, meta_keys[i], json_string(meta_values[i]), "__metadata__ entry");
    }
    for (size_t i = 0; st == LX_OK && i < n; i++) {
        const lx_st_entry *e = &entries[i];
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        if (!t || !shape || !offs) {
            json_decref(t);
            json_decref(shape);
            json_decref(offs);
            st = lx_fail(LX_EFAIL, "out of memory (safetensors header)");
            break;
        }
        int bad = json_object_set_new(t, "dtype", json_string(lx_dtype_name(e->dtype)));
        for (int d = 0; d < e->ndim; d++)
            bad |= json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
        bad |= json_array_append_new(offs, json_integer((json_int_t)e->begin));
        bad |= json_array_append_new(offs, json_integer((json_int_t)(e->begin + e->nbytes)));
        bad |= json_object_set_new(t, "shape", shape);
        bad |= json_object_set_new(t, "data_offsets", offs);
        if (bad) {
            json_decref(t);
            st = lx_fail(LX_EFAIL, "out of memory (safetensors header of %zu tensors)", n);
            break;
        }
        st = set_new(root, e->name, t, "tensor");
    }
    if (st != LX_OK) {
        json_decref(root);
        return st;
    }
    *out = root;
    return LX_OK;
}

lx_status lx_st_layout_build(lx_st_layout *L, lx_st_entry *entries, size_t n,
                             const char *const *meta_keys,
                             const char *const *meta_values, size_t nmeta)
{
    memset(L, 0, sizeof *L);
    lx_status st = check_names(entries, n);
    if (st != LX_OK)
        return st;
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        if ((st = entry_size(&entries[i])) != LX_OK)
            return st;
        entries[i].begin = offset;
        if (entries[i].nbytes > JSON_INT_LIMIT - offset) {
            char q[NAME_QUOTE];
            return lx_fail(LX_EFAIL, "tensor '%s': data offsets overflow (%" PRIu64 " + %" PRIu64 " bytes)",
                           lx_st_escape_name(entries[i].name, q, sizeof q), offset, entries[i].nbytes);
        }
        offset += entries[i].nbytes;
    }

    json_t *root;
    if ((st = build_json(entries, n, meta_keys, meta_values, nmeta, &root)) != LX_OK)
        return st;
    char *json = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!json)
        return lx_fail(LX_EFAIL, "out of memory (safetensors header of %zu tensors)", n);

    /* Pad N to a multiple of 8, as the reference writer does, so that the
     * data buffer at 8 + N is 8-aligned. */
    size_t len = strlen(json);
    uint64_t padded = ((uint64_t)len + 7) / 8 * 8;
    if (padded > LX_ST_MAX_HEADER) {
        free(json);
        return lx_fail(LX_EFAIL, "safetensors layout: header of %" PRIu64 " bytes exceeds the readers' limit of %d",
                       padded, LX_ST_MAX_HEADER);
    }
    uint64_t header_size = 8 + padded;
    if (offset > JSON_INT_LIMIT - header_size) {
        free(json);
        return lx_fail(LX_EFAIL, "safetensors layout: file size overflows (%" PRIu64 " data bytes)", offset);
    }
    char *header = malloc(header_size);
    if (!header) {
        free(json);
        return lx_fail(LX_EFAIL, "out of memory (safetensors header)");
    }
    for (int b = 0; b < 8; b++)
        header[b] = (char)(unsigned char)(padded >> (8 * b));
    memcpy(header + 8, json, len);
    memset(header + 8 + len, ' ', padded - len);
    free(json);

    L->n = n;
    L->entries = entries;
    L->header = header;
    L->header_size = header_size;
    L->file_size = header_size + offset;
    return LX_OK;
}

void lx_st_layout_free(lx_st_layout *L)
{
    if (!L)
        return;
    free(L->header);
    memset(L, 0, sizeof *L);
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO; /* the size was checked: a short read means the file shrank */
            return -1;
        }
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static lx_status create_file(lx_st_out *o, const lx_st_layout *L)
{
    /* a new file: what had the name (a link to another file) is replaced,
     * never written through; a device or pipe there is refused, and never
     * unlinked by the cleanup below (positional writes and a sparse
     * extension need a regular file) */
    int fd = lx_create_fresh(o->path, O_WRONLY);
    if (fd < 0)
        return lx_fail_create(o->path, errno, LX_EOUTPUT);
    lx_status st = LX_OK;
    if (lx_pwrite_all(fd, L->header, L->header_size, 0) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: writing the %" PRIu64 "-byte header failed",
                           o->path, L->header_size);
    else if (ftruncate(fd, (off_t)L->file_size) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot extend to %" PRIu64 " bytes",
                           o->path, L->file_size);
    if (st != LX_OK) {
        /* The file was ours (created or truncated): leave no half-made file behind. */
        close(fd);
        unlink(o->path);
        return st;
    }
    o->fd = fd;
    lx_dio_open(&o->dio, fd);
    return LX_OK;
}

/* Reopen a file an earlier run created: same size and same header bytes. */
static lx_status reopen_file(lx_st_out *o, const lx_st_layout *L)
{
    int fd;
    struct stat sb;
    lx_status st = lx_open_regular(o->path, O_RDWR, LX_EOUTPUT, &fd, &sb);
    if (st == LX_OK && fd < 0)
        st = lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open for reuse", o->path);
    if (st != LX_OK)
        return st;
    char *have = NULL;
    if ((uint64_t)sb.st_size != L->file_size) {
        st = lx_fail(LX_EOUTPUT, "%s: is %" PRIu64 " bytes, expected %" PRIu64 ": not the file this job writes",
                     o->path, (uint64_t)sb.st_size, L->file_size);
    } else if (!(have = malloc(L->header_size))) {
        st = lx_fail(LX_EFAIL, "out of memory (safetensors header)");
    } else if (pread_all(fd, have, L->header_size, 0) != 0) {
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot read the header", o->path);
    } else if (memcmp(have, L->header, L->header_size) != 0) {
        st = lx_fail(LX_EOUTPUT, "%s: header differs from the planned one (%" PRIu64 " bytes): "
                     "not the file this job writes", o->path, L->header_size);
    }
    free(have);
    if (st != LX_OK) {
        close(fd);
        return st;
    }
    o->fd = fd;
    lx_dio_open(&o->dio, fd);
    return LX_OK;
}

lx_status lx_st_out_open(lx_st_out *o, const char *path, const lx_st_layout *L, int reuse)
{
    o->fd = -1;
    lx_dio_init(&o->dio);
    o->layout = L;
    o->path = strdup(path);
    if (!o->path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = reuse ? reopen_file(o, L) : create_file(o, L);
    if (st != LX_OK) {
        free(o->path);
        o->path = NULL;
    }
    return st;
}

/* The header and the full (sparse) size in a new temporary file of tmpdir;
 * fd open for writing on success, the file removed on failure. */
static lx_status make_temp(const lx_st_layout *L, const char *tmpdir, const char *shown,
                           char **tmp, int *fdp)
{
    *fdp = -1;
    *tmp = NULL;
    /* a name of its own (O_EXCL), with the mode a plain creation gets */
    static unsigned counter;
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 100; attempt++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        free(*tmp);
        if (asprintf(tmp, "%s/shard-%ld-%u-%08lx.tmp", tmpdir, (long)getpid(),
                     __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED),
                     (unsigned long)ts.tv_nsec ^ ((unsigned long)attempt << 20)) < 0) {
            *tmp = NULL;
            return lx_fail(LX_EFAIL, "out of memory");
        }
        fd = open(*tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot create a temporary file in %s",
                                     shown, tmpdir);
        free(*tmp);
        *tmp = NULL;
        return st;
    }
    lx_status st = LX_OK;
    if (lx_pwrite_all(fd, L->header, L->header_size, 0) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: writing the %" PRIu64 "-byte header failed",
                           *tmp, L->header_size);
    else if (ftruncate(fd, (off_t)L->file_size) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot extend to %" PRIu64 " bytes", *tmp,
                           L->file_size);
    if (st != LX_OK) {
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return st;
    }
    *fdp = fd;
    return LX_OK;
}

/* Put the finished temporary file at path unless something is there
 * already: *placed = 0 then.  renameat2's RENAME_NOREPLACE first: the name
 * never shows the file with two links (a part reopening it refuses a file
 * with two: apply_writer.c); link(2), which works everywhere, NFS included,
 * where the file system does not know the flag. */
static lx_status place_temp(const char *tmp, const char *path, int *placed)
{
    *placed = 0;
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
        *placed = 1;
        return LX_OK;
    }
    int err = errno;
    if (err == EEXIST) {
        unlink(tmp);
        return LX_OK;
    }
    if (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == ENOSYS) {
        if (link(tmp, path) == 0) {
            *placed = 1;
            unlink(tmp);
            return LX_OK;
        }
        err = errno;
        if (err == EEXIST) {
            unlink(tmp);
            return LX_OK;
        }
    }
    unlink(tmp);
    return lx_fail_errno(LX_EFAIL, err, "%s: cannot create (from %s)", path, tmp);
}

lx_status lx_st_out_open_shared(lx_st_out *o, const char *path, const char *tmpdir,
                                const lx_st_layout *L, int *created)
{
    *created = 0;
    o->fd = -1;
    lx_dio_init(&o->dio);
    o->layout = L;
    o->path = strdup(path);
    if (!o->path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    struct stat sb;
    if (lstat(path, &sb) != 0 && errno == ENOENT) {
        char *tmp;
        int fd, placed = 0;
        st = make_temp(L, tmpdir, path, &tmp, &fd);
        if (st == LX_OK) {
            st = place_temp(tmp, path, &placed);
            free(tmp);
            if (st == LX_OK && placed) {
                o->fd = fd;
                lx_dio_open(&o->dio, fd);
                *created = 1;
                return LX_OK;
            }
            close(fd);
        }
    }
    /* there already, made by another process or just now by a racing one:
     * complete (the name appears only once the file is) or not ours */
    if (st == LX_OK)
        st = reopen_file(o, L);
    if (st != LX_OK) {
        free(o->path);
        o->path = NULL;
    }
    return st;
}

lx_status lx_st_out_write(lx_st_out *o, size_t idx, uint64_t off, const void *buf, size_t len)
{
    const lx_st_layout *L = o->layout;
    if (idx >= L->n)
        return lx_fail(LX_EFAIL, "%s: write to tensor #%zu, the file has %zu tensors", o->path, idx, L->n);
    const lx_st_entry *e = &L->entries[idx];
    char q[NAME_QUOTE];
    if (off > e->nbytes || len > e->nbytes - off)
        return lx_fail(LX_EFAIL, "%s: tensor '%s': write of %zu bytes at offset %" PRIu64
                       " is outside its %" PRIu64 " bytes", o->path,
                       lx_st_escape_name(e->name, q, sizeof q), len, off, e->nbytes);
    uint64_t at = L->header_size + e->begin + off;
    if (lx_dio_pwrite(&o->dio, o->fd, buf, len, at) != 0) {
        int err = errno;
        return lx_fail_errno(LX_EFAIL, err, "%s: tensor '%s': writing %zu bytes at file offset %" PRIu64 " failed",
                             o->path, lx_st_escape_name(e->name, q, sizeof q), len, at);
    }
    return LX_OK;
}

/* The file offset of bytes [off, off+len) of tensor idx, bounds checked
 * (what: the operation, for the message). */
static lx_status file_range(const lx_st_out *o, size_t idx, uint64_t off, uint64_t len,
                            const char *what, uint64_t *at)
{
    const lx_st_layout *L = o->layout;
    if (idx >= L->n)
        return lx_fail(LX_EFAIL, "%s: %s of tensor #%zu, the file has %zu tensors", o->path, what,
                       idx, L->n);
    const lx_st_entry *e = &L->entries[idx];
    if (off > e->nbytes || len > e->nbytes - off) {
        char q[NAME_QUOTE];
        return lx_fail(LX_EFAIL, "%s: tensor '%s': %s of %" PRIu64 " bytes at offset %" PRIu64
                       " is outside its %" PRIu64 " bytes", o->path,
                       lx_st_escape_name(e->name, q, sizeof q), what, len, off, e->nbytes);
    }
    *at = L->header_size + e->begin + off;
    return LX_OK;
}

lx_status lx_st_out_writeback(lx_st_out *o, size_t idx, uint64_t off, uint64_t len)
{
    uint64_t at;
    lx_status st = file_range(o, idx, off, len, "writeback", &at);
    if (st != LX_OK)
        return st;
#ifdef SYNC_FILE_RANGE_WRITE
    if (len && sync_file_range(o->fd, (off_t)at, (off_t)len, SYNC_FILE_RANGE_WRITE) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot start writing back", o->path);
#endif
    return LX_OK;
}

lx_status lx_st_out_release(lx_st_out *o, size_t idx, uint64_t off, uint64_t len, int wait)
{
    uint64_t at;
    lx_status st = file_range(o, idx, off, len, "release", &at);
    if (st != LX_OK || !len)
        return st;
#ifdef SYNC_FILE_RANGE_WRITE
    unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    if (wait && sync_file_range(o->fd, (off_t)at, (off_t)len, flags) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: writing back %" PRIu64 " bytes at file offset "
                             "%" PRIu64 " failed", o->path, len, at);
#else
    (void)wait;
#endif
    posix_fadvise(o->fd, (off_t)at, (off_t)len, POSIX_FADV_DONTNEED);
    return LX_OK;
}

lx_status lx_st_out_sync(lx_st_out *o)
{
    if (fdatasync(o->fd) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: fdatasync failed", o->path);
    return LX_OK;
}

lx_status lx_st_out_close(lx_st_out *o)
{
    lx_status st = LX_OK;
    if (o->fd >= 0 && close(o->fd) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: close failed", o->path);
    o->fd = -1;
    lx_dio_close(&o->dio);
    free(o->path);
    o->path = NULL;
    return st;
}

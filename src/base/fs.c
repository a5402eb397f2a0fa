/* fs.c - the file-system primitives of every layer (see fs.h): whole
 * writes and reads, atomic replacement, copies, directories and their
 * durability (the one lx_sync_dir), and removal. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/fs.h"
#include "loxstream/testhook.h"

char *lx_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a && dir[a - 1] != '/')
        p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

lx_status lx_write_all(int fd, const void *buf, size_t len, const char *path)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return lx_fail_errno(LX_EFAIL, errno, "%s: write failed", path);
        }
        p += w;
        len -= (size_t)w;
    }
    return LX_OK;
}

/* The one rule for syncing a directory.  After a rename, a create or an
 * unlink, the entry is durable only once its directory is fsync'ed: a
 * failure there (EIO, ENOSPC on some file systems, EACCES opening it) means
 * that a crash may undo the change, and is an error like any failed write.
 * Only "this file system cannot fsync a directory" is not: EINVAL (the
 * descriptor does not support synchronisation, as fsync(2) documents for
 * some special and network file systems) and ENOTSUP/EOPNOTSUPP (FUSE and
 * 9p file systems without an fsync for directories) say that there is
 * nothing more the process can do, and its earlier writes stand. */
static int cannot_sync_dirs(int err)
{
    return err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP;
}

lx_status lx_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot open directory", dir);
    int injected = lx_test_dirsync_error(dir);
    int rc = injected ? -1 : fsync(fd), err = injected ? injected : errno;
    close(fd);
    if (rc != 0 && !cannot_sync_dirs(err))
        return lx_fail_errno(LX_EFAIL, err, "%s: fsync of the directory failed", dir);
    return LX_OK;
}

lx_status lx_sync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_sync_dir(dirname(copy));
    free(copy);
    return st;
}

lx_status lx_unlink_if(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot remove", path);
    return LX_OK;
}

static lx_status refuse(const char *path, lx_status refused, const char *kind);

/* The handler that calls lx_interrupt_cleanup may run on any thread, so
 * the flag is a lock-free atomic (a volatile sig_atomic_t is safe only
 * within one thread), stored with release after the path is copied and
 * loaded with acquire before it is read. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic int is not lock-free");
static char interrupt_path[PATH_MAX];
static atomic_int interrupt_armed;

void lx_remove_on_interrupt(const char *path)
{
    atomic_store_explicit(&interrupt_armed, 0, memory_order_release);
    if (path && strlen(path) < sizeof interrupt_path) {
        memcpy(interrupt_path, path, strlen(path) + 1);
        atomic_store_explicit(&interrupt_armed, 1, memory_order_release);
    }
}

void lx_interrupt_cleanup(void)
{
    if (atomic_exchange_explicit(&interrupt_armed, 0, memory_order_acquire))
        unlink(interrupt_path);
}

int lx_create_fresh(const char *path, int flags)
{
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        /* only a file or a link is replaced: a device, FIFO or directory
         * is never removed (EEXIST) */
        if (!S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode)) {
            errno = EEXIST;
            return -1;
        }
        if (unlink(path) != 0 && errno != ENOENT)
            return -1;
    }
    return open(path, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
}

lx_status lx_fail_create(const char *path, int err, lx_status refused)
{
    struct stat sb;
    if (err == EEXIST && lstat(path, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode))
        return refuse(path, refused, lx_file_kind(sb.st_mode));
    return lx_fail_errno(LX_EFAIL, err, "%s: cannot create", path);
}

lx_status lx_fd_own_file(int fd, const char *path, uint64_t dev, lx_status refuse)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    if (!S_ISREG(sb.st_mode))
        return lx_fail(refuse, "%s: not a regular file: loxstream does not write into it", path);
    if (sb.st_nlink != 1)
        return lx_fail(refuse, "%s: has %ju names (a hard link to another file): loxstream does "
                       "not write through it; remove it", path, (uintmax_t)sb.st_nlink);
    if ((uint64_t)sb.st_dev != dev)
        return lx_fail(refuse, "%s: on another file system than its directory (a mount "
                       "point): loxstream does not write into it", path);
    return LX_OK;
}

const char *lx_file_kind(mode_t mode)
{
    return S_ISREG(mode)    ? "a regular file"
           : S_ISDIR(mode)  ? "a directory"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISLNK(mode)  ? "a symbolic link"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
                            : "not a regular file";
}

/* Whatever is at path and cannot be opened as a regular file: what it is. */
static lx_status refuse(const char *path, lx_status refused, const char *kind)
{
    return lx_fail(refused, "%s: not a regular file (%s): loxstream neither reads nor "
                   "writes through it (remove it)", path, kind);
}

static lx_status open_regular(const char *path, int flags, int nofollow, lx_status refused,
                              int *fd, struct stat *sb)
{
    struct stat own;
    if (!sb)
        sb = &own;
    *fd = open(path, flags | O_NONBLOCK | nofollow | O_NOCTTY | O_CLOEXEC, 0666);
    if (*fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return LX_OK;
        /* ELOOP: a symbolic link (O_NOFOLLOW); ENXIO: a FIFO without a
         * reader opened for writing, or a device without its driver */
        if ((err == ELOOP || err == ENXIO || err == EISDIR || err == EWOULDBLOCK) &&
            (nofollow ? lstat(path, sb) : stat(path, sb)) == 0 && !S_ISREG(sb->st_mode))
            return refuse(path, refused, lx_file_kind(sb->st_mode));
        return lx_fail_errno(LX_EFAIL, err, "%s: cannot open", path);
    }
    if (fstat(*fd, sb) != 0) {
        lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
        close(*fd);
        *fd = -1;
        return st;
    }
    if (!S_ISREG(sb->st_mode)) {
        close(*fd);
        *fd = -1;
        return refuse(path, refused, lx_file_kind(sb->st_mode));
    }
    int fl = fcntl(*fd, F_GETFL);
    if (fl >= 0)
        fcntl(*fd, F_SETFL, fl & ~O_NONBLOCK);
    return LX_OK;
}

lx_status lx_open_regular(const char *path, int flags, lx_status refused, int *fd,
                          struct stat *sb)
{
    return open_regular(path, flags, O_NOFOLLOW, refused, fd, sb);
}

lx_status lx_open_input_regular(const char *path, int flags, lx_status refused, int *fd,
                                struct stat *sb)
{
    return open_regular(path, flags, 0, refused, fd, sb);
}

lx_status lx_write_file_atomic(const char *path, const void *buf, size_t len)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp)
        return lx_fail(LX_EFAIL, "out of memory");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    lx_status st;
    int fd = lx_create_fresh(tmp, O_WRONLY);
    if (fd < 0) {
        st = lx_fail_create(tmp, errno, LX_EOUTPUT);
        free(tmp);
        return st;
    }
    st = lx_write_all(fd, buf, len, tmp);
    if (st == LX_OK && fsync(fd) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: fsync failed", tmp);
    if (close(fd) != 0 && st == LX_OK)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: close failed", tmp);
    if (st == LX_OK && rename(tmp, path) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", tmp, path);
    if (st != LX_OK)
        unlink(tmp);
    free(tmp);
    if (st == LX_OK)
        st = lx_sync_parent(path);
    return st;
}

lx_status lx_read_fd_text(int fd, size_t size, const char *path, char **out, size_t *len)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return lx_fail(LX_EFAIL, "out of memory reading %s", path);
    size_t have = 0;
    while (have < size) {
        ssize_t r = read(fd, buf + have, size - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: read failed", path);
            free(buf);
            return st;
        }
        if (r == 0)
            break; /* shrank meanwhile: take what is there */
        have += (size_t)r;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    return LX_OK;
}

lx_status lx_copy_file(const char *src, const char *dst)
{
    int in, out;
    lx_status st = lx_open_input_regular(src, O_RDONLY, LX_EINPUT, &in, NULL);
    if (st == LX_OK && in < 0)
        st = lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open", src);
    if (st != LX_OK)
        return st;
    out = lx_create_fresh(dst, O_WRONLY);
    if (out < 0) {
        st = lx_fail_create(dst, errno, LX_EOUTPUT);
        close(in);
        return st;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            st = lx_fail_errno(LX_EFAIL, errno, "%s: read failed", src);
            break;
        }
        if (r == 0)
            break;
        if ((st = lx_write_all(out, buf, (size_t)r, dst)) != LX_OK)
            break;
    }
    close(in);
    if (close(out) != 0 && st == LX_OK)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: close failed", dst);
    return st;
}

lx_status lx_mkdir_p(const char *path)
{
    if (!*path)
        return lx_fail(LX_EFAIL, "cannot create a directory with an empty name");
    char *p = strdup(path);
    if (!p)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot create directory", p);
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    if (st == LX_OK) {
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = lx_fail(LX_EFAIL, "%s: exists and is not a directory", path);
    }
    free(p);
    return st;
}

/* direct.c - the direct (O_DIRECT) writes of direct.h: the second
 * descriptor, the alignment the file system asks for, the split of a write
 * into buffered ends and a direct middle, and the fallback to buffered
 * writes where direct I/O is refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/direct.h"

int lx_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            /* A regular file only returns 0 when it cannot grow: treat as full. */
            errno = ENOSPC;
            return -1;
        }
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

void lx_dio_init(lx_dio *d)
{
    memset(d, 0, sizeof *d);
    d->fd = -1;
}

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* a power of two, or 0 */
static size_t pow2_or_0(size_t a)
{
    return a && !(a & (a - 1)) ? a : 0;
}

void lx_dio_open(lx_dio *d, int fd)
{
    lx_dio_init(d);
#ifdef O_DIRECT
    const char *env = getenv("LOXSTREAM_DIRECT_IO");
    if (!env || strcmp(env, "1") != 0)
        return;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return;
    long page = sysconf(_SC_PAGESIZE);
    size_t align = max_size(page > 0 ? (size_t)page : 4096, (size_t)sb.st_blksize);
    size_t malign = 4096; /* unless the kernel says */
#if defined(STATX_DIOALIGN)
    /* where the kernel says (6.1 on): no direct I/O here (0), or its
     * alignments; older kernels say nothing, and a refused first write
     * turns direct writes off */
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
        if (!sx.stx_dio_offset_align || !sx.stx_dio_mem_align)
            return;
        align = max_size(align, sx.stx_dio_offset_align);
        malign = max_size(sx.stx_dio_mem_align, sizeof(void *));
    }
#endif
    if (!pow2_or_0(align) || !pow2_or_0(malign) || align > LX_DIO_BOUNCE || malign > LX_DIO_BOUNCE)
        return;
    /* the same inode, whatever the path names now */
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int dfd = open(proc, O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOCTTY);
    if (dfd < 0)
        return;
    struct stat db;
    if (fstat(dfd, &db) != 0 || db.st_dev != sb.st_dev || db.st_ino != sb.st_ino) {
        close(dfd);
        return;
    }
    if (pthread_mutex_init(&d->mu, NULL) != 0) {
        close(dfd);
        return;
    }
    d->fd = dfd;
    d->align = align;
    d->malign = malign;
    d->on = 1;
#else
    (void)fd;
#endif
}

void lx_dio_close(lx_dio *d)
{
    if (d->fd >= 0)
        close(d->fd);
    if (d->on)
        pthread_mutex_destroy(&d->mu);
    free(d->bounce);
    lx_dio_init(d);
}

/* Direct writes of [p, p + len) at off (both aligned, len a multiple of
 * the alignment), from the buffer where its address allows, else through
 * the bounce buffer.  0; 1 if the file system refused (d is then off and
 * *done bytes went out); -1 with errno on a failure. */
static int direct_write(lx_dio *d, const char *p, size_t len, uint64_t off, size_t *done)
{
    *done = 0;
    int zero_copy = ((uintptr_t)p & (d->malign - 1)) == 0;
    if (!zero_copy && !d->bounce) {
        if (posix_memalign(&d->bounce, d->malign, LX_DIO_BOUNCE) != 0) {
            d->bounce = NULL;
            return 1; /* no memory for it: buffered, as without direct I/O */
        }
    }
    while (*done < len) {
        size_t n = len - *done;
        const char *src = p + *done;
        if (!zero_copy) {
            n = n < LX_DIO_BOUNCE ? n : LX_DIO_BOUNCE;
            memcpy(d->bounce, src, n);
            src = d->bounce;
        }
        ssize_t w = pwrite(d->fd, src, n, (off_t)(off + *done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL) {
            /* off from here on (the bounce buffer and the count stay to
             * lx_dio_close) */
            close(d->fd);
            d->fd = -1;
            return 1;
        }
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        *done += (size_t)w;
        d->direct_bytes += (uint64_t)w;
        if ((size_t)w & (d->align - 1))
            return 1; /* a short write off the alignment: the rest buffered */
    }
    return 0;
}

/* lx_dio_pwrite with d->mu held. */
static int dio_pwrite_locked(lx_dio *d, int fd, const char *p, size_t len, uint64_t off)
{
    if (d->fd < 0)
        return lx_pwrite_all(fd, p, len, off);
    uint64_t a = d->align;
    uint64_t a0 = (off + a - 1) / a * a, a1 = (off + len) / a * a;
    if (a1 <= a0 || a1 - a0 < LX_DIO_MIN)
        return lx_pwrite_all(fd, p, len, off);
    size_t head = (size_t)(a0 - off), mid = (size_t)(a1 - a0);
    if (head && lx_pwrite_all(fd, p, head, off) != 0)
        return -1;
    size_t done;
    int rc = direct_write(d, p + head, mid, a0, &done);
    if (rc < 0)
        return -1;
    /* refused part way: what is left of the middle, buffered */
    size_t rest = head + done;
    if (rc == 1)
        return lx_pwrite_all(fd, p + rest, len - rest, off + rest);
    size_t tail = len - head - mid;
    return tail ? lx_pwrite_all(fd, p + head + mid, tail, off + head + mid) : 0;
}

int lx_dio_pwrite(lx_dio *d, int fd, const void *buf, size_t len, uint64_t off)
{
    if (!d->on || len < LX_DIO_MIN)
        return lx_pwrite_all(fd, buf, len, off);
    pthread_mutex_lock(&d->mu);
    int rc = dio_pwrite_locked(d, fd, buf, len, off);
    int err = errno;
    pthread_mutex_unlock(&d->mu);
    errno = err;
    return rc;
}

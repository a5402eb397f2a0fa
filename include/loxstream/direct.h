/* direct.h - large positional writes of an output file that bypass the page
 * cache (O_DIRECT) for their whole aligned blocks.
 *
 * A buffered write copies every byte into the page cache, which then holds
 * the output as dirty pages until writeback: a copy per byte, memory the
 * inputs need, dirty pages charged to a memory cgroup, and on a virtual
 * machine that hands free memory back to its host (free page reporting)
 * a host fault per fresh page, several times the cost of the copy.  A
 * direct write sends the caller's bytes to the device.
 *
 * Only whole blocks of `align` bytes (the file system's direct-I/O offset
 * alignment, at least its block and the page size) go direct; the partial
 * blocks at either end of a write go through the ordinary descriptor.  So a
 * block is written either only directly or only through the page cache,
 * whichever writes (and processes: --part) touch it, and the two never mix
 * on one block (but after a direct write the kernel cut short off the
 * alignment, whose block's rest goes buffered, reading the direct part
 * back: the same bytes).  The direct descriptor is a second open of the same inode
 * (through /proc/self/fd), never of the path.  Where direct I/O is refused
 * (tmpfs, some network or FUSE file systems; EINVAL on open or on a
 * write), every write is buffered, as before.  Same bytes in the file
 * either way; durability is unchanged (fdatasync of the ordinary
 * descriptor flushes both).
 *
 * Off unless LOXSTREAM_DIRECT_IO=1 is in the environment: on the VM of
 * bench/RESULTS.md it halves a warm run's system time, but the cold 7B
 * run is 8-16% slower with it (the inputs' fresh page-cache pages then
 * cost the computing threads more than the output's copy saves), and a
 * direct write waits for the device, one request at a time, which a
 * network file system may make slow.
 */
#ifndef LOXSTREAM_DIRECT_H
#define LOXSTREAM_DIRECT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Several threads may write one file through one lx_dio at once (synth
 * does): its direct writes take turns (mu), as they share the descriptor,
 * which a refusal closes, and the bounce buffer. */
typedef struct lx_dio {
    int fd;        /* the O_DIRECT descriptor; -1: every write buffered */
    size_t align;  /* file offsets and lengths of direct writes */
    size_t malign; /* buffer addresses of direct writes */
    void *bounce;  /* LX_DIO_BOUNCE bytes at malign, for unaligned buffers */
    uint64_t direct_bytes; /* written directly so far */
    int on;             /* lx_dio_open set up a descriptor (and mu), until lx_dio_close */
    pthread_mutex_t mu; /* with on: held over fd, bounce and direct_bytes in a write */
} lx_dio;

/* Writes of fewer whole blocks than this stay buffered. */
#define LX_DIO_MIN ((size_t)1 << 20)
/* The bounce buffer, allocated on the first direct write from a buffer
 * whose address is not aligned like its file offset. */
#define LX_DIO_BOUNCE ((size_t)2 << 20)

/* pwrite all of buf at off through fd, retrying on EINTR and short
 * writes; 0, or -1 with errno set (ENOSPC for a write of 0 bytes). */
int lx_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);

/* No direct descriptor (a state lx_dio_close accepts). */
void lx_dio_init(lx_dio *d);
/* Set up direct writes to the regular file open as fd (for writing), where
 * the environment, the file system and the kernel allow; never fails (it
 * just leaves d->fd at -1). */
void lx_dio_open(lx_dio *d, int fd);
/* pwrite all of buf at off: whole blocks through d, the rest through fd.
 * 0, or -1 with errno set (a short or failed write); a direct write the
 * file system refuses (EINVAL) turns d off and is made buffered. */
int lx_dio_pwrite(lx_dio *d, int fd, const void *buf, size_t len, uint64_t off);
void lx_dio_close(lx_dio *d);

#endif

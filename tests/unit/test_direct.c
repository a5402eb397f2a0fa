/* test_direct.c - direct.h's writes past the page cache: the bytes of a
 * file written in pieces of every alignment (buffer address and file
 * offset, a head and a tail of partial blocks, writes below LX_DIO_MIN)
 * equal the pattern they were taken from; direct writes happen where the
 * file system offers them (statx's STATX_DIOALIGN) and never elsewhere; a
 * direct write the kernel refuses falls back to buffered writes with the
 * same bytes; only LOXSTREAM_DIRECT_IO=1 turns it on.  Each file is read back
 * through a fresh descriptor after the page cache of it is dropped
 * (POSIX_FADV_DONTNEED), so what is compared is what the writes left.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/direct.h"
#include "tmpdir.h"

#define MiB ((size_t)1 << 20)
#define FILE_BYTES (13 * MiB + 777)

static unsigned char *pattern(size_t n, uint32_t seed)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

/* Does the file system of path offer direct I/O (per the kernel)? -1: the
 * kernel does not say. */
static int fs_offers_direct(int fd)
{
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN))
        return sx.stx_dio_offset_align > 0;
#else
    (void)fd;
#endif
    return -1;
}

static int new_file(const char *name)
{
    int fd = open(tmpdir_file(name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)FILE_BYTES), 0);
    return fd;
}

/* The file's bytes, as the storage has them once the page cache is dropped. */
static void assert_file_is(const char *name, const unsigned char *want, size_t n)
{
    int fd = open(tmpdir_file(name), O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(fdatasync(fd), 0);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    unsigned char *have = malloc(n);
    assert_non_null(have);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, have + got, n - got, (off_t)got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (have[i] != want[i])
            first = i;
    if (first != n)
        fail_msg("%s: byte %zu is %u, expected %u", name, first, have[first], want[first]);
    free(have);
    close(fd);
}

/* Pieces of every kind, covering the file: [offset, length) and whether
 * the buffer is taken at an address aligned like a page (zero copy). */
static const struct piece {
    size_t off, len;
    int aligned_buf;
} pieces[] = {
    {0, 3, 0},                              /* tiny: buffered */
    {3, MiB / 2, 0},                        /* below LX_DIO_MIN: buffered */
    {3 + MiB / 2, 4 * MiB - 3 - MiB / 2, 0}, /* head, middle (bounced), tail */
    {4 * MiB, 2 * MiB, 1},                  /* aligned both ways: zero copy */
    {6 * MiB, 5 * MiB + 4096 + 1, 0},       /* longer than the bounce buffer */
    {11 * MiB + 4097, 2 * MiB - 4097 + 777, 1}, /* to the end, unaligned start */
};

/* Write the pieces through d from src (aligned copies where asked for). */
static void write_pieces(lx_dio *d, int fd, const unsigned char *src)
{
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        const struct piece *pc = &pieces[i];
        const unsigned char *buf = src + pc->off;
        void *al = NULL;
        if (pc->aligned_buf) {
            /* same address modulo the page as the offset: the whole blocks
             * start on a page boundary of the buffer */
            size_t shift = pc->off % 4096;
            assert_int_equal(posix_memalign(&al, 4096, pc->len + 4096), 0);
            memcpy((char *)al + shift, buf, pc->len);
            buf = (unsigned char *)al + shift;
        }
        assert_int_equal(lx_dio_pwrite(d, fd, buf, pc->len, pc->off), 0);
        free(al);
    }
}

static void same_bytes_direct_where_offered(void **state)
{
    (void)state;
    unsigned char *want = pattern(FILE_BYTES, 1);
    int fd = new_file("a.bin");
    int offered = fs_offers_direct(fd);
    lx_dio d;
    setenv("LOXSTREAM_DIRECT_IO", "1", 1);
    lx_dio_open(&d, fd);
    if (offered == 0)
        assert_int_equal(d.fd, -1);
    if (offered == 1)
        assert_true(d.fd >= 0);
    write_pieces(&d, fd, want);
    if (d.fd >= 0) {
        /* every piece of 1 MiB of whole blocks or more went direct, no more */
        assert_true(d.direct_bytes >= 9 * MiB);
        assert_true(d.direct_bytes <= FILE_BYTES - MiB / 2);
        assert_int_equal(d.direct_bytes % d.align, 0);
    } else {
        assert_int_equal(d.direct_bytes, 0);
        print_message("note: no direct I/O in %s (only buffered writes tested)\n", tmpdir_root());
    }
    lx_dio_close(&d);
    assert_int_equal(d.fd, -1);
    close(fd);
    assert_file_is("a.bin", want, FILE_BYTES);
    free(want);
}

/* A new file (new_file) with direct writes set up, where the kernel
 * states an alignment for its file system (tmpfs takes any buffer: there
 * is nothing to refuse there); else the test is skipped. */
static int direct_file(const char *name, lx_dio *d)
{
    int fd = new_file(name);
    setenv("LOXSTREAM_DIRECT_IO", "1", 1);
    lx_dio_open(d, fd);
    if (d->fd < 0 || fs_offers_direct(fd) != 1 || d->malign < 2) {
        lx_dio_close(d);
        close(fd);
        skip();
    }
    return fd;
}

/* A direct write the kernel refuses (here a buffer address below the
 * file system's alignment) turns d off; the bytes are all there.  Only
 * where the kernel states an alignment (tmpfs takes any buffer). */
static void refused_direct_write_falls_back(void **state)
{
    (void)state;
    lx_dio d;
    int fd = direct_file("b.bin", &d);
    unsigned char *want = pattern(FILE_BYTES, 2);
    d.malign = 1; /* so an odd address is written without the bounce buffer */
    unsigned char *odd = malloc(FILE_BYTES + 1);
    assert_non_null(odd);
    memcpy(odd + 1, want, FILE_BYTES);
    assert_int_equal(lx_dio_pwrite(&d, fd, odd + 1, FILE_BYTES, 0), 0);
    assert_int_equal(d.fd, -1);
    assert_int_equal(d.direct_bytes, 0);
    /* and later writes are buffered */
    assert_int_equal(lx_dio_pwrite(&d, fd, want, 4 * MiB, 0), 0);
    lx_dio_close(&d);
    close(fd);
    free(odd);
    assert_file_is("b.bin", want, FILE_BYTES);
    free(want);
}

/* A refusal after direct writes went out keeps their count (direct.h:
 * "written directly so far"; apply's --stats adds the difference across
 * each write, which a count reset to 0 made wrap around). */
static void refusal_keeps_direct_count(void **state)
{
    (void)state;
    lx_dio d;
    int fd = direct_file("e.bin", &d);
    unsigned char *want = pattern(FILE_BYTES, 4);
    /* 2 MiB at 4 MiB from a page-aligned buffer: direct */
    void *al = NULL;
    assert_int_equal(posix_memalign(&al, 4096, 2 * MiB), 0);
    memcpy(al, want + 4 * MiB, 2 * MiB);
    assert_int_equal(lx_dio_pwrite(&d, fd, al, 2 * MiB, 4 * MiB), 0);
    free(al);
    uint64_t before = d.direct_bytes;
    assert_true(before >= MiB);
    /* then a refused one (an odd address, as above), over the rest */
    d.malign = 1;
    unsigned char *odd = malloc(FILE_BYTES + 1);
    assert_non_null(odd);
    memcpy(odd + 1, want, FILE_BYTES);
    assert_int_equal(lx_dio_pwrite(&d, fd, odd + 1, 4 * MiB, 0), 0);
    assert_int_equal(lx_dio_pwrite(&d, fd, odd + 1 + 6 * MiB, FILE_BYTES - 6 * MiB, 6 * MiB), 0);
    assert_int_equal(d.fd, -1);
    assert_int_equal(d.direct_bytes, before);
    lx_dio_close(&d);
    close(fd);
    free(odd);
    assert_file_is("e.bin", want, FILE_BYTES);
    free(want);
}

/* Several threads writing one file through one lx_dio at once, as synth's
 * threads do (synth_values.c): each its own pieces, from buffers not
 * aligned like their offsets (so through the bounce buffer), the bytes all
 * there. */
#define THREADS 4
#define PIECES_PER_THREAD 6
#define PIECE (MiB + 3 * 4096 + 123)
struct writer_arg {
    lx_dio *d;
    int fd, t;
    const unsigned char *want;
    int rc;
};

static void *writer_thread(void *p)
{
    struct writer_arg *a = p;
    unsigned char *buf = malloc(PIECE + 1);
    a->rc = buf ? 0 : -1;
    for (int i = 0; buf && i < PIECES_PER_THREAD && a->rc == 0; i++) {
        size_t off = ((size_t)i * THREADS + (size_t)a->t) * PIECE;
        memcpy(buf + 1, a->want + off, PIECE);
        a->rc = lx_dio_pwrite(a->d, a->fd, buf + 1, PIECE, off);
    }
    free(buf);
    return NULL;
}

static void threads_share_one_descriptor(void **state)
{
    (void)state;
    const size_t total = (size_t)THREADS * PIECES_PER_THREAD * PIECE;
    unsigned char *want = pattern(total, 5);
    int fd = open(tmpdir_file("f.bin"), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)total), 0);
    lx_dio d;
    setenv("LOXSTREAM_DIRECT_IO", "1", 1);
    lx_dio_open(&d, fd);
    if (d.fd < 0) {
        lx_dio_close(&d);
        close(fd);
        free(want);
        skip();
    }
    pthread_t th[THREADS];
    struct writer_arg arg[THREADS];
    for (int t = 0; t < THREADS; t++) {
        arg[t] = (struct writer_arg){&d, fd, t, want, 0};
        assert_int_equal(pthread_create(&th[t], NULL, writer_thread, &arg[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(arg[t].rc, 0);
    }
    assert_true(d.direct_bytes >= (uint64_t)THREADS * PIECES_PER_THREAD * MiB);
    lx_dio_close(&d);
    close(fd);
    assert_file_is("f.bin", want, total);
    free(want);
}

static void off_unless_asked_for(void **state)
{
    (void)state;
    int fd = new_file("c.bin");
    lx_dio d;
    const char *values[] = {NULL, "0", "", "yes", "10"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (values[i])
            setenv("LOXSTREAM_DIRECT_IO", values[i], 1);
        else
            unsetenv("LOXSTREAM_DIRECT_IO");
        lx_dio_open(&d, fd);
        assert_int_equal(d.fd, -1);
        lx_dio_close(&d);
    }
    unsetenv("LOXSTREAM_DIRECT_IO");
    /* d off: every write buffered, the bytes the same */
    unsigned char *want = pattern(FILE_BYTES, 3);
    write_pieces(&d, fd, want);
    assert_int_equal(d.direct_bytes, 0);
    lx_dio_close(&d);
    close(fd);
    assert_file_is("c.bin", want, FILE_BYTES);
    free(want);
}

/* Not a regular file: nothing to set up. */
static void pipes_get_no_direct_descriptor(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    lx_dio d;
    setenv("LOXSTREAM_DIRECT_IO", "1", 1);
    lx_dio_open(&d, p[1]);
    assert_int_equal(d.fd, -1);
    lx_dio_close(&d);
    close(p[0]);
    close(p[1]);
}

/* lx_pwrite_all: a write of 0 bytes is ENOSPC, a bad descriptor EBADF. */
static void pwrite_all_errors(void **state)
{
    (void)state;
    errno = 0;
    assert_int_equal(lx_pwrite_all(-1, "x", 1, 0), -1);
    assert_int_equal(errno, EBADF);
    int fd = new_file("d.bin");
    assert_int_equal(lx_pwrite_all(fd, "", 0, 5), 0);
    assert_int_equal(lx_pwrite_all(fd, "xyz", 3, 5), 0);
    char b[3];
    assert_int_equal(pread(fd, b, 3, 5), 3);
    assert_memory_equal(b, "xyz", 3);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_bytes_direct_where_offered),
        cmocka_unit_test(refused_direct_write_falls_back),
        cmocka_unit_test(refusal_keeps_direct_count),
        cmocka_unit_test(threads_share_one_descriptor),
        cmocka_unit_test(off_unless_asked_for),
        cmocka_unit_test(pipes_get_no_direct_descriptor),
        cmocka_unit_test(pwrite_all_errors),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

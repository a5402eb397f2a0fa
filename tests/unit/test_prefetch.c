/* test_prefetch.c - the prefetcher reads what it is given, follows a new
 * list, stops while busy, and survives a file truncated under it.
 * Residency is read with mincore() after the file was dropped from the page
 * cache (posix_fadvise DONTNEED).  The files go to the first of $TMPDIR,
 * /var/tmp and the current directory where the drop works; on a machine
 * where it works in none of them (tmpfs everywhere) the residency checks
 * cannot fail: those cases are reported skipped and the program exits 77
 * (SKIP for make check) unless another case failed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loxstream/plan.h"
#include "loxstream/prefetch.h"
#include "tmpdir.h"

static size_t page;
static int skipped; /* cases whose residency check could not run */

static int make_file(const char *name, size_t bytes, unsigned char **map);
static size_t resident(const unsigned char *p, size_t len);

/* Can a file in the temporary directory be dropped from the page cache? */
static int drop_works(void)
{
    size_t bytes = 16 * page;
    unsigned char *m;
    int fd = make_file("probe", bytes, &m), ok = resident(m, bytes) < bytes / page / 2;
    munmap(m, bytes);
    close(fd);
    return ok;
}

static int setup(void **state)
{
    (void)state;
    page = (size_t)sysconf(_SC_PAGESIZE);
    const char *dirs[] = {NULL, "/var/tmp", "."};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        if (tmpdir_make(dirs[i]) != 0)
            continue;
        if (drop_works())
            return 0;
        if (tmpdir_remove() != 0)
            return -1;
    }
    print_message("page cache drop ineffective in $TMPDIR, /var/tmp and .: "
                  "the residency checks cannot run\n");
    return tmpdir_make(NULL);
}

/* The residency check of the calling case cannot run: report it skipped. */
static void skip_residency(void)
{
    print_message("page cache drop ineffective here: residency not checked\n");
    skipped++;
    skip();
}

/* A file of `bytes` bytes, written, synced and dropped from the cache;
 * mapped read-only into *map.  Returns the fd. */
static int make_file(const char *name, size_t bytes, unsigned char **map)
{
    int fd = open(tmpdir_file(name), O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    unsigned char *buf = malloc(1 << 20);
    assert_non_null(buf);
    for (size_t i = 0; i < (1 << 20); i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    for (size_t off = 0; off < bytes; off += 1 << 20) {
        size_t len = bytes - off < (1 << 20) ? bytes - off : (1 << 20);
        assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    }
    free(buf);
    assert_int_equal(fsync(fd), 0);
    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    *map = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(*map != MAP_FAILED);
    return fd;
}

/* pages of [p, p + len) in the page cache */
static size_t resident(const unsigned char *p, size_t len)
{
    size_t pages = (len + page - 1) / page, n = 0;
    unsigned char *v = malloc(pages);
    assert_non_null(v);
    assert_int_equal(mincore((void *)p, len, v), 0);
    for (size_t i = 0; i < pages; i++)
        n += v[i] & 1;
    free(v);
    return n;
}

static void test_reads_the_list(void **state)
{
    (void)state;
    size_t bytes = 24u << 20, pages = bytes / page;
    unsigned char *a, *b;
    int fa = make_file("a", bytes, &a), fb = make_file("b", bytes, &b);
    int dropped = resident(a, bytes) < pages / 2 && resident(b, bytes) < pages / 2;
    lx_prefetch *pf;
    assert_int_equal(lx_prefetch_start(&pf), LX_OK);
    assert_non_null(pf);
    /* a, then the middle third of b: not page-aligned on purpose */
    lx_range r[2] = {{a, bytes}, {b + bytes / 3 + 100, bytes / 3}};
    lx_prefetch_set(pf, r, 2);
    lx_prefetch_wait(pf);
    assert_int_equal(lx_prefetch_done_bytes(pf), bytes + bytes / 3);
    size_t ra = resident(a, bytes);
    size_t first = (bytes / 3 + 100) / page, last = (bytes / 3 + 100 + bytes / 3 - 1) / page;
    size_t rb = resident(b + first * page, (last - first + 1) * page);
    size_t rest = resident(b, first * page);
    lx_prefetch_stop(pf);
    munmap(a, bytes);
    munmap(b, bytes);
    close(fa);
    close(fb);
    if (!dropped)
        skip_residency();
    assert_int_equal(ra, pages);
    assert_int_equal(rb, last - first + 1);
    /* the rest of b was not asked for (readahead may bring a little) */
    assert_true(rest < first);
}

/* a new list replaces the old one; stop returns while a long list runs */
static void test_new_list_and_stop(void **state)
{
    (void)state;
    size_t big = 64u << 20, small = 4u << 20;
    unsigned char *a, *b;
    int fa = make_file("big", big, &a), fb = make_file("small", small, &b);
    int dropped = resident(b, small) < small / page / 2;
    lx_prefetch *pf;
    assert_int_equal(lx_prefetch_start(&pf), LX_OK);
    lx_range ra = {a, big}, rb = {b, small};
    lx_prefetch_set(pf, &ra, 1);
    lx_prefetch_set(pf, &rb, 1);
    lx_prefetch_wait(pf);
    size_t got = resident(b, small);
    assert_true(lx_prefetch_done_bytes(pf) >= small);
    /* empty list: wait returns at once */
    lx_prefetch_set(pf, NULL, 0);
    lx_prefetch_wait(pf);
    /* stop with work queued */
    assert_int_equal(posix_fadvise(fa, 0, 0, POSIX_FADV_DONTNEED), 0);
    lx_prefetch_set(pf, &ra, 1);
    lx_prefetch_stop(pf);
    munmap(a, big);
    munmap(b, small);
    close(fa);
    close(fb);
    /* NULL is a prefetcher that does nothing */
    lx_prefetch_set(NULL, &rb, 1);
    lx_prefetch_wait(NULL);
    assert_int_equal(lx_prefetch_done_bytes(NULL), 0);
    lx_prefetch_stop(NULL);
    if (!dropped)
        skip_residency();
    assert_int_equal(got, small / page);
}

/* the file shrinks to nothing under the mapping: no signal, no hang */
static void test_truncated_file(void **state)
{
    (void)state;
    size_t bytes = 8u << 20;
    unsigned char *a;
    int fa = make_file("trunc", bytes, &a);
    assert_int_equal(ftruncate(fa, 0), 0);
    lx_prefetch *pf;
    assert_int_equal(lx_prefetch_start(&pf), LX_OK);
    lx_range r = {a, bytes};
    lx_prefetch_set(pf, &r, 1);
    lx_prefetch_wait(pf);
    assert_int_equal(lx_prefetch_done_bytes(pf), bytes);
    lx_prefetch_stop(pf);
    munmap(a, bytes);
    close(fa);
}

/* lx_prefetch_item_ranges: aligned then base per item, base left out for a
 * copy, NULL items skipped, the first item always, the others only while
 * the bytes beyond it stay under `ahead`, and never more than
 * LX_PREFETCH_MAX ranges. */
static void test_item_ranges(void **state)
{
    (void)state;
    static unsigned char mem[4096];
    lx_tensor t[12];
    lx_plan_item it[6];
    memset(t, 0, sizeof t);
    memset(it, 0, sizeof it);
    for (int i = 0; i < 6; i++) {
        t[2 * i] = (lx_tensor){.data = mem + 100 * i, .nbytes = 100};
        t[2 * i + 1] = (lx_tensor){.data = mem + 1000 + 100 * i, .nbytes = 100};
        it[i] = (lx_plan_item){.aligned = &t[2 * i], .base = &t[2 * i + 1],
                               .action = LX_ACT_LOWRANK};
    }
    it[1].action = LX_ACT_COPY; /* its base is not read */
    const lx_plan_item *items[6] = {&it[0], &it[1], NULL, &it[3], &it[4], &it[5]};
    lx_range r[LX_PREFETCH_MAX];
    /* ahead 250: item 0 (2 ranges), item 1 (1 range, 100 beyond), item 3
     * (2 ranges, 300 beyond), then stop */
    size_t n = lx_prefetch_item_ranges(items, 6, 250, r);
    assert_int_equal(n, 5);
    assert_ptr_equal(r[0].addr, mem);
    assert_ptr_equal(r[1].addr, mem + 1000);
    assert_ptr_equal(r[2].addr, mem + 100);
    assert_ptr_equal(r[3].addr, mem + 300);
    assert_ptr_equal(r[4].addr, mem + 1300);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r[i].len, 100);
    /* ahead 0: the first item only, however large */
    assert_int_equal(lx_prefetch_item_ranges(items, 6, 0, r), 2);
    /* no limit: every range, capped at LX_PREFETCH_MAX */
    assert_int_equal(lx_prefetch_item_ranges(items, 6, UINT64_MAX, r), 9);
    const lx_plan_item *many[20];
    for (int i = 0; i < 20; i++)
        many[i] = &it[0];
    assert_int_equal(lx_prefetch_item_ranges(many, 20, UINT64_MAX, r), LX_PREFETCH_MAX);
    assert_int_equal(lx_prefetch_item_ranges(items, 0, UINT64_MAX, r), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_the_list),
        cmocka_unit_test(test_new_list_and_stop),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_item_ranges),
    };
    int failed = cmocka_run_group_tests(tests, setup, tmpdir_teardown);
    return failed ? failed : skipped ? 77 : 0;
}

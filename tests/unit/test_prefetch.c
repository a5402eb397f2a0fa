/* test_prefetch.c - the prefetcher walks exactly the ranges it is given
 * (its byte count: the main assertion), follows a new list, stops while
 * busy, survives a file truncated under it, maps every page of a range
 * whether it was in the page cache or not, and picks the read-ahead
 * ranges of plan items.  Side checks: that what it read is in the page
 * cache afterwards, read with mincore() after the files were dropped from
 * the cache (posix_fadvise DONTNEED).  The files go to the first of
 * $TMPDIR, /var/tmp and the current directory where the drop works; where
 * it works in none of them (tmpfs everywhere), or a file was not dropped,
 * the residency cases are skipped (cmocka's skip(), listed at the end) and
 * the others still run: the program passes with a note saying what it did
 * not check.  It exits 77 (SKIP) only if the main assertion could not run,
 * never passing in its place. */
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
#include "loxstream/sigbus.h"
#include "tmpdir.h"

static size_t page;
static int can_drop;  /* the page-cache drop works in the temporary directory */
static int skipped;   /* residency cases that could not run */
static int main_ran;  /* the main assertion ran (and passed) */

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
        if (drop_works()) {
            can_drop = 1;
            return 0;
        }
        if (tmpdir_remove() != 0)
            return -1;
    }
    print_message("page cache drop ineffective in $TMPDIR, /var/tmp and .: "
                  "the residency cases will be skipped\n");
    return tmpdir_make(NULL);
}

/* The residency check of the calling case cannot run: report it skipped. */
static void skip_residency(const char *why)
{
    print_message("residency not checked: %s\n", why);
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

/* Two dropped files a and b; the prefetcher given a, then the middle third
 * of b (not page-aligned on purpose), until done.  What it counted, and
 * the pages of each range then in the page cache. */
typedef struct list_run {
    size_t bytes, pages, done;
    int dropped;                   /* both files were out of the cache before */
    size_t ra;                     /* resident pages of a */
    size_t rb, rb_want;            /* of the pages the range of b touches */
    size_t rest, rest_pages;       /* of the pages of b before that range */
} list_run;

static void run_list(list_run *L)
{
    L->bytes = 24u << 20;
    L->pages = L->bytes / page;
    unsigned char *a, *b;
    int fa = make_file("a", L->bytes, &a), fb = make_file("b", L->bytes, &b);
    L->dropped = resident(a, L->bytes) < L->pages / 2 && resident(b, L->bytes) < L->pages / 2;
    lx_prefetch *pf;
    assert_int_equal(lx_prefetch_start(&pf), LX_OK);
    assert_non_null(pf);
    lx_range r[2] = {{a, L->bytes}, {b + L->bytes / 3 + 100, L->bytes / 3}};
    lx_prefetch_set(pf, r, 2);
    lx_prefetch_wait(pf);
    L->done = lx_prefetch_done_bytes(pf);
    L->ra = resident(a, L->bytes);
    size_t first = (L->bytes / 3 + 100) / page, last = (L->bytes / 3 + 100 + L->bytes / 3 - 1) / page;
    L->rb = resident(b + first * page, (last - first + 1) * page);
    L->rb_want = last - first + 1;
    L->rest = resident(b, first * page);
    L->rest_pages = first;
    lx_prefetch_stop(pf);
    munmap(a, L->bytes);
    munmap(b, L->bytes);
    close(fa);
    close(fb);
}

/* the main assertion: exactly the bytes of the list are walked */
static void test_reads_the_list(void **state)
{
    (void)state;
    list_run L;
    run_list(&L);
    assert_int_equal(L.done, L.bytes + L.bytes / 3);
    main_ran = 1;
}

/* ... and they are then in the page cache, and little else */
static void test_list_residency(void **state)
{
    (void)state;
    if (!can_drop)
        skip_residency("reads the list: no page-cache drop here");
    list_run L;
    run_list(&L);
    if (!L.dropped)
        skip_residency("reads the list: the files were not dropped from the cache");
    assert_int_equal(L.ra, L.pages);
    assert_int_equal(L.rb, L.rb_want);
    /* the rest of b was not asked for (readahead may bring a little) */
    assert_true(L.rest < L.rest_pages);
}

/* A big list replaced at once by a small one, then an empty one, then the
 * big one again with stop at once; the resident pages of the small file
 * after its list was done (*dropped: it was out of the cache before). */
static size_t run_new_list_and_stop(int *dropped)
{
    size_t big = 64u << 20, small = 4u << 20;
    unsigned char *a, *b;
    int fa = make_file("big", big, &a), fb = make_file("small", small, &b);
    *dropped = resident(b, small) < small / page / 2;
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
    return got;
}

/* a new list replaces the old one; stop returns while a long list runs */
static void test_new_list_and_stop(void **state)
{
    (void)state;
    int dropped;
    run_new_list_and_stop(&dropped);
    /* NULL is a prefetcher that does nothing */
    lx_range r = {&page, sizeof page};
    lx_prefetch_set(NULL, &r, 1);
    lx_prefetch_wait(NULL);
    assert_int_equal(lx_prefetch_done_bytes(NULL), 0);
    lx_prefetch_stop(NULL);
}

/* ... and the new list's file is then in the page cache */
static void test_new_list_residency(void **state)
{
    (void)state;
    if (!can_drop)
        skip_residency("new list: no page-cache drop here");
    int dropped;
    size_t got = run_new_list_and_stop(&dropped);
    if (!dropped)
        skip_residency("new list: the file was not dropped from the cache");
    assert_int_equal(got, (4u << 20) / page);
}

/* A prefetcher given the one range [a, a + bytes), run until done: it
 * walked exactly those bytes. */
static void prefetch_one(const unsigned char *a, size_t bytes)
{
    lx_prefetch *pf;
    assert_int_equal(lx_prefetch_start(&pf), LX_OK);
    lx_range r = {a, bytes};
    lx_prefetch_set(pf, &r, 1);
    lx_prefetch_wait(pf);
    assert_int_equal(lx_prefetch_done_bytes(pf), bytes);
    lx_prefetch_stop(pf);
}

/* the file shrinks to nothing under the mapping: no signal, no hang */
static void test_truncated_file(void **state)
{
    (void)state;
    size_t bytes = 8u << 20;
    unsigned char *a;
    int fa = make_file("trunc", bytes, &a);
    assert_int_equal(ftruncate(fa, 0), 0);
    prefetch_one(a, bytes);
    munmap(a, bytes);
    close(fa);
}

/* Pages of [p, p + len) mapped in this process's page tables
 * (/proc/self/pagemap, bit 63); -1 if pagemap cannot be read. */
static long mapped(const unsigned char *p, size_t len)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return -1;
    size_t pages = (len + page - 1) / page;
    uint64_t *e = malloc(pages * sizeof *e);
    assert_non_null(e);
    ssize_t want = (ssize_t)(pages * sizeof *e);
    ssize_t got = pread(fd, e, (size_t)want, (off_t)((uintptr_t)p / page * sizeof *e));
    close(fd);
    long n = 0;
    for (size_t i = 0; got == want && i < pages; i++)
        n += (long)(e[i] >> 63);
    free(e);
    return got == want ? n : -1;
}

/* A range already in the page cache (just written) is not populated but
 * read, a byte a page, and one that is not (dropped) is populated and read:
 * either way, with the SIGBUS handler installed, every page is mapped when
 * the list is done, none before. */
static void test_maps_cached_and_dropped(void **state)
{
    (void)state;
    assert_int_equal(lx_sigbus_install(), LX_OK);
    size_t bytes = 20u << 20, pages = bytes / page;
    for (int cached = 1; cached >= 0; cached--) {
        unsigned char *a;
        int fa = make_file(cached ? "warm" : "cold", bytes, &a);
        if (cached) {
            /* back into the cache through read(): nothing mapped */
            unsigned char *buf = malloc(1 << 20);
            assert_non_null(buf);
            for (size_t off = 0; off < bytes; off += 1 << 20)
                assert_int_equal(pread(fa, buf, 1 << 20, (off_t)off), 1 << 20);
            free(buf);
            if (resident(a, bytes) != pages) {
                munmap(a, bytes);
                close(fa);
                skip_residency("mapping: the file did not stay in the page cache");
            }
        }
        long before = mapped(a, bytes);
        if (before < 0) {
            munmap(a, bytes);
            close(fa);
            skip_residency("mapping: /proc/self/pagemap cannot be read");
        }
        assert_int_equal(before, 0);
        prefetch_one(a, bytes);
        assert_int_equal(mapped(a, bytes), (long)pages);
        munmap(a, bytes);
        close(fa);
    }
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
        cmocka_unit_test(test_list_residency),
        cmocka_unit_test(test_new_list_and_stop),
        cmocka_unit_test(test_new_list_residency),
        cmocka_unit_test(test_truncated_file),
        cmocka_unit_test(test_item_ranges),
        /* last: it installs the SIGBUS handler for the process */
        cmocka_unit_test(test_maps_cached_and_dropped),
    };
    int failed = cmocka_run_group_tests(tests, setup, tmpdir_teardown);
    if (failed)
        return failed;
    if (!main_ran) {
        print_message("SKIP: the main assertion (bytes walked) could not run\n");
        return 77;
    }
    if (skipped)
        print_message("ok, with %d residency case%s skipped (the notes above say why)\n", skipped,
                      skipped == 1 ? "" : "s");
    return 0;
}

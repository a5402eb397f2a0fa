/* test_util.c - the base layer's helpers: size/number parsing and
 * formatting (parse.h), paths and file-system primitives (fs.h), the clock
 * (sys.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loxstream/fs.h"
#include "loxstream/parse.h"
#include "loxstream/sys.h"
#include "tmpdir.h"

/* ---- helpers ------------------------------------------------------------- */

/* A path inside the test's temporary directory (static buffer per slot). */
static const char *tmp_path(int slot, const char *name)
{
    static char buf[4][512];
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmpdir_root(), name);
    return buf[slot];
}

static char *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static void write_whole(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* ---- lx_parse_size --------------------------------------------------------- */

static void test_parse_size_accepts(void **state)
{
    static const struct {
        const char *s;
        uint64_t want;
    } ok[] = {
        {"4096", 4096},
        {"0", 0},
        {"512M", 512ull << 20},
        {"1G", 1ull << 30},
        {"1.5GiB", 3ull << 29},
        {"64k", 64ull << 10},
        {"64K", 64ull << 10},
        {"1gb", 1ull << 30},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"2T", 2ull << 40},
        {"0.5k", 512},
        {"1B", 1},
        {"007M", 7ull << 20},
        {"16777215T", 16777215ull << 40},             /* just below 2^64 */
        {"18446744073709549568", 18446744073709549568u}, /* largest double below 2^64 */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 12345;
        if (lx_parse_size(ok[i].s, "--size", &v) != LX_OK)
            fail_msg("'%s' rejected: %s", ok[i].s, lx_errmsg());
        if (v != ok[i].want)
            fail_msg("'%s' parsed as %llu, expected %llu", ok[i].s, (unsigned long long)v,
                     (unsigned long long)ok[i].want);
    }
}

static void test_parse_size_rejects(void **state)
{
    static const char *bad[] = {
        "-1", "", "12X", "1e400", "1e3", "+5", " 5", "\t5", "5 ", "-5G", "0x10", "inf", "nan",
        "1.2.3", ".", "G", "1GG", "1iB", "1Bi", "1GiBB", "1 G", "1,5G",
        "16777216T",                  /* 2^64 */
        "18446744073709551616",       /* 2^64 */
        "99999999999999999999G",
        "1000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 12345;
        if (lx_parse_size(bad[i], "--max-memory", &v) != LX_EUSAGE)
            fail_msg("'%s' was not rejected", bad[i]);
        assert_int_equal(v, 12345);   /* untouched */
        assert_non_null(strstr(lx_errmsg(), "--max-memory"));
    }
    uint64_t v;
    assert_int_equal(lx_parse_size(NULL, "--max-memory", &v), LX_EUSAGE);
}

/* ---- lx_parse_u64 ------------------------------------------------------------ */

static void test_parse_u64(void **state)
{
    uint64_t v = 0;
    assert_int_equal(lx_parse_u64("0", "--n", 0, 10, &v), LX_OK);
    assert_int_equal(v, 0);
    assert_int_equal(lx_parse_u64("10", "--n", 0, 10, &v), LX_OK);   /* bounds inclusive */
    assert_int_equal(v, 10);
    assert_int_equal(lx_parse_u64("2", "--n", 2, 10, &v), LX_OK);
    assert_int_equal(v, 2);
    assert_int_equal(lx_parse_u64("007", "--n", 0, 10, &v), LX_OK);
    assert_int_equal(v, 7);
    assert_int_equal(lx_parse_u64("18446744073709551615", "--seed", 0, UINT64_MAX, &v), LX_OK);
    assert_true(v == UINT64_MAX);

    v = 99;
    assert_int_equal(lx_parse_u64("11", "--rank", 0, 10, &v), LX_EUSAGE);
    assert_non_null(strstr(lx_errmsg(), "--rank"));
    assert_non_null(strstr(lx_errmsg(), "out of range"));
    assert_int_equal(lx_parse_u64("1", "--rank", 2, 10, &v), LX_EUSAGE);
    assert_int_equal(v, 99);

    static const char *bad[] = {
        "", "abc", "12a", "-1", "+1", " 1", "\t1", "\t-1", "\n-1", "1 ", "0x10", "1.0", "1e3",
        "18446744073709551616", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 99;
        if (lx_parse_u64(bad[i], "--seed", 0, UINT64_MAX, &v) != LX_EUSAGE)
            fail_msg("'%s' was not rejected (parsed as %llu)", bad[i], (unsigned long long)v);
        assert_int_equal(v, 99);
        assert_non_null(strstr(lx_errmsg(), "--seed"));
    }
    assert_int_equal(lx_parse_u64(NULL, "--seed", 0, 1, &v), LX_EUSAGE);
}

/* ---- lx_parse_double ------------------------------------------------------------ */

static void test_parse_double(void **state)
{
    double v = 0;
    assert_int_equal(lx_parse_double("0.5", "--alpha", 0, 1, &v), LX_OK);
    assert_true(v == 0.5);
    assert_int_equal(lx_parse_double("-1e-3", "--alpha", -1, 1, &v), LX_OK);
    assert_true(v == -1e-3);
    assert_int_equal(lx_parse_double("1e6", "--alpha", -1e6, 1e6, &v), LX_OK);   /* inclusive */
    assert_true(v == 1e6);
    assert_int_equal(lx_parse_double("-1e6", "--alpha", -1e6, 1e6, &v), LX_OK);
    assert_true(v == -1e6);
    assert_int_equal(lx_parse_double("3", "--alpha", 0, 5, &v), LX_OK);
    assert_true(v == 3.0);

    v = 42;
    assert_int_equal(lx_parse_double("1.0000001", "--tol", 1e-12, 1, &v), LX_EUSAGE);
    assert_non_null(strstr(lx_errmsg(), "--tol"));
    assert_non_null(strstr(lx_errmsg(), "out of range"));
    assert_int_equal(lx_parse_double("1e-13", "--tol", 1e-12, 1, &v), LX_EUSAGE);
    assert_int_equal(lx_parse_double("-2", "--alpha", -1, 1, &v), LX_EUSAGE);
    assert_true(v == 42);

    static const char *bad[] = {
        "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "", " 1", "\t1", "1x", "1 ", "abc",
        "1e400", "-1e400", "1..2", "e5",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 42;
        if (lx_parse_double(bad[i], "--alpha", -1e300, 1e300, &v) != LX_EUSAGE)
            fail_msg("'%s' was not rejected (parsed as %g)", bad[i], v);
        assert_true(v == 42);
        assert_non_null(strstr(lx_errmsg(), "--alpha"));
    }
    assert_int_equal(lx_parse_double(NULL, "--alpha", 0, 1, &v), LX_EUSAGE);
}

/* ---- lx_format_size ------------------------------------------------------------- */

static void test_format_size(void **state)
{
    static const struct {
        uint64_t bytes;
        const char *want;
    } cases[] = {
        {0, "0 B"},
        {12, "12 B"},
        {1023, "1023 B"},
        {1024, "1.00 KiB"},
        {1536, "1.50 KiB"},
        {312ull << 20, "312.00 MiB"},
        {3ull << 29, "1.50 GiB"},
        {(1ull << 20) - 1, "1.00 MiB"},          /* not "1024.00 KiB" */
        {(1ull << 20) - 6, "1023.99 KiB"},
        {5ull << 40, "5.00 TiB"},
        {1ull << 50, "1.00 PiB"},
        {UINT64_MAX, "16384.00 PiB"},            /* no unit beyond PiB */
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *r = lx_format_size(cases[i].bytes, buf, sizeof buf);
        assert_ptr_equal(r, buf);
        assert_string_equal(buf, cases[i].want);
    }
    /* a short buffer is truncated, not overrun */
    char small[6];
    memset(small, 'x', sizeof small);
    lx_format_size(3ull << 29, small, 5);
    assert_string_equal(small, "1.50");
    assert_int_equal(small[5], 'x');
}

/* ---- lx_path_join ---------------------------------------------------------------- */

static void test_path_join(void **state)
{
    static const struct {
        const char *dir, *name, *want;
    } cases[] = {
        {"a", "b", "a/b"},
        {"a/", "b", "a/b"},
        {"/", "x", "/x"},
        {"", "x", "x"},
        {"dir/sub", "model.safetensors.index.json", "dir/sub/model.safetensors.index.json"},
        {"/abs/path", "f", "/abs/path/f"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = lx_path_join(cases[i].dir, cases[i].name);
        assert_non_null(p);
        assert_string_equal(p, cases[i].want);
        free(p);
    }
}

/* ---- files ------------------------------------------------------------------------- */

static void test_write_all(void **state)
{
    const char *path = tmp_path(0, "write_all");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char data[100000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7 + 3);
    assert_int_equal(lx_write_all(fd, data, sizeof data, path), LX_OK);
    assert_int_equal(lx_write_all(fd, data, 0, path), LX_OK);
    close(fd);
    size_t len;
    char *back = read_whole(path, &len);
    assert_non_null(back);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(back, data, sizeof data);
    free(back);

    /* a failing write names the path */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lx_write_all(fd, data, 10, "the-file"), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "the-file"));
    close(fd);
}

static void test_write_file_atomic(void **state)
{
    const char *path = tmp_path(0, "atomic.json");
    const char *tmp = tmp_path(1, "atomic.json.tmp");
    const char *first = "{\"a\": 1, \"longer\": \"content\"}\n";
    const char *second = "{}\n";
    size_t len;

    assert_int_equal(lx_write_file_atomic(path, first, strlen(first)), LX_OK);
    char *back = read_whole(path, &len);
    assert_non_null(back);
    assert_int_equal(len, strlen(first));
    assert_memory_equal(back, first, len);
    free(back);
    assert_false(exists(tmp));

    /* replacing with shorter content leaves nothing of the old file */
    assert_int_equal(lx_write_file_atomic(path, second, strlen(second)), LX_OK);
    back = read_whole(path, &len);
    assert_non_null(back);
    assert_int_equal(len, strlen(second));
    assert_memory_equal(back, second, len);
    free(back);
    assert_false(exists(tmp));

    /* an empty file */
    assert_int_equal(lx_write_file_atomic(path, "", 0), LX_OK);
    back = read_whole(path, &len);
    assert_non_null(back);
    assert_int_equal(len, 0);
    free(back);

    /* a directory that does not exist: an error naming the file, no leftovers */
    const char *bad = tmp_path(2, "no-such-dir/x.json");
    assert_int_equal(lx_write_file_atomic(bad, first, strlen(first)), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "no-such-dir/x.json"));
    assert_false(exists(bad));
    assert_false(exists(tmp_path(3, "no-such-dir")));
}

static void test_copy_file(void **state)
{
    const char *src = tmp_path(0, "copy-src");
    const char *dst = tmp_path(1, "copy-dst");
    /* larger than any sensible copy buffer and not a multiple of one */
    size_t n = 200003;
    char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)((i * 2654435761u) >> 13);
    write_whole(src, data, n);

    /* dst already exists and is longer: it must be replaced, not overlaid */
    char *junk = calloc(1, n + 5000);
    assert_non_null(junk);
    write_whole(dst, junk, n + 5000);
    free(junk);

    assert_int_equal(lx_copy_file(src, dst), LX_OK);
    size_t len;
    char *back = read_whole(dst, &len);
    assert_non_null(back);
    assert_int_equal(len, n);
    assert_memory_equal(back, data, n);
    free(back);

    /* an empty source gives an empty copy */
    const char *empty = tmp_path(2, "copy-empty");
    write_whole(empty, "", 0);
    assert_int_equal(lx_copy_file(empty, dst), LX_OK);
    back = read_whole(dst, &len);
    assert_non_null(back);
    assert_int_equal(len, 0);
    free(back);

    /* errors name the file */
    assert_int_equal(lx_copy_file(tmp_path(2, "missing"), dst), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "missing"));
    assert_int_equal(lx_copy_file(src, tmp_path(3, "nodir/dst")), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "nodir/dst"));
    free(data);
}

static void test_mkdir_p(void **state)
{
    const char *deep = tmp_path(0, "m/a/b/c");
    assert_int_equal(lx_mkdir_p(deep), LX_OK);
    assert_true(is_dir(tmp_path(1, "m/a")));
    assert_true(is_dir(tmp_path(1, "m/a/b")));
    assert_true(is_dir(deep));
    /* again: existing is fine */
    assert_int_equal(lx_mkdir_p(deep), LX_OK);
    assert_int_equal(lx_mkdir_p(tmp_path(1, "m/a")), LX_OK);
    /* trailing and doubled slashes */
    assert_int_equal(lx_mkdir_p(tmp_path(1, "m/x//y/")), LX_OK);
    assert_true(is_dir(tmp_path(1, "m/x/y")));

    /* a file in the way: at the end, and in the middle */
    const char *file = tmp_path(1, "m/file");
    write_whole(file, "x", 1);
    assert_int_equal(lx_mkdir_p(file), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "m/file"));
    assert_int_equal(lx_mkdir_p(tmp_path(2, "m/file/sub")), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "m/file"));
    assert_false(is_dir(file));

    assert_int_equal(lx_mkdir_p(""), LX_EFAIL);
}

static void test_hex64(void **state)
{
    char buf[LX_HEX64];
    uint64_t v = 0;
    assert_string_equal(lx_hex64(0x00ab00cd00ef0012ull, buf), "00ab00cd00ef0012");
    assert_int_equal(lx_parse_hex64(buf, 16, &v), LX_OK);
    assert_true(v == 0x00ab00cd00ef0012ull);
    assert_int_equal(lx_parse_hex64("ffffffffffffffff", 16, &v), LX_OK);
    assert_true(v == UINT64_MAX);
    /* not 16 digits, upper case, a sign or a blank: LX_EINPUT, v unchanged */
    const char *bad[] = {"00ab00cd00ef001", "00ab00cd00ef00123", "00AB00CD00EF0012", "+0ab00cd00ef0012",
                         " 0ab00cd00ef0012", "00ab00cd00ef001g"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 7;
        assert_int_equal(lx_parse_hex64(bad[i], strlen(bad[i]), &v), LX_EINPUT);
        assert_true(v == 7);
        assert_non_null(strstr(lx_errmsg(), "hex digits"));
    }
}

static void test_sync_and_unlink(void **state)
{
    assert_int_equal(lx_sync_dir(tmpdir_root()), LX_OK);
    const char *missing = tmp_path(0, "no-such-dir");
    assert_int_equal(lx_sync_dir(missing), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "no-such-dir"));
    const char *file = tmp_path(1, "to-remove");
    assert_int_equal(lx_write_file_atomic(file, "x", 1), LX_OK);
    assert_int_equal(lx_sync_parent(file), LX_OK);
    assert_int_equal(lx_unlink_if(file), LX_OK);
    assert_int_equal(access(file, F_OK), -1);
    assert_int_equal(lx_unlink_if(file), LX_OK); /* nothing to remove: fine */
    /* a directory is not unlinked: an error naming it */
    const char *dir = tmp_path(2, "a-dir");
    assert_int_equal(lx_mkdir_p(dir), LX_OK);
    assert_int_equal(lx_unlink_if(dir), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "a-dir: cannot remove"));
}

static void test_now(void **state)
{
    double t0 = lx_now();
    struct timespec ts = {0, 20 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    double t1 = lx_now();
    assert_true(t1 - t0 >= 0.019);
    assert_true(t1 - t0 < 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size_accepts),
        cmocka_unit_test(test_parse_size_rejects),
        cmocka_unit_test(test_parse_u64),
        cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_format_size),
        cmocka_unit_test(test_path_join),
        cmocka_unit_test(test_write_all),
        cmocka_unit_test(test_write_file_atomic),
        cmocka_unit_test(test_copy_file),
        cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_hex64),
        cmocka_unit_test(test_sync_and_unlink),
        cmocka_unit_test(test_now),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

/* test_journal.c - the durable state of an apply run (journal.h): the
 * journal's line format, loading a journal torn by a kill, forged and
 * damaged lines, records the journal cannot judge (unknown tensors,
 * duplicates), foreign journals, and the identity's round trip and
 * comparison.
 *
 * Expected files are written here by hand: a line is its fields joined by
 * tabs, a tab, and the XXH3-64 of everything before it in 16 lower-case hex
 * digits (computed with libxxhash directly, not with the code under test).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "loxstream/journal.h"
#include "tmpdir.h"

#define ID 0x0123456789abcdefull /* an identity hash */

/* ---- files by hand ---------------------------------------------------------- */

typedef struct text {
    char s[8192];
    size_t len;
} text;

/* Append one journal line: fields, then a tab and the XXH3 of all before. */
static void put_line(text *t, const char *fields)
{
    char body[2048];
    int n = snprintf(body, sizeof body, "%s\t", fields);
    assert_true(n > 0 && (size_t)n < sizeof body);
    n = snprintf(t->s + t->len, sizeof t->s - t->len, "%s%016" PRIx64 "\n", body,
                 (uint64_t)XXH3_64bits(body, strlen(body)));
    assert_true(n > 0 && (size_t)n < sizeof t->s - t->len);
    t->len += (size_t)n;
}

static void put_header(text *t, uint64_t identity)
{
    char h[128];
    snprintf(h, sizeof h, "loxstream-journal\t1\tpart 1/1\t%016" PRIx64, identity);
    put_line(t, h);
}

static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

static void expect_record(const lx_journal_record *r, const char *tensor, const char *shard,
                          uint64_t offset, uint64_t length, int has_base)
{
    assert_string_equal(r->tensor, tensor);
    assert_string_equal(r->shard, shard);
    assert_true(r->offset == offset);
    assert_true(r->length == length);
    assert_int_equal(r->has_base, has_base);
}

/* Two valid record lines, and a check that a journal loaded both. */
#define REC_A "T\tlayer.0.w\tmodel.safetensors\t80\t24\t1111111111111111\t2222222222222222\t3333333333333333"
#define REC_B "T\tlayer.1.b\tmodel.safetensors\t104\t8\taaaaaaaaaaaaaaaa\taaaaaaaaaaaaaaaa\t-"

static void expect_a_and_b(const lx_journal *j)
{
    assert_int_equal(j->n, 2);
    expect_record(&j->records[0], "layer.0.w", "model.safetensors", 80, 24, 1);
    expect_record(&j->records[1], "layer.1.b", "model.safetensors", 104, 8, 0);
}

/* ---- the format ---------------------------------------------------------------- */

/* What lx_journal_open and lx_journal_append write, byte for byte, and
 * what lx_journal_load reads back from it. */
static void test_format(void **state)
{
    (void)state;
    const char *path = tmpdir_file("format");
    lx_journal j;
    assert_int_equal(lx_journal_open(&j, path, 2, 3, ID), LX_OK);
    assert_int_equal(j.n, 0);
    lx_journal_record a = {.tensor = "layer.0.w", .shard = "model.safetensors", .offset = 80,
                           .length = 24, .out_xxh3 = 0x1111111111111111ull,
                           .aligned_xxh3 = 0x2222222222222222ull, .has_base = 1,
                           .base_xxh3 = 0x3333333333333333ull};
    lx_journal_record b = {.tensor = "layer.1.b", .shard = "model.safetensors", .offset = 104,
                           .length = 8, .out_xxh3 = 0xaaaaaaaaaaaaaaaaull,
                           .aligned_xxh3 = 0xaaaaaaaaaaaaaaaaull, .has_base = 0,
                           .base_xxh3 = 0x4444444444444444ull /* not written */};
    assert_int_equal(lx_journal_append(&j, &a), LX_OK);
    assert_int_equal(lx_journal_append(&j, &b), LX_OK);
    lx_journal_close(&j);

    text want = {.len = 0};
    put_line(&want, "loxstream-journal\t1\tpart 2/3\t0123456789abcdef");
    put_line(&want, REC_A);
    put_line(&want, REC_B);
    size_t len;
    char *got = read_file(path, &len);
    assert_int_equal(len, want.len);
    assert_memory_equal(got, want.s, len);
    free(got);

    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 2);
    assert_int_equal(j.damaged, 0);
    assert_int_equal(j.torn, 0);
    assert_int_equal(j.foreign, 0);
    assert_int_equal(j.fd, -1);
    expect_record(&j.records[0], "layer.0.w", "model.safetensors", 80, 24, 1);
    assert_true(j.records[0].out_xxh3 == 0x1111111111111111ull);
    assert_true(j.records[0].aligned_xxh3 == 0x2222222222222222ull);
    assert_true(j.records[0].base_xxh3 == 0x3333333333333333ull);
    expect_record(&j.records[1], "layer.1.b", "model.safetensors", 104, 8, 0);
    assert_true(j.records[1].out_xxh3 == 0xaaaaaaaaaaaaaaaaull);
    lx_journal_close(&j);

    /* a missing file: no records, no error */
    assert_int_equal(lx_journal_load(&j, tmpdir_file("no-such-journal"), ID), LX_OK);
    assert_int_equal(j.n, 0);
    assert_int_equal(j.torn + j.foreign + (int)j.damaged, 0);
    lx_journal_close(&j);
}

/* Names with bytes a line cannot hold go out escaped and come back whole. */
static void test_escaped_names(void **state)
{
    (void)state;
    const char *path = tmpdir_file("escaped");
    const char *names[] = {"tab\there", "line\nbreak", "back\\slash", "cr\r", "\x01\x7f\xff.w"};
    lx_journal j;
    assert_int_equal(lx_journal_open(&j, path, 1, 1, ID), LX_OK);
    for (size_t i = 0; i < 5; i++) {
        lx_journal_record r = {.tensor = (char *)names[i], .shard = (char *)names[4 - i],
                               .offset = i, .length = 1};
        assert_int_equal(lx_journal_append(&j, &r), LX_OK);
    }
    lx_journal_close(&j);
    size_t len;
    char *got = read_file(path, &len);
    assert_non_null(strstr(got, "\nT\ttab\\there\t\\x01\\x7f\xff.w\t0\t1\t"));
    assert_non_null(strstr(got, "\nT\tline\\nbreak\tcr\\r\t1\t1\t"));
    free(got);
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 5);
    assert_int_equal(j.damaged, 0);
    for (size_t i = 0; i < 5; i++)
        expect_record(&j.records[i], names[i], names[4 - i], i, 1, 0);
    lx_journal_close(&j);
}

/* ---- a kill mid-append ----------------------------------------------------------- */

static void test_torn_last_line(void **state)
{
    (void)state;
    const char *path = tmpdir_file("torn");
    text t = {.len = 0};
    put_header(&t, ID);
    put_line(&t, REC_A);
    put_line(&t, REC_B);
    size_t whole = t.len;
    /* the third record, cut anywhere short of its line break */
    text third = {.len = 0};
    put_line(&third, "T\tlayer.2.w\tmodel.safetensors\t112\t4\t1111111111111111\t2222222222222222\t-");
    for (size_t cut = 1; cut < third.len; cut += 7) {
        text f = t;
        memcpy(f.s + f.len, third.s, cut);
        f.len += cut;
        write_file(path, f.s, f.len);
        lx_journal j;
        assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
        assert_int_equal(j.torn, 1);
        assert_int_equal(j.damaged, 0);
        assert_int_equal(j.foreign, 0);
        expect_a_and_b(&j);
        lx_journal_close(&j);
    }
    /* opening cuts the torn bytes, so the next record gets a line of its own */
    lx_journal j;
    assert_int_equal(lx_journal_open(&j, path, 1, 1, ID), LX_OK);
    assert_int_equal(j.n, 2);
    assert_int_equal(file_size(path), whole);
    lx_journal_record c = {.tensor = "layer.2.w", .shard = "model.safetensors", .offset = 112,
                           .length = 4, .out_xxh3 = 0x1111111111111111ull,
                           .aligned_xxh3 = 0x2222222222222222ull};
    assert_int_equal(lx_journal_append(&j, &c), LX_OK);
    lx_journal_close(&j);
    size_t len;
    char *got = read_file(path, &len);
    assert_int_equal(len, whole + third.len);
    assert_memory_equal(got, t.s, whole);
    assert_memory_equal(got + whole, third.s, third.len);
    free(got);
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 3);
    assert_int_equal(j.torn, 0);
    expect_record(&j.records[2], "layer.2.w", "model.safetensors", 112, 4, 0);
    lx_journal_close(&j);

    /* a header torn before its line break: nothing kept; open starts afresh */
    write_file(path, t.s, 20);
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 0);
    assert_int_equal(j.torn, 1);
    lx_journal_close(&j);
    assert_int_equal(lx_journal_open(&j, path, 1, 1, ID), LX_OK);
    lx_journal_close(&j);
    text fresh = {.len = 0};
    put_header(&fresh, ID);
    got = read_file(path, &len);
    assert_int_equal(len, fresh.len);
    assert_memory_equal(got, fresh.s, len);
    free(got);
}

/* ---- forged and damaged lines ----------------------------------------------------- */

/* Each line carries a correct checksum (anyone can compute one), so only
 * the record's own checks stand between it and the run.  A byte range
 * must lie within what a file can hold: offset + length <= INT64_MAX
 * (off_t), without overflow. */
static const char *const rejected[] = {
    /* byte ranges no file holds */
    "T\tw\ts\t18446744073709551615\t0\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t18446744073709551606\t10\t1111111111111111\t2222222222222222\t-", /* sum 2^64 */
    "T\tw\ts\t18446744073709551615\t18446744073709551615\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t10\t18446744073709551615\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t9223372036854775808\t1\t1111111111111111\t2222222222222222\t-",  /* 2^63 */
    "T\tw\ts\t9223372036854775806\t2\t1111111111111111\t2222222222222222\t-",  /* ends 2^63 */
    "T\tw\ts\t0\t9223372036854775808\t1111111111111111\t2222222222222222\t-",
    /* numbers that are not plain decimal u64 */
    "T\tw\ts\t18446744073709551616\t1\t1111111111111111\t2222222222222222\t-",  /* 2^64 */
    "T\tw\ts\t000000000000000000080\t1\t1111111111111111\t2222222222222222\t-", /* 21 digits */
    "T\tw\ts\t-1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t+1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t 1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t0x10\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\ts\t1\t1e3\t1111111111111111\t2222222222222222\t-",
    /* hashes: 16 lower-case hex digits, or "-" for the base */
    "T\tw\ts\t1\t1\t111111111111111\t2222222222222222\t-",
    "T\tw\ts\t1\t1\t1111111111111111\t222222222222222G\t-",
    "T\tw\ts\t1\t1\t1111111111111111\tABCDEFABCDEFABCD\t-",
    "T\tw\ts\t1\t1\t1111111111111111\t2222222222222222\t--",
    "T\tw\ts\t1\t1\t1111111111111111\t2222222222222222\t",
    /* fields */
    "T\tw\ts\t1\t1\t1111111111111111\t2222222222222222",
    "T\tw\ts\t1\t1\t1111111111111111\t2222222222222222\t-\textra",
    "X\tw\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "TT\tw\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    /* names: not empty, valid escapes only, no NUL */
    "T\t\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\t\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\\q\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\\\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\\x0\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\\x00\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
    "T\tw\\xAB\ts\t1\t1\t1111111111111111\t2222222222222222\t-",
};

static void test_forged_lines(void **state)
{
    (void)state;
    const char *path = tmpdir_file("forged");
    size_t nrej = sizeof rejected / sizeof *rejected;
    for (size_t i = 0; i < nrej; i++) {
        text t = {.len = 0};
        put_header(&t, ID);
        put_line(&t, REC_A);
        put_line(&t, rejected[i]);
        put_line(&t, REC_B);
        write_file(path, t.s, t.len);
        lx_journal j;
        assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
        if (j.n != 2 || j.damaged != 1)
            fail_msg("line %zu accepted (%zu records, %zu damaged): %s", i, j.n, j.damaged,
                     rejected[i]);
        expect_a_and_b(&j);
        assert_int_equal(j.torn, 0);
        lx_journal_close(&j);
    }

    /* the largest ranges a file can hold are kept */
    text t = {.len = 0};
    put_header(&t, ID);
    put_line(&t, "T\tw\ts\t9223372036854775806\t1\t1111111111111111\t2222222222222222\t-");
    put_line(&t, "T\tw\ts\t0\t9223372036854775807\t1111111111111111\t2222222222222222\t-");
    put_line(&t, "T\tw\ts\t9223372036854775807\t0\t1111111111111111\t2222222222222222\t-");
    write_file(path, t.s, t.len);
    lx_journal j;
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 3);
    assert_int_equal(j.damaged, 0);
    expect_record(&j.records[0], "w", "s", 9223372036854775806ull, 1, 0);
    expect_record(&j.records[1], "w", "s", 0, 9223372036854775807ull, 0);
    expect_record(&j.records[2], "w", "s", 9223372036854775807ull, 0, 0);
    lx_journal_close(&j);
}

/* A flipped byte, a wrong checksum, a line without one, an empty line:
 * each is one damaged record; the records around it are kept. */
static void test_damaged_lines(void **state)
{
    (void)state;
    const char *path = tmpdir_file("damaged");
    text t = {.len = 0};
    put_header(&t, ID);
    put_line(&t, REC_A);
    size_t at = t.len;
    put_line(&t, REC_B);
    t.s[at + 12] ^= 0x01;                              /* a flipped byte */
    put_line(&t, REC_B);
    t.s[t.len - 2] = t.s[t.len - 2] == '0' ? '1' : '0'; /* a checksum digit */
    memcpy(t.s + t.len, REC_B "\n\n", strlen(REC_B) + 2); /* no checksum; empty */
    t.len += strlen(REC_B) + 2;
    put_line(&t, REC_B);
    write_file(path, t.s, t.len);
    lx_journal j;
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.damaged, 4);
    expect_a_and_b(&j);
    lx_journal_close(&j);
}

/* ---- records the journal cannot judge ---------------------------------------------- */

/* The journal knows no checkpoint: a well-formed record of a tensor the
 * run does not have is loaded like any other (apply and verify ignore
 * it), and so is a second record of one tensor, in file order (the last
 * one wins for the callers). */
static void test_unknown_and_duplicate(void **state)
{
    (void)state;
    const char *path = tmpdir_file("dup");
    text t = {.len = 0};
    put_header(&t, ID);
    put_line(&t, REC_A);
    put_line(&t, "T\tno.such.tensor\tno-such-shard.safetensors\t0\t4\t1111111111111111\t"
                 "2222222222222222\t-");
    put_line(&t, "T\tlayer.0.w\tmodel.safetensors\t80\t24\t5555555555555555\t2222222222222222\t"
                 "3333333333333333");
    write_file(path, t.s, t.len);
    lx_journal j;
    assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
    assert_int_equal(j.n, 3);
    assert_int_equal(j.damaged, 0);
    expect_record(&j.records[0], "layer.0.w", "model.safetensors", 80, 24, 1);
    assert_true(j.records[0].out_xxh3 == 0x1111111111111111ull);
    expect_record(&j.records[1], "no.such.tensor", "no-such-shard.safetensors", 0, 4, 0);
    expect_record(&j.records[2], "layer.0.w", "model.safetensors", 80, 24, 1);
    assert_true(j.records[2].out_xxh3 == 0x5555555555555555ull);
    lx_journal_close(&j);
}

/* A header of another identity, a damaged header or none at all: no
 * records, however good they look; opening starts the file afresh. */
static void test_foreign(void **state)
{
    (void)state;
    const char *path = tmpdir_file("foreign");
    for (int kind = 0; kind < 4; kind++) {
        text t = {.len = 0};
        if (kind == 0)
            put_header(&t, ID ^ 1);
        else if (kind == 1)
            put_line(&t, "loxstream-journal\t2\tpart 1/1\t0123456789abcdef");
        else if (kind == 2) {
            put_header(&t, ID);
            t.s[5] = 'X';
        }
        put_line(&t, REC_A);
        write_file(path, t.s, t.len);
        lx_journal j;
        assert_int_equal(lx_journal_load(&j, path, ID), LX_OK);
        assert_int_equal(j.foreign, 1);
        assert_int_equal(j.n, 0);
        lx_journal_close(&j);
        assert_int_equal(lx_journal_open(&j, path, 1, 1, ID), LX_OK);
        assert_int_equal(j.n, 0);
        lx_journal_close(&j);
        text fresh = {.len = 0};
        put_header(&fresh, ID);
        size_t len;
        char *got = read_file(path, &len);
        assert_int_equal(len, fresh.len);
        assert_memory_equal(got, fresh.s, len);
        free(got);
    }
}

/* ---- identity ---------------------------------------------------------------------- */

static void add(lx_identity *id, const char *k, const char *v)
{
    assert_int_equal(lx_identity_add(id, k, v), LX_OK);
}

static void sample_identity(lx_identity *id)
{
    lx_identity_init(id);
    add(id, "version", "0.1.0");
    add(id, "option rank", "6");
    add(id, "option alpha", "1.25");
    add(id, "input aligned/model.safetensors", "size 123 header 00000000000000ff");
    add(id, "output model.safetensors", "tensors 3");
}

static void test_identity_round_trip(void **state)
{
    (void)state;
    lx_identity id, back;
    sample_identity(&id);
    assert_int_equal(lx_identity_write(&id, tmpdir_root()), LX_OK);

    /* the file, by hand; no temporary file left behind */
    const char *want = "loxstream-identity 1\n"
                       "version\t0.1.0\n"
                       "option rank\t6\n"
                       "option alpha\t1.25\n"
                       "input aligned/model.safetensors\tsize 123 header 00000000000000ff\n"
                       "output model.safetensors\ttensors 3\n";
    size_t len;
    char *got = read_file(tmpdir_file(LX_IDENTITY_PATH), &len);
    assert_string_equal(got, want);
    free(got);
    assert_int_equal(access(tmpdir_file(LX_IDENTITY_PATH ".tmp"), F_OK), -1);

    /* read back: every entry, in order */
    int exists = 0;
    assert_int_equal(lx_identity_read(tmpdir_root(), &back, &exists), LX_OK);
    assert_int_equal(exists, 1);
    assert_int_equal(back.n, id.n);
    for (size_t i = 0; i < id.n; i++) {
        assert_string_equal(back.keys[i], id.keys[i]);
        assert_string_equal(back.values[i], id.values[i]);
    }
    assert_string_equal(lx_identity_get(&back, "option alpha"), "1.25");
    assert_null(lx_identity_get(&back, "option seed"));
    assert_int_equal(lx_identity_compare(&back, &id, "ctx"), LX_OK);

    /* the hash: the compared entries in key order, "key\tvalue\n" each */
    const char *hashed = "input aligned/model.safetensors\tsize 123 header 00000000000000ff\n"
                         "option alpha\t1.25\n"
                         "option rank\t6\n"
                         "version\t0.1.0\n";
    assert_true(lx_identity_hash(&back) == XXH3_64bits(hashed, strlen(hashed)));
    assert_true(lx_identity_hash(&back) == lx_identity_hash(&id));
    lx_identity_free(&back);

    /* a changed option is named with both values, and changes the hash */
    lx_identity now;
    sample_identity(&now);
    free(now.values[1]);
    now.values[1] = strdup("8");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "ctx: rank: journal 6, now 8");
    assert_true(lx_identity_hash(&now) != lx_identity_hash(&id));
    lx_identity_free(&now);

    /* an input: size, then header; a new and a vanished one */
    sample_identity(&now);
    free(now.values[3]);
    now.values[3] = strdup("size 124 header 00000000000000ff");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "ctx: input aligned/model.safetensors: size changed "
                                     "(journal 123 bytes, now 124)");
    free(now.values[3]);
    now.values[3] = strdup("size 123 header 00000000000000fe");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "ctx: input aligned/model.safetensors: header checksum "
                                     "changed");
    free(now.keys[3]);
    now.keys[3] = strdup("input aligned/other.safetensors");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "ctx: input aligned/model.safetensors: in the journal, no "
                                     "longer among the inputs; input aligned/other.safetensors: "
                                     "a new input shard, not in the journal");
    lx_identity_free(&now);

    /* a missing option; an output entry is not compared, nor hashed */
    sample_identity(&now);
    add(&now, "option seed", "3");
    free(now.values[4]);
    now.values[4] = strdup("tensors 4");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_EOUTPUT);
    assert_string_equal(lx_errmsg(), "ctx: seed: journal (none), now 3");
    lx_identity_free(&now);
    sample_identity(&now);
    free(now.values[4]);
    now.values[4] = strdup("tensors 4");
    assert_int_equal(lx_identity_compare(&id, &now, "ctx"), LX_OK);
    assert_true(lx_identity_hash(&now) == lx_identity_hash(&id));
    lx_identity_free(&now);
    lx_identity_free(&id);
}

static void test_identity_rejects(void **state)
{
    (void)state;
    lx_identity id;
    lx_identity_init(&id);
    assert_int_equal(lx_identity_add(&id, "option\tx", "1"), LX_EFAIL);
    assert_int_equal(lx_identity_add(&id, "option x", "1\n2"), LX_EFAIL);
    assert_int_equal(lx_identity_add(&id, "", "1"), LX_EFAIL);
    assert_int_equal(id.n, 0);
    lx_identity_free(&id);

    /* absent: no error, exists = 0 */
    int exists = 1;
    assert_int_equal(mkdir(tmpdir_file("empty"), 0700), 0);
    assert_int_equal(lx_identity_read(tmpdir_file("empty"), &id, &exists), LX_OK);
    assert_int_equal(exists, 0);
    assert_int_equal(id.n, 0);
    lx_identity_free(&id);

    const char *bad[] = {
        "loxstream-identity 2\nversion\t0.1.0\n",   /* another format */
        "loxstream-identity 1\nversion\t0.1.0",     /* no final line break */
        "loxstream-identity 1\nversion 0.1.0\n",    /* no tab */
        "loxstream-identity 1\nversion\t0.1\t0\n",  /* two */
        "",
    };
    assert_int_equal(mkdir(tmpdir_file("bad"), 0700), 0);
    assert_int_equal(mkdir(tmpdir_file("bad/" LX_STATE_DIR), 0700), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_file(tmpdir_file("bad/" LX_IDENTITY_PATH), bad[i], strlen(bad[i]));
        if (lx_identity_read(tmpdir_file("bad"), &id, &exists) != LX_EOUTPUT)
            fail_msg("identity file %zu accepted", i);
        assert_int_equal(id.n, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_escaped_names),
        cmocka_unit_test(test_torn_last_line),
        cmocka_unit_test(test_forged_lines),
        cmocka_unit_test(test_damaged_lines),
        cmocka_unit_test(test_unknown_and_duplicate),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_identity_round_trip),
        cmocka_unit_test(test_identity_rejects),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

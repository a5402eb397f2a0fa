/* test_st_write.c - the safetensors writer (lx_st_layout_build, lx_st_out_*):
 * exact header bytes, padding, offsets, metadata first, round trips through
 * the parser, reuse checks, bounds, I/O errors, and the bytes of a file
 * written by the reference Python writer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/safetensors.h"
#include "tmpdir.h"

static char *tmp_path(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir_root(), name);
    return buf;
}

static lx_st_entry entry(const char *name, lx_dtype dt, int ndim, uint64_t d0, uint64_t d1)
{
    lx_st_entry e = {.name = name, .dtype = dt, .ndim = ndim};
    e.shape[0] = d0;
    e.shape[1] = d1;
    return e;
}

static uint64_t le64(const char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

/* The JSON part of a built header, without its padding (malloc'd). */
static char *header_json(const lx_st_layout *L)
{
    uint64_t n = le64(L->header);
    assert_int_equal(n + 8, L->header_size);
    size_t len = (size_t)n;
    while (len > 0 && L->header[8 + len - 1] == ' ')
        len--;
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, L->header + 8, len);
    s[len] = '\0';
    return s;
}

static unsigned char *read_whole(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len ? (size_t)len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return b;
}

/* ---- layout -------------------------------------------------------------- */

static void exact_header_and_offsets(void **state)
{
    (void)state;
    lx_st_entry e[3] = {
        entry("b.weight", LX_DT_F32, 2, 2, 3),   /* 24 bytes */
        entry("a.bias", LX_DT_BF16, 1, 5, 0),    /* 10 bytes */
        entry("c", LX_DT_F64, 0, 0, 0),          /* scalar: 8 bytes */
    };
    const char *keys[] = {"format"}, *vals[] = {"pt"};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 3, keys, vals, 1), LX_OK);
    /* given order kept, offsets contiguous from 0 */
    assert_int_equal(e[0].begin, 0);
    assert_int_equal(e[0].nbytes, 24);
    assert_int_equal(e[1].begin, 24);
    assert_int_equal(e[1].nbytes, 10);
    assert_int_equal(e[2].begin, 34);
    assert_int_equal(e[2].nbytes, 8);
    char *json = header_json(&L);
    assert_string_equal(json,
                        "{\"__metadata__\":{\"format\":\"pt\"},"
                        "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                        "\"a.bias\":{\"dtype\":\"BF16\",\"shape\":[5],\"data_offsets\":[24,34]},"
                        "\"c\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[34,42]}}");
    assert_int_equal(L.header_size, 8 + (strlen(json) + 7) / 8 * 8);
    assert_int_equal(L.file_size, L.header_size + 42);
    free(json);
    lx_st_layout_free(&L);
    assert_null(L.header);
}

static void padding_to_eight_for_every_length(void **state)
{
    (void)state;
    /* names of 1..16 characters walk the JSON length through every residue mod 8 */
    int seen[8] = {0};
    for (int len = 1; len <= 16; len++) {
        char name[17];
        memset(name, 'x', (size_t)len);
        name[len] = '\0';
        lx_st_entry e = entry(name, LX_DT_U8, 1, 3, 0);
        lx_st_layout L;
        assert_int_equal(lx_st_layout_build(&L, &e, 1, NULL, NULL, 0), LX_OK);
        size_t json_len = strlen("{\"\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}") + (size_t)len;
        seen[json_len % 8] = 1;
        assert_int_equal(L.header_size % 8, 0);
        assert_true(L.header_size - 8 >= json_len);
        assert_true(L.header_size - 8 < json_len + 8); /* minimal padding */
        assert_int_equal(L.header[8 + json_len - 1], '}');
        for (uint64_t i = 8 + json_len; i < L.header_size; i++)
            assert_int_equal(L.header[i], ' ');
        assert_int_equal(L.file_size, L.header_size + 3);
        lx_st_layout_free(&L);
    }
    for (int r = 0; r < 8; r++)
        assert_true(seen[r]);
}

static void no_metadata_when_none_and_empty_file(void **state)
{
    (void)state;
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, NULL, 0, NULL, NULL, 0), LX_OK);
    char *json = header_json(&L);
    assert_string_equal(json, "{}");
    assert_int_equal(L.header_size, 16);
    assert_int_equal(L.file_size, 16);
    free(json);
    lx_st_layout_free(&L);
}

static void zero_size_tensor(void **state)
{
    (void)state;
    lx_st_entry e[2] = {entry("empty", LX_DT_F32, 2, 2, 0), entry("one", LX_DT_F16, 1, 1, 0)};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 2, NULL, NULL, 0), LX_OK);
    assert_int_equal(e[0].nbytes, 0);
    assert_int_equal(e[1].begin, 0);
    assert_int_equal(e[1].nbytes, 2);
    char *json = header_json(&L);
    assert_non_null(strstr(json, "\"empty\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]}"));
    free(json);
    lx_st_layout_free(&L);
}

static void rejects_bad_entries(void **state)
{
    (void)state;
    lx_st_layout L;
    lx_st_entry dup[3] = {entry("w", LX_DT_F32, 1, 2, 0), entry("v", LX_DT_F32, 1, 2, 0),
                          entry("w", LX_DT_F16, 1, 2, 0)};
    assert_int_equal(lx_st_layout_build(&L, dup, 3, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "duplicate tensor name 'w'"));

    lx_st_entry meta = entry("__metadata__", LX_DT_F32, 1, 2, 0);
    assert_int_equal(lx_st_layout_build(&L, &meta, 1, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "reserved"));

    lx_st_entry huge = entry("huge", LX_DT_F32, 2, 1ull << 62, 8);
    assert_int_equal(lx_st_layout_build(&L, &huge, 1, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "'huge'"));

    lx_st_entry toobig = entry("dim", LX_DT_U8, 1, UINT64_MAX, 0);
    assert_int_equal(lx_st_layout_build(&L, &toobig, 1, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "'dim'"));

    /* two tensors of 2^62 bytes each: the second offset overflows */
    lx_st_entry sum[2] = {entry("p", LX_DT_U8, 1, 1ull << 62, 0), entry("q", LX_DT_U8, 1, 1ull << 62, 0)};
    assert_int_equal(lx_st_layout_build(&L, sum, 2, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "'q'"));

    lx_st_entry f4 = entry("nibbles", LX_DT_F4, 1, 3, 0); /* 12 bits: not whole bytes */
    assert_int_equal(lx_st_layout_build(&L, &f4, 1, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "whole bytes"));
    f4.shape[0] = 4;
    assert_int_equal(lx_st_layout_build(&L, &f4, 1, NULL, NULL, 0), LX_OK);
    assert_int_equal(f4.nbytes, 2);
    lx_st_layout_free(&L);

    lx_st_entry bad_utf8 = entry("\xff\xfe", LX_DT_U8, 1, 1, 0);
    assert_int_equal(lx_st_layout_build(&L, &bad_utf8, 1, NULL, NULL, 0), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "UTF-8"));
}

/* ---- files ------------------------------------------------------------------- */

static void round_trip_through_parser(void **state)
{
    (void)state;
    lx_st_entry e[3] = {
        entry("model.layers.0.mlp.down_proj.weight", LX_DT_BF16, 2, 3, 5),
        entry("model.norm.weight", LX_DT_F32, 1, 7, 0),
        entry("emb", LX_DT_F16, 2, 4, 2),
    };
    const char *keys[] = {"format", "note"}, *vals[] = {"pt", "h\u00e9llo \"quoted\""};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 3, keys, vals, 2), LX_OK);
    const char *path = tmp_path("rt.safetensors");
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, path, &L, 0), LX_OK);
    /* tensors written out of order, one in two pieces */
    unsigned char data[64];
    for (int i = 0; i < 64; i++)
        data[i] = (unsigned char)(i * 7 + 1);
    assert_int_equal(lx_st_out_write(&o, 2, 0, data, 16), LX_OK);
    assert_int_equal(lx_st_out_write(&o, 0, 10, data + 10, 20), LX_OK);
    assert_int_equal(lx_st_out_write(&o, 0, 0, data, 10), LX_OK);
    assert_int_equal(lx_st_out_write(&o, 1, 0, data + 30, 28), LX_OK);
    assert_int_equal(lx_st_out_sync(&o), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);

    size_t size;
    unsigned char *b = read_whole(path, &size);
    assert_int_equal(size, L.file_size);
    assert_memory_equal(b, L.header, L.header_size);
    lx_st_header h;
    assert_int_equal(lx_st_parse(b, size, path, &h), LX_OK);
    assert_int_equal(h.data_start, L.header_size);
    assert_int_equal(h.nmeta, 2);
    assert_string_equal(h.meta_keys[0], "format");
    assert_string_equal(h.meta_values[0], "pt");
    assert_string_equal(h.meta_keys[1], "note");
    assert_string_equal(h.meta_values[1], vals[1]);
    assert_int_equal(h.ntensors, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(h.tensors[i].name, e[i].name);
        assert_int_equal(h.tensors[i].dtype, e[i].dtype);
        assert_int_equal(h.tensors[i].ndim, e[i].ndim);
        for (int d = 0; d < e[i].ndim; d++)
            assert_int_equal(h.tensors[i].shape[d], e[i].shape[d]);
        assert_int_equal(h.tensors[i].begin, e[i].begin);
        assert_int_equal(h.tensors[i].end, e[i].begin + e[i].nbytes);
    }
    const unsigned char *d = b + h.data_start;
    assert_memory_equal(d + e[0].begin, data, 30);
    assert_memory_equal(d + e[1].begin, data + 30, 28);
    assert_memory_equal(d + e[2].begin, data, 16);
    /* the metadata comes first in the JSON */
    assert_memory_equal(b + 8, "{\"__metadata__\":{", 17);
    lx_st_header_free(&h);
    free(b);
    lx_st_layout_free(&L);
}

static void unwritten_data_reads_as_zeros(void **state)
{
    (void)state;
    lx_st_entry e = entry("t", LX_DT_F32, 1, 1000, 0);
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, &e, 1, NULL, NULL, 0), LX_OK);
    const char *path = tmp_path("sparse.safetensors");
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, path, &L, 0), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);
    size_t size;
    unsigned char *b = read_whole(path, &size);
    assert_int_equal(size, L.file_size);
    for (size_t i = L.header_size; i < size; i++)
        assert_int_equal(b[i], 0);
    free(b);
    lx_st_layout_free(&L);
}

static void out_of_bounds_writes_rejected(void **state)
{
    (void)state;
    lx_st_entry e[2] = {entry("first", LX_DT_U8, 1, 10, 0), entry("second", LX_DT_U8, 1, 6, 0)};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 2, NULL, NULL, 0), LX_OK);
    const char *path = tmp_path("bounds.safetensors");
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, path, &L, 0), LX_OK);
    unsigned char buf[16];
    memset(buf, 0x5a, sizeof buf);
    assert_int_equal(lx_st_out_write(&o, 0, 0, buf, 11), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "'first'"));
    assert_non_null(strstr(lx_errmsg(), "bounds.safetensors"));
    assert_int_equal(lx_st_out_write(&o, 0, 4, buf, 7), LX_EFAIL);
    assert_int_equal(lx_st_out_write(&o, 0, 11, buf, 0), LX_EFAIL);
    assert_int_equal(lx_st_out_write(&o, 0, UINT64_MAX, buf, 2), LX_EFAIL);
    assert_int_equal(lx_st_out_write(&o, 2, 0, buf, 1), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "#2"));
    assert_int_equal(lx_st_out_write(&o, 1, 0, buf, 6), LX_OK); /* exact fit */
    assert_int_equal(lx_st_out_write(&o, 0, 10, buf, 0), LX_OK);
    assert_int_equal(lx_st_out_writeback(&o, 1, 0, 6), LX_OK);
    assert_int_equal(lx_st_out_writeback(&o, 1, 2, 5), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "'second'"));
    assert_int_equal(lx_st_out_writeback(&o, 2, 0, 1), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "#2"));
    assert_int_equal(lx_st_out_close(&o), LX_OK);
    /* nothing of the rejected writes reached the file: "first" is still zeros */
    size_t size;
    unsigned char *b = read_whole(path, &size);
    for (int i = 0; i < 10; i++)
        assert_int_equal(b[L.header_size + (size_t)i], 0);
    for (int i = 10; i < 16; i++)
        assert_int_equal(b[L.header_size + (size_t)i], 0x5a);
    free(b);
    lx_st_layout_free(&L);
}

static void reuse_checks_size_and_header(void **state)
{
    (void)state;
    lx_st_entry e[2] = {entry("x", LX_DT_F32, 1, 4, 0), entry("y", LX_DT_F32, 1, 4, 0)};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 2, NULL, NULL, 0), LX_OK);
    const char *path = tmp_path("reuse.safetensors");
    lx_st_out o;
    float xs[4] = {1, 2, 3, 4}, ys[4] = {5, 6, 7, 8};
    assert_int_equal(lx_st_out_open(&o, path, &L, 0), LX_OK);
    assert_int_equal(lx_st_out_write(&o, 0, 0, xs, sizeof xs), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);

    /* reopened: the first tensor survives, the second is added */
    assert_int_equal(lx_st_out_open(&o, path, &L, 1), LX_OK);
    assert_int_equal(lx_st_out_write(&o, 1, 0, ys, sizeof ys), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);
    size_t size;
    unsigned char *b = read_whole(path, &size);
    assert_int_equal(size, L.file_size);
    assert_memory_equal(b + L.header_size, xs, sizeof xs);
    assert_memory_equal(b + L.header_size + 16, ys, sizeof ys);
    free(b);

    /* another layout of the same size: the same tensors in the other order */
    lx_st_entry e2[2] = {entry("y", LX_DT_F32, 1, 4, 0), entry("x", LX_DT_F32, 1, 4, 0)};
    lx_st_layout L2;
    assert_int_equal(lx_st_layout_build(&L2, e2, 2, NULL, NULL, 0), LX_OK);
    assert_int_equal(L2.file_size, L.file_size);
    assert_int_equal(lx_st_out_open(&o, path, &L2, 1), LX_EOUTPUT);
    assert_non_null(strstr(lx_errmsg(), "header differs"));
    assert_non_null(strstr(lx_errmsg(), "reuse.safetensors"));
    lx_st_layout_free(&L2);

    /* a truncated file */
    assert_int_equal(truncate(path, (off_t)L.file_size - 1), 0);
    assert_int_equal(lx_st_out_open(&o, path, &L, 1), LX_EOUTPUT);
    assert_non_null(strstr(lx_errmsg(), "expected"));
    /* a missing file */
    assert_int_equal(lx_st_out_open(&o, tmp_path("absent.safetensors"), &L, 1), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "absent.safetensors"));
    assert_null(o.path);
    lx_st_layout_free(&L);
}

static void create_truncates_existing_file(void **state)
{
    (void)state;
    const char *path = tmp_path("old.safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc('z', f);
    fclose(f);
    lx_st_entry e = entry("t", LX_DT_U8, 1, 8, 0);
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, &e, 1, NULL, NULL, 0), LX_OK);
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, path, &L, 0), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, L.file_size);
    lx_st_layout_free(&L);
}

/* EFBIG through RLIMIT_FSIZE: the message names the file (and the tensor). */
static void write_errors_name_file_and_tensor(void **state)
{
    (void)state;
    lx_st_entry e[2] = {entry("small", LX_DT_U8, 1, 8, 0), entry("big.weight", LX_DT_U8, 1, 1 << 20, 0)};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 2, NULL, NULL, 0), LX_OK);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);

    /* the sparse extension itself is refused */
    lim = old;
    lim.rlim_cur = 65536;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    lx_st_out o;
    lx_status st = lx_st_out_open(&o, tmp_path("efbig1.safetensors"), &L, 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(st, LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "efbig1.safetensors"));
    assert_non_null(strstr(lx_errmsg(), strerror(EFBIG)));
    assert_int_equal(access(tmp_path("efbig1.safetensors"), F_OK), -1); /* cleaned up */

    /* a write past the limit, into a file created before the limit */
    assert_int_equal(lx_st_out_open(&o, tmp_path("efbig2.safetensors"), &L, 0), LX_OK);
    static unsigned char buf[4096];
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    st = lx_st_out_write(&o, 1, 512 * 1024, buf, sizeof buf);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(st, LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "efbig2.safetensors"));
    assert_non_null(strstr(lx_errmsg(), "'big.weight'"));
    assert_non_null(strstr(lx_errmsg(), strerror(EFBIG)));
    assert_int_equal(lx_st_out_close(&o), LX_OK);

    signal(SIGXFSZ, old_handler);
    lx_st_layout_free(&L);
}

static void refuses_non_regular_file(void **state)
{
    (void)state;
    lx_st_entry e = entry("t", LX_DT_U8, 1, 8, 0);
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, &e, 1, NULL, NULL, 0), LX_OK);
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, "/dev/null", &L, 0), LX_EOUTPUT);
    assert_non_null(strstr(lx_errmsg(), "/dev/null: not a regular file"));
    struct stat sb;
    assert_int_equal(stat("/dev/null", &sb), 0); /* still there, still the device */
    assert_true(S_ISCHR(sb.st_mode));
    lx_st_layout_free(&L);
}

/* The reference Python writer's file: two F64 tensors, no metadata.  It
 * orders tensors by dtype size, then name: listed in that order, our header
 * is byte-identical, and so is the whole file rewritten with its data. */
static void reference_writer_bytes(void **state)
{
    (void)state;
    const char *src = getenv("TESTS_SRCDIR");
    if (!src)
        skip();
    char path[512];
    snprintf(path, sizeof path, "%s/data/real/safetensors-cpp/model.safetensors", src);
    size_t size;
    unsigned char *ref = read_whole(path, &size);
    lx_st_header h;
    assert_int_equal(lx_st_parse(ref, size, path, &h), LX_OK);
    assert_int_equal(h.ntensors, 2);
    assert_int_equal(h.nmeta, 0);

    lx_st_entry e[2] = {entry("weight1", LX_DT_F64, 2, 8, 8), entry("weight2", LX_DT_F64, 2, 16, 16)};
    lx_st_layout L;
    assert_int_equal(lx_st_layout_build(&L, e, 2, NULL, NULL, 0), LX_OK);
    assert_int_equal(L.header_size, h.data_start);
    assert_memory_equal(L.header, ref, L.header_size);
    assert_int_equal(L.file_size, size);

    const char *out = tmp_path("ref-copy.safetensors");
    lx_st_out o;
    assert_int_equal(lx_st_out_open(&o, out, &L, 0), LX_OK);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(lx_st_out_write(&o, i, 0, ref + h.data_start + h.tensors[i].begin, e[i].nbytes), LX_OK);
    assert_int_equal(lx_st_out_close(&o), LX_OK);
    size_t osize;
    unsigned char *copy = read_whole(out, &osize);
    assert_int_equal(osize, size);
    assert_memory_equal(copy, ref, size);
    free(copy);
    lx_st_header_free(&h);
    lx_st_layout_free(&L);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_header_and_offsets),
        cmocka_unit_test(padding_to_eight_for_every_length),
        cmocka_unit_test(no_metadata_when_none_and_empty_file),
        cmocka_unit_test(zero_size_tensor),
        cmocka_unit_test(rejects_bad_entries),
        cmocka_unit_test(round_trip_through_parser),
        cmocka_unit_test(unwritten_data_reads_as_zeros),
        cmocka_unit_test(out_of_bounds_writes_rejected),
        cmocka_unit_test(reuse_checks_size_and_header),
        cmocka_unit_test(create_truncates_existing_file),
        cmocka_unit_test(write_errors_name_file_and_tensor),
        cmocka_unit_test(refuses_non_regular_file),
        cmocka_unit_test(reference_writer_bytes),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

/* test_safetensors.c - the safetensors header parser (lx_st_parse) on
 * hand-built files: valid layouts, and every rejection rule with its message.
 * (The writer's tests live in their own file.)
 *
 * Every buffer is malloc'd at its exact size so that AddressSanitizer
 * (--enable-sanitizers) catches a read outside [buf, buf+size).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/safetensors.h"

#define FNAME "model-00002-of-00003.safetensors"

/* 8-byte little-endian n, then body (body_len bytes), then pad bytes of 0xab
 * (the data buffer).  n is independent of body_len, for lying headers. */
static unsigned char *raw_file(uint64_t n, const char *body, size_t body_len, size_t pad,
                               size_t *size)
{
    *size = 8 + body_len + pad;
    unsigned char *b = malloc(*size ? *size : 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, body, body_len);
    memset(b + 8 + body_len, 0xab, pad);
    return b;
}

/* A well-formed frame around json with data_len bytes of data. */
static unsigned char *st_file(const char *json, size_t data_len, size_t *size)
{
    return raw_file(strlen(json), json, strlen(json), data_len, size);
}

static lx_status parse(const unsigned char *b, size_t size, lx_st_header *h)
{
    return lx_st_parse(b, size, FNAME, h);
}

/* ---- valid files --------------------------------------------------------- */

static void valid_two_tensors_sorted_by_offset(void **state)
{
    (void)state;
    /* listed in reverse file order: the table must come out sorted by begin */
    const char *json = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t size;
    unsigned char *b = st_file(json, 32, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.header_len, strlen(json));
    assert_int_equal(h.data_start, 8 + strlen(json));
    assert_int_equal(h.ntensors, 2);
    assert_int_equal(h.nmeta, 0);
    assert_string_equal(h.tensors[0].name, "a");
    assert_int_equal(h.tensors[0].dtype, LX_DT_F32);
    assert_int_equal(h.tensors[0].ndim, 2);
    assert_int_equal(h.tensors[0].shape[0], 2);
    assert_int_equal(h.tensors[0].shape[1], 3);
    assert_int_equal(h.tensors[0].nelem, 6);
    assert_int_equal(h.tensors[0].begin, 0);
    assert_int_equal(h.tensors[0].end, 24);
    assert_string_equal(h.tensors[1].name, "b");
    assert_int_equal(h.tensors[1].dtype, LX_DT_BF16);
    assert_int_equal(h.tensors[1].ndim, 1);
    assert_int_equal(h.tensors[1].nelem, 4);
    assert_int_equal(h.tensors[1].begin, 24);
    assert_int_equal(h.tensors[1].end, 32);
    lx_st_header_free(&h);
    assert_null(h.tensors);
    free(b);
}

static void valid_scalar(void **state)
{
    (void)state;
    size_t size;
    unsigned char *b = st_file("{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}}", 8,
                               &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.ntensors, 1);
    assert_int_equal(h.tensors[0].ndim, 0);
    assert_int_equal(h.tensors[0].nelem, 1);
    assert_int_equal(h.tensors[0].end, 8);
    lx_st_header_free(&h);
    free(b);
}

static void valid_zero_size(void **state)
{
    (void)state;
    /* [2,0] at [0,0], then a real tensor; and two empties tied at [2,2],
     * ordered by name */
    size_t size;
    unsigned char *b = st_file("{\"w\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                               "\"z\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]},"
                               "\"e2\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[2,2]},"
                               "\"e1\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[2,2]}}",
                               2, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.ntensors, 4);
    assert_string_equal(h.tensors[0].name, "z");
    assert_int_equal(h.tensors[0].nelem, 0);
    assert_int_equal(h.tensors[0].ndim, 2);
    assert_int_equal(h.tensors[0].shape[1], 0);
    assert_string_equal(h.tensors[1].name, "w");
    assert_string_equal(h.tensors[2].name, "e1");
    assert_string_equal(h.tensors[3].name, "e2");
    assert_int_equal(h.tensors[3].nelem, 0);
    lx_st_header_free(&h);
    free(b);
}

static void valid_empty_header(void **state)
{
    (void)state;
    size_t size;
    unsigned char *b = st_file("{}", 0, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.ntensors, 0);
    assert_int_equal(h.data_start, 10);
    lx_st_header_free(&h);
    free(b);
}

static void valid_space_padding_and_metadata(void **state)
{
    (void)state;
    /* as the reference writer: metadata, then spaces up to a multiple of 8 */
    const char *json = "{\"__metadata__\":{\"format\":\"pt\",\"b\":\"2\",\"a\":\"\\u00e9\"},"
                       "\"t\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]}}";
    char padded[256];
    size_t n = strlen(json);
    memcpy(padded, json, n);
    while ((8 + n) % 8 != 0 || n == strlen(json))
        padded[n++] = ' ';
    size_t size;
    unsigned char *b = raw_file(n, padded, n, 3, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.header_len, n);
    assert_int_equal(h.data_start % 8, 0);
    assert_int_equal(h.ntensors, 1);
    assert_int_equal(h.nmeta, 3);
    assert_string_equal(h.meta_keys[0], "format"); /* file order */
    assert_string_equal(h.meta_values[0], "pt");
    assert_string_equal(h.meta_keys[1], "b");
    assert_string_equal(h.meta_keys[2], "a");
    assert_string_equal(h.meta_values[2], "\xc3\xa9");
    lx_st_header_free(&h);
    assert_null(h.meta_keys);
    free(b);
}

static void valid_sub_byte_dtypes_and_extra_fields(void **state)
{
    (void)state;
    /* F4 x 6 = 3 bytes, F6 x 4 = 3 bytes; unknown fields are ignored as by
     * the reference reader; a UTF-8 name survives */
    size_t size;
    unsigned char *b = st_file(
        "{\"f4\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[0,3],\"extra\":[1]},"
        "\"f6\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[3,6]},"
        "\"\xe5\xb1\x82\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[6,14]}}",
        14, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.ntensors, 3);
    assert_int_equal(h.tensors[0].dtype, LX_DT_F4);
    assert_int_equal(h.tensors[0].nelem, 6);
    assert_int_equal(h.tensors[1].dtype, LX_DT_F6_E2M3);
    assert_string_equal(h.tensors[2].name, "\xe5\xb1\x82");
    assert_int_equal(h.tensors[2].dtype, LX_DT_C64);
    lx_st_header_free(&h);
    free(b);
}

/* Every dtype name of the reference reader parses with its size. */
static void valid_every_dtype(void **state)
{
    (void)state;
    static const struct { const char *name; unsigned bytes_for_8; } dts[] = {
        {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8},
        {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
        {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16},
        {"I32", 32}, {"U32", 32}, {"F32", 32}, {"C64", 64}, {"F64", 64}, {"I64", 64},
        {"U64", 64},
    };
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        char json[128];
        snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[8],\"data_offsets\":[0,%u]}}",
                 dts[i].name, dts[i].bytes_for_8);
        size_t size;
        unsigned char *b = st_file(json, dts[i].bytes_for_8, &size);
        lx_st_header h;
        assert_int_equal(parse(b, size, &h), LX_OK);
        assert_string_equal(lx_dtype_name(h.tensors[0].dtype), dts[i].name);
        lx_st_header_free(&h);
        free(b);
    }
}

/* ---- rejections ---------------------------------------------------------- */

static void expect_reject(const unsigned char *b, size_t size, const char *want)
{
    lx_st_header h;
    memset(&h, 0x5a, sizeof h);
    lx_status st = parse(b, size, &h);
    const char *msg = lx_errmsg();
    if (st != LX_EINPUT || strncmp(msg, FNAME ": ", strlen(FNAME) + 2) != 0 || !strstr(msg, want))
        fail_msg("status %d, message \"%s\"; expected %d and \"%s\"", st, msg, LX_EINPUT, want);
    /* nothing left to free */
    assert_int_equal(h.ntensors, 0);
    assert_null(h.tensors);
    assert_int_equal(h.nmeta, 0);
    assert_null(h.meta_keys);
}

/* A well-framed header with data_len bytes of data. */
static void reject_json(const char *json, size_t data_len, const char *want)
{
    size_t size;
    unsigned char *b = st_file(json, data_len, &size);
    expect_reject(b, size, want);
    free(b);
}

static void reject_short_file(void **state)
{
    (void)state;
    expect_reject(NULL, 0, "file is 0 bytes, shorter than the 8-byte header length");
    unsigned char *b = malloc(7);
    memset(b, 0, 7);
    expect_reject(b, 7, "file is 7 bytes, shorter than the 8-byte header length");
    free(b);
}

static void reject_header_too_large(void **state)
{
    (void)state;
    size_t size;
    /* N = 100,000,001 (and 2^64-1, which must not wrap 8 + N) */
    unsigned char *b = raw_file(100000001, "{}", 2, 0, &size);
    expect_reject(b, size, "header length 100000001 exceeds the limit of 100000000 bytes");
    free(b);
    b = raw_file(UINT64_MAX, "{}", 2, 0, &size);
    expect_reject(b, size, "header length 18446744073709551615 exceeds the limit");
    free(b);
}

static void reject_header_past_end(void **state)
{
    (void)state;
    size_t size;
    /* like safetensors_abuse_attempt_1: N = 1000 in an 88-byte file */
    unsigned char *b = raw_file(1000, "{}", 2, 78, &size);
    assert_int_equal(size, 88);
    expect_reject(b, size, "header length 1000 runs past the end of the file (88 bytes)");
    free(b);
    /* the limit itself, one byte short */
    b = raw_file(9, "{}       ", 8, 0, &size);
    expect_reject(b, size, "header length 9 runs past the end of the file (16 bytes)");
    free(b);
}

static void reject_not_utf8(void **state)
{
    (void)state;
    static const struct { const char *body; size_t at; unsigned byte; } cases[] = {
        {"{\"a\xff\":1}", 3, 0xff},         /* never valid */
        {"{\"a\xc0\x80\":1}", 3, 0xc0},     /* overlong NUL */
        {"{\"\xed\xa0\x80\":1}", 2, 0xed},  /* UTF-16 surrogate */
        {"{\"\xf4\x90\x80\x80\":1}", 2, 0xf4}, /* past U+10FFFF */
        {"{\"\xe2\x82\":1}", 2, 0xe2},      /* cut sequence */
        {"{}\xc3", 2, 0xc3},                /* cut at the very end */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t size, len = strlen(cases[i].body);
        unsigned char *b = raw_file(len, cases[i].body, len, 0, &size);
        char want[96];
        snprintf(want, sizeof want, "header is not valid UTF-8 (byte 0x%02x at header offset %zu)",
                 cases[i].byte, cases[i].at);
        expect_reject(b, size, want);
        free(b);
    }
}

static void reject_not_json(void **state)
{
    (void)state;
    reject_json("{\"a\":", 0, "header is not valid JSON");
    reject_json("", 0, "header is not valid JSON");
    /* one object, then only whitespace */
    reject_json("{} x", 0, "header is not valid JSON: end of file expected");
    reject_json("{}{}", 0, "header is not valid JSON: end of file expected");
    /* NUL padding is not whitespace */
    size_t size;
    unsigned char *b = raw_file(3, "{}\0", 3, 0, &size);
    expect_reject(b, size, "header is not valid JSON");
    free(b);
}

static void reject_not_object(void **state)
{
    (void)state;
    reject_json("[]", 0, "header is an array, expected a JSON object");
    reject_json("\"x\"", 0, "header is a string, expected a JSON object");
    reject_json("7", 0, "header is 7, expected a JSON object");
}

static void reject_entry_types(void **state)
{
    (void)state;
    reject_json("{\"w\":[1]}", 0, "tensor 'w': entry is an array, expected an object");
    reject_json("{\"w\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4, "tensor 'w': no \"dtype\"");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': no \"shape\"");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[]}}", 4, "tensor 'w': no \"data_offsets\"");
    reject_json("{\"w\":{\"dtype\":32,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                "tensor 'w': dtype is 32, expected a string");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4,
                "tensor 'w': shape is 4, expected an array");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":{}}}", 4,
                "tensor 'w': data_offsets is an object, expected [begin, end]");
}

static void reject_unknown_dtype(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"F128\",\"shape\":[],\"data_offsets\":[0,16]}}", 16,
                "tensor 'w': unknown dtype 'F128'");
    reject_json("{\"w\":{\"dtype\":\"f32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                "tensor 'w': unknown dtype 'f32'");
    /* a NUL inside must not make "F32" */
    reject_json("{\"w\":{\"dtype\":\"F32\\u0000x\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                "tensor 'w': dtype contains a NUL byte");
}

static void reject_bad_shape_entries(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,0]}}", 0,
                "tensor 'w': shape[1] is -3, expected a non-negative integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8,
                "tensor 'w': shape[0] is 2.0, expected a non-negative integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e3],\"data_offsets\":[0,4000]}}", 4000,
                "tensor 'w': shape[0] is 1000.0, expected a non-negative integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                "tensor 'w': shape[0] is a string, expected a non-negative integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,8]}}", 8,
                "tensor 'w': shape[0] is null");
}

static void reject_too_many_dims(void **state)
{
    (void)state;
    /* 17 ones: a valid 4-byte tensor but for the count */
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
                "\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape has 17 dimensions, more than 16");
    /* 16 is fine */
    size_t size;
    unsigned char *b = st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2],"
                               "\"data_offsets\":[0,8]}}", 8, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.tensors[0].ndim, 16);
    assert_int_equal(h.tensors[0].nelem, 2);
    lx_st_header_free(&h);
    free(b);
}

static void reject_bad_data_offsets(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8,
                "tensor 'w': data_offsets has 3 entries, expected [begin, end]");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4,
                "tensor 'w': data_offsets has 1 entries");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 0,
                "tensor 'w': data_offsets[0] is -4, expected a non-negative integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}", 4,
                "tensor 'w': data_offsets[1] is 4.5, expected a non-negative integer");
}

static void reject_integer_out_of_range(void **state)
{
    (void)state;
    /* 2^63 and 2^64+: beyond what the reader represents */
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,9223372036854775808]}}",
                4, "header: number out of range: too big integer");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999999],"
                "\"data_offsets\":[0,4]}}", 4, "header: number out of range");
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,4]}}", 4,
                "header: number out of range");
}

static void reject_bad_metadata(void **state)
{
    (void)state;
    reject_json("{\"__metadata__\":[\"pt\"]}", 0,
                "__metadata__ is an array, expected an object of strings");
    reject_json("{\"__metadata__\":{\"format\":1}}", 0,
                "__metadata__ entry 'format' is 1, expected a string");
    reject_json("{\"__metadata__\":{\"format\":{\"x\":\"y\"}}}", 0,
                "__metadata__ entry 'format' is an object, expected a string");
    reject_json("{\"__metadata__\":{\"format\":\"p\\u0000t\"}}", 0,
                "__metadata__ entry 'format' contains a NUL byte");
}

static void reject_duplicate_name(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
                "header: duplicate name (a tensor or a field given twice): duplicate object key "
                "near '\"w\"'");
    /* a field given twice is refused too */
    reject_json("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "duplicate object key near '\"dtype\"'");
}

static void reject_nul_in_name(void **state)
{
    (void)state;
    reject_json("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                "header: a name contains a NUL byte");
}

static void reject_end_before_begin(void **state)
{
    (void)state;
    reject_json("{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"U8\",\"shape\":[10],"
                "\"data_offsets\":[100,90]}}", 0,
                "tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [100, 90]: end before begin");
    /* after a valid first tensor */
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4,
                "tensor 'b': data_offsets [4, 2]: end before begin");
}

static void reject_not_contiguous(void **state)
{
    (void)state;
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}", 8,
                "tensor 'a': data_offsets [4, 8]: the first tensor must begin at 0 "
                "(offsets not contiguous)");
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}", 10,
                "tensor 'b': data_offsets [6, 10]: gap after tensor 'a' which ends at 4 "
                "(offsets not contiguous)");
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", 6,
                "tensor 'b': data_offsets [2, 6]: overlap after tensor 'a' which ends at 4");
    /* the same range twice: the second overlaps */
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
                "tensor 'b': data_offsets [0, 4]: overlap after tensor 'a'");
}

static void reject_size_overflow(void **state)
{
    (void)state;
    /* 2^32 * 2^32 elements */
    reject_json("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
                0, "tensor 'w': shape [4294967296, 4294967296]: element count overflows 64 bits");
    /* 2^61 elements fit, 2^61 x 64 bits do not */
    reject_json("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}",
                0, "tensor 'w': shape [2305843009213693952] x 64 bits (F64) overflows 64 bits");
    /* a zero first keeps the running product at 0, as the reference reader */
    size_t size;
    unsigned char *b = st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],"
                               "\"data_offsets\":[0,0]}}", 0, &size);
    lx_st_header h;
    assert_int_equal(parse(b, size, &h), LX_OK);
    assert_int_equal(h.tensors[0].nelem, 0);
    lx_st_header_free(&h);
    free(b);
}

static void reject_partial_bytes(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2,
                "tensor 'w': shape [3] of F4 is 3 elements = 12 bits, not a whole number of bytes");
    reject_json("{\"w\":{\"dtype\":\"F6_E3M2\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
                "tensor 'w': shape [2] of F6_E3M2 is 2 elements = 12 bits");
}

static void reject_length_mismatch(void **state)
{
    (void)state;
    reject_json("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                "tensor 'w': data_offsets [0, 20] hold 20 bytes, but shape [2, 3] of F32 needs 24 bytes");
    reject_json("{\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
                "tensor 's': data_offsets [0, 0] hold 0 bytes, but shape [] of BF16 needs 2 bytes");
}

static void reject_trailing_bytes(void **state)
{
    (void)state;
    const char *json = "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    char want[128];
    size_t n = strlen(json);
    snprintf(want, sizeof want, "file is %zu bytes, but header and data end at %zu: 3 trailing bytes",
             8 + n + 7, 8 + n + 4);
    reject_json(json, 7, want);
}

static void reject_truncated(void **state)
{
    (void)state;
    const char *json = "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}";
    char want[128];
    size_t n = strlen(json);
    snprintf(want, sizeof want, "file is %zu bytes, but the data buffer ends at %zu: truncated "
             "(1 bytes missing)", 8 + n + 3, 8 + n + 4);
    reject_json(json, 3, want);
}

/* The rules come in the reference reader's order: a header that breaks two
 * reports the earlier one. */
static void reject_order(void **state)
{
    (void)state;
    /* bad type (second tensor) beats the offsets of the first */
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},"
                "\"b\":{\"dtype\":\"X\",\"shape\":[4],\"data_offsets\":[0,4]}}", 12,
                "tensor 'b': unknown dtype 'X'");
    /* the first tensor's length is reported before the second one's gap */
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[5,9]}}", 9,
                "tensor 'a': data_offsets [0, 4] hold 4 bytes");
    /* a tensor's own rules before the file size */
    reject_json("{\"a\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[0,4]}}", 100,
                "tensor 'a': data_offsets [0, 4] hold 4 bytes");
}

static void messages_escape_names(void **state)
{
    (void)state;
    /* a hostile name cannot put a newline or an escape sequence in a message */
    reject_json("{\"a\\nb\\u001b[31m\\\\\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
                "tensor 'a\\nb\\x1b[31m\\\\': data_offsets [0, 2] hold 2 bytes");
    char buf[16];
    assert_string_equal(lx_st_escape_name("a\tb\rc", buf, sizeof buf), "a\\tb\\rc");
    assert_string_equal(lx_st_escape_name("\x7f", buf, sizeof buf), "\\x7f");
    /* cut to 15 bytes ending in "..." */
    assert_string_equal(lx_st_escape_name("abcdefghijklmnopqrstuvwxyz", buf, sizeof buf),
                        "abcdefghijkl...");
    /* never in the middle of a UTF-8 sequence: "a" + 6 x 3 bytes, where a
     * cut at 12 bytes would split the fourth character */
    assert_string_equal(lx_st_escape_name("a\xe5\xb1\x82\xe5\xb1\x82\xe5\xb1\x82\xe5\xb1\x82"
                                          "\xe5\xb1\x82\xe5\xb1\x82", buf, sizeof buf),
                        "a\xe5\xb1\x82\xe5\xb1\x82\xe5\xb1\x82...");
    char tiny[3];
    assert_string_equal(lx_st_escape_name("abcdef", tiny, sizeof tiny), "ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_two_tensors_sorted_by_offset),
        cmocka_unit_test(valid_scalar),
        cmocka_unit_test(valid_zero_size),
        cmocka_unit_test(valid_empty_header),
        cmocka_unit_test(valid_space_padding_and_metadata),
        cmocka_unit_test(valid_sub_byte_dtypes_and_extra_fields),
        cmocka_unit_test(valid_every_dtype),
        cmocka_unit_test(reject_short_file),
        cmocka_unit_test(reject_header_too_large),
        cmocka_unit_test(reject_header_past_end),
        cmocka_unit_test(reject_not_utf8),
        cmocka_unit_test(reject_not_json),
        cmocka_unit_test(reject_not_object),
        cmocka_unit_test(reject_entry_types),
        cmocka_unit_test(reject_unknown_dtype),
        cmocka_unit_test(reject_bad_shape_entries),
        cmocka_unit_test(reject_too_many_dims),
        cmocka_unit_test(reject_bad_data_offsets),
        cmocka_unit_test(reject_integer_out_of_range),
        cmocka_unit_test(reject_bad_metadata),
        cmocka_unit_test(reject_duplicate_name),
        cmocka_unit_test(reject_nul_in_name),
        cmocka_unit_test(reject_end_before_begin),
        cmocka_unit_test(reject_not_contiguous),
        cmocka_unit_test(reject_size_overflow),
        cmocka_unit_test(reject_partial_bytes),
        cmocka_unit_test(reject_length_mismatch),
        cmocka_unit_test(reject_trailing_bytes),
        cmocka_unit_test(reject_truncated),
        cmocka_unit_test(reject_order),
        cmocka_unit_test(messages_escape_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

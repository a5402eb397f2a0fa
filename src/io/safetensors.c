/* safetensors.c - parse and validate one safetensors header (see FORMATS.md).
 *
 * The rules are those of the reference reader, checked in its order, plus
 * duplicate names (the spec forbids them; the reference silently keeps the
 * last), NUL bytes in names and more than LX_MAX_NDIM dimensions.  The input
 * is hostile: every length comes from the file and is checked before use,
 * and nothing is read outside [buf, buf+size).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loxstream/safetensors.h"

const char *lx_st_escape_name(const char *name, char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (len == 0)
        return buf;
    size_t at = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        char esc[5];
        size_t n = 0;
        switch (*p) {
        case '\\': esc[n++] = '\\'; esc[n++] = '\\'; break;
        case '\t': esc[n++] = '\\'; esc[n++] = 't'; break;
        case '\n': esc[n++] = '\\'; esc[n++] = 'n'; break;
        case '\r': esc[n++] = '\\'; esc[n++] = 'r'; break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                esc[n++] = '\\';
                esc[n++] = 'x';
                esc[n++] = hex[*p >> 4];
                esc[n++] = hex[*p & 15];
            } else {
                esc[n++] = (char)*p;
            }
        }
        if (at + n + 1 > len) {
            /* cut: end in "..." if there is room for it */
            size_t keep = len >= 4 ? len - 4 : len - 1;
            if (keep > at)
                keep = at;
            /* do not cut a UTF-8 sequence in the middle */
            while (keep > 0 && keep < at && ((unsigned char)buf[keep] & 0xc0) == 0x80)
                keep--;
            at = keep;
            for (size_t i = 0; i < 3 && at + 1 < len; i++)
                buf[at++] = '.';
            break;
        }
        memcpy(buf + at, esc, n);
        at += n;
    }
    buf[at] = '\0';
    return buf;
}

char *lx_st_escape_dup(const char *name)
{
    size_t cap = 4 * strlen(name) + 1; /* escaping grows a byte to 4 at most */
    char *buf = malloc(cap);
    if (buf)
        lx_st_escape_name(name, buf, cap);
    return buf;
}

/* Offset of the first byte that is not strict UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF), or len if all of it is valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else {
            return i;
        }
        if (n > len - i - 1)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

/* What a JSON value is, for "expected X, found Y" messages. */
static const char *describe(const json_t *v, char *buf, size_t len)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    case JSON_REAL:
        /* keep it recognisably a real: 1.0 printed as "1" would read as
         * "1 is not an integer" */
        snprintf(buf, len, "%.17g", json_real_value(v));
        if (!strpbrk(buf, ".eEin"))
            strncat(buf, ".0", len - strlen(buf) - 1);
        return buf;
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A non-negative JSON integer.  Reals (even 2.0) are refused as the
 * reference reader refuses them; integers past 2^63 never get here (jansson
 * refuses them while parsing). */
static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static const char *format_shape(const lx_st_tensor *t, char *buf, size_t len)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%" PRIu64, i ? ", " : "", t->shape[i]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
    return buf;
}

/* Check one tensor entry's types and fill t (except name). */
static lx_status read_entry(const json_t *entry, const char *fname, const char *qname,
                            lx_st_tensor *t)
{
    char d[64];
    if (!json_is_object(entry))
        return lx_fail(LX_EINPUT, "%s: tensor '%s': entry is %s, expected an object", fname,
                       qname, describe(entry, d, sizeof d));

    const json_t *dtype = json_object_get(entry, "dtype");
    if (!dtype)
        return lx_fail(LX_EINPUT, "%s: tensor '%s': no \"dtype\"", fname, qname);
    if (!json_is_string(dtype))
        return lx_fail(LX_EINPUT, "%s: tensor '%s': dtype is %s, expected a string", fname,
                       qname, describe(dtype, d, sizeof d));
    const char *ds = json_string_value(dtype);
    /* jansson admits NUL inside strings: "F32\u0000x" must not pass as F32 */
    if (strlen(ds) != json_string_length(dtype))
        return lx_fail(LX_EINPUT, "%s: tensor '%s': dtype contains a NUL byte", fname, qname);
    if (!lx_dtype_from_name(ds, &t->dtype)) {
        char q[LX_NAME_QUOTE];
        return lx_fail(LX_EINPUT, "%s: tensor '%s': unknown dtype '%s'", fname, qname,
                       lx_st_escape_name(ds, q, sizeof q));
    }

    const json_t *shape = json_object_get(entry, "shape");
    if (!shape)
        return lx_fail(LX_EINPUT, "%s: tensor '%s': no \"shape\"", fname, qname);
    if (!json_is_array(shape))
        return lx_fail(LX_EINPUT, "%s: tensor '%s': shape is %s, expected an array", fname,
                       qname, describe(shape, d, sizeof d));
    size_t ndim = json_array_size(shape);
    if (ndim > LX_MAX_NDIM)
        return lx_fail(LX_EINPUT, "%s: tensor '%s': shape has %zu dimensions, more than %d",
                       fname, qname, ndim, LX_MAX_NDIM);
    t->ndim = (int)ndim;
    for (size_t i = 0; i < ndim; i++) {
        const json_t *v = json_array_get(shape, i);
        if (!get_u64(v, &t->shape[i]))
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': shape[%zu] is %s, expected a non-negative integer",
                           fname, qname, i, describe(v, d, sizeof d));
    }

    const json_t *offs = json_object_get(entry, "data_offsets");
    if (!offs)
        return lx_fail(LX_EINPUT, "%s: tensor '%s': no \"data_offsets\"", fname, qname);
    if (!json_is_array(offs))
        return lx_fail(LX_EINPUT, "%s: tensor '%s': data_offsets is %s, expected [begin, end]",
                       fname, qname, describe(offs, d, sizeof d));
    if (json_array_size(offs) != 2)
        return lx_fail(LX_EINPUT,
                       "%s: tensor '%s': data_offsets has %zu entries, expected [begin, end]",
                       fname, qname, json_array_size(offs));
    for (size_t i = 0; i < 2; i++) {
        const json_t *v = json_array_get(offs, i);
        if (!get_u64(v, i ? &t->end : &t->begin))
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': data_offsets[%zu] is %s, expected a non-negative integer",
                           fname, qname, i, describe(v, d, sizeof d));
    }
    /* unknown fields are ignored, as by the reference reader */
    return LX_OK;
}

static lx_status read_metadata(const json_t *meta, const char *fname, lx_st_header *h)
{
    char d[64], q[LX_NAME_QUOTE];
    if (!json_is_object(meta))
        return lx_fail(LX_EINPUT, "%s: __metadata__ is %s, expected an object of strings",
                       fname, describe(meta, d, sizeof d));
    size_t n = json_object_size(meta);
    h->meta_keys = calloc(n ? n : 1, sizeof *h->meta_keys);
    h->meta_values = calloc(n ? n : 1, sizeof *h->meta_values);
    if (!h->meta_keys || !h->meta_values)
        return lx_fail(LX_EFAIL, "out of memory");
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)meta, key, klen, v) {
        if (!json_is_string(v))
            return lx_fail(LX_EINPUT, "%s: __metadata__ entry '%s' is %s, expected a string",
                           fname, lx_st_escape_name(key, q, sizeof q), describe(v, d, sizeof d));
        if (strlen(key) != klen || strlen(json_string_value(v)) != json_string_length(v))
            return lx_fail(LX_EINPUT, "%s: __metadata__ entry '%s' contains a NUL byte", fname,
                           lx_st_escape_name(key, q, sizeof q));
        h->meta_keys[h->nmeta] = strdup(key);
        h->meta_values[h->nmeta] = strdup(json_string_value(v));
        h->nmeta++;
        if (!h->meta_keys[h->nmeta - 1] || !h->meta_values[h->nmeta - 1])
            return lx_fail(LX_EFAIL, "out of memory");
    }
    return LX_OK;
}

/* File order; ties (zero-size tensors at one offset) broken by name so the
 * order is deterministic. */
static int by_offsets(const void *pa, const void *pb)
{
    const lx_st_tensor *a = pa, *b = pb;
    if (a->begin != b->begin)
        return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return strcmp(a->name, b->name);
}

/* The reference reader's per-tensor checks, in its order, over the tensors
 * sorted by offset: contiguity, size overflow, whole bytes, byte length. */
static lx_status check_layout(lx_st_header *h, const char *fname, uint64_t *data_end)
{
    char q[LX_NAME_QUOTE], sh[LX_MAX_NDIM * 22 + 4];
    uint64_t expect = 0;
    for (size_t i = 0; i < h->ntensors; i++) {
        lx_st_tensor *t = &h->tensors[i];
        lx_st_escape_name(t->name, q, sizeof q);
        if (t->end < t->begin)
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "]: end before begin",
                           fname, q, t->begin, t->end);
        if (t->begin != expect) {
            if (i == 0)
                return lx_fail(LX_EINPUT,
                               "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                               "]: the first tensor must begin at 0 (offsets not contiguous)",
                               fname, q, t->begin, t->end);
            char qp[LX_NAME_QUOTE];
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                           "]: %s after tensor '%s' which ends at %" PRIu64
                           " (offsets not contiguous)",
                           fname, q, t->begin, t->end, t->begin > expect ? "gap" : "overlap",
                           lx_st_escape_name(h->tensors[i - 1].name, qp, sizeof qp), expect);
        }
        expect = t->end;

        /* as the reference: a running product, so [0, 2^40, 2^40] passes
         * while [2^40, 2^40, 0] overflows */
        uint64_t nelem = 1, nbits;
        for (int k = 0; k < t->ndim; k++)
            if (__builtin_mul_overflow(nelem, t->shape[k], &nelem))
                return lx_fail(LX_EINPUT,
                               "%s: tensor '%s': shape %s: element count overflows 64 bits",
                               fname, q, format_shape(t, sh, sizeof sh));
        unsigned bits = lx_dtype_bits(t->dtype);
        if (__builtin_mul_overflow(nelem, (uint64_t)bits, &nbits))
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': shape %s x %u bits (%s) overflows 64 bits",
                           fname, q, format_shape(t, sh, sizeof sh), bits,
                           lx_dtype_name(t->dtype));
        if (nbits % 8 != 0)
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': shape %s of %s is %" PRIu64 " elements = %" PRIu64
                           " bits, not a whole number of bytes",
                           fname, q, format_shape(t, sh, sizeof sh), lx_dtype_name(t->dtype),
                           nelem, nbits);
        t->nelem = nelem;
        if (t->end - t->begin != nbits / 8)
            return lx_fail(LX_EINPUT,
                           "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                           " bytes, but shape %s of %s needs %" PRIu64 " bytes",
                           fname, q, t->begin, t->end, t->end - t->begin,
                           format_shape(t, sh, sizeof sh), lx_dtype_name(t->dtype), nbits / 8);
    }
    *data_end = expect;
    return LX_OK;
}

/* The header is in memory and UTF-8: decode it, check types, fill h. */
static lx_status read_header(const char *json, size_t len, const char *fname, lx_st_header *h)
{
    json_error_t err;
    char d[64], q[LX_NAME_QUOTE];
    /* ALLOW_NUL so that a NUL in a string is ours to report; DECODE_ANY so
     * that a top-level scalar is "not an object" rather than a syntax error.
     * No DISABLE_EOF_CHECK: the header is one value, then only whitespace. */
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
                              &err);
    if (!root) {
        /* jansson quotes the offending source text: escape it too */
        char et[sizeof err.text * 4];
        lx_st_escape_name(err.text, et, sizeof et);
        switch (json_error_code(&err)) {
        case json_error_duplicate_key:
            return lx_fail(LX_EINPUT,
                           "%s: header: duplicate name (a tensor or a field given twice): "
                           "%s, at byte %d",
                           fname, et, err.position);
        case json_error_null_byte_in_key:
            return lx_fail(LX_EINPUT, "%s: header: a name contains a NUL byte: %s, at byte %d",
                           fname, et, err.position);
        case json_error_numeric_overflow:
            return lx_fail(LX_EINPUT, "%s: header: number out of range: %s, at byte %d", fname,
                           et, err.position);
        default:
            return lx_fail(LX_EINPUT, "%s: header is not valid JSON: %s (line %d, column %d)",
                           fname, et, err.line, err.column);
        }
    }
    lx_status st = LX_OK;
    if (!json_is_object(root)) {
        st = lx_fail(LX_EINPUT, "%s: header is %s, expected a JSON object", fname,
                     describe(root, d, sizeof d));
        goto out;
    }
    size_t n = json_object_size(root);
    if (json_object_get(root, "__metadata__"))
        n--;
    h->tensors = calloc(n ? n : 1, sizeof *h->tensors);
    if (!h->tensors) {
        st = lx_fail(LX_EFAIL, "out of memory");
        goto out;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach(root, key, klen, v) {
        if (klen == 12 && memcmp(key, "__metadata__", 12) == 0) {
            if ((st = read_metadata(v, fname, h)) != LX_OK)
                goto out;
            continue;
        }
        lx_st_escape_name(key, q, sizeof q);
        if (strlen(key) != klen) {
            st = lx_fail(LX_EINPUT, "%s: tensor '%s': name contains a NUL byte", fname, q);
            goto out;
        }
        /* an empty name could not be told apart in the journal, the index
         * or a report: refused here, so by inspect, apply, lora and analyze */
        if (klen == 0) {
            st = lx_fail(LX_EINPUT, "%s: a tensor has an empty name", fname);
            goto out;
        }
        lx_st_tensor *t = &h->tensors[h->ntensors];
        if ((st = read_entry(v, fname, q, t)) != LX_OK)
            goto out;
        if (!(t->name = strdup(key))) {
            st = lx_fail(LX_EFAIL, "out of memory");
            goto out;
        }
        h->ntensors++;
    }
out:
    json_decref(root);
    return st;
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

lx_status lx_st_parse(const unsigned char *buf, uint64_t size, const char *fname,
                      lx_st_header *out)
{
    return lx_st_parse_header(buf, size, size, fname, out);
}

lx_status lx_st_parse_header(const unsigned char *buf, uint64_t len, uint64_t size,
                             const char *fname, lx_st_header *out)
{
    memset(out, 0, sizeof *out);
    if (size < 8 || len < 8)
        return lx_fail(LX_EINPUT,
                       "%s: file is %" PRIu64 " bytes, shorter than the 8-byte header length",
                       fname, size);
    uint64_t n = read_le64(buf);
    if (n > LX_ST_MAX_HEADER)
        return lx_fail(LX_EINPUT, "%s: header length %" PRIu64 " exceeds the limit of %d bytes",
                       fname, n, LX_ST_MAX_HEADER);
    if (8 + n > size)
        return lx_fail(LX_EINPUT,
                       "%s: header length %" PRIu64 " runs past the end of the file (%" PRIu64
                       " bytes)",
                       fname, n, size);
    if (8 + n > len)
        return lx_fail(LX_EINPUT, "%s: header length %" PRIu64 ": only %" PRIu64 " bytes read",
                       fname, n, len);
    size_t bad = utf8_invalid_at(buf + 8, n);
    if (bad < n)
        return lx_fail(LX_EINPUT,
                       "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)", fname,
                       buf[8 + bad], bad);

    out->header_len = n;
    out->data_start = 8 + n;
    lx_status st = read_header((const char *)buf + 8, n, fname, out);
    uint64_t data_end = 0;
    if (st == LX_OK) {
        qsort(out->tensors, out->ntensors, sizeof *out->tensors, by_offsets);
        st = check_layout(out, fname, &data_end);
    }
    if (st == LX_OK && data_end + out->data_start != size) {
        uint64_t want = data_end + out->data_start;
        if (want < size)
            st = lx_fail(LX_EINPUT,
                         "%s: file is %" PRIu64 " bytes, but header and data end at %" PRIu64
                         ": %" PRIu64 " trailing bytes",
                         fname, size, want, size - want);
        else
            st = lx_fail(LX_EINPUT,
                         "%s: file is %" PRIu64 " bytes, but the data buffer ends at %" PRIu64
                         ": truncated (%" PRIu64 " bytes missing)",
                         fname, size, want, want - size);
    }
    if (st != LX_OK)
        lx_st_header_free(out);
    return st;
}

void lx_st_header_free(lx_st_header *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->ntensors; i++)
        free(h->tensors[i].name);
    free(h->tensors);
    for (size_t i = 0; i < h->nmeta; i++) {
        free(h->meta_keys[i]);
        free(h->meta_values[i]);
    }
    free(h->meta_keys);
    free(h->meta_values);
    memset(h, 0, sizeof *h);
}

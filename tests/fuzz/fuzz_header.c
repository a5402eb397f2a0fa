/* fuzz_header.c - libFuzzer target: the input bytes are a whole safetensors
 * file image, given to lx_st_parse.
 *
 * Besides memory safety (ASan, UBSan), an accepted file must satisfy what
 * safetensors.h promises: tensors sorted and contiguous from 0, every byte
 * range inside the file, lengths that match shape x dtype, unique names
 * without NUL.  And it must survive a round trip through the writer: the
 * header lx_st_layout_build makes for the same tensors and metadata, followed
 * by the same data bytes, parses back to the same tensors.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "fuzz_header: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort(); \
        } \
    } while (0)

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_accepted(const lx_st_header *h, const uint8_t *data, size_t size)
{
    CHECK(h->data_start == 8 + h->header_len);
    CHECK(h->data_start <= size);
    uint64_t expect = 0;
    char **names = malloc((h->ntensors ? h->ntensors : 1) * sizeof *names);
    CHECK(names);
    for (size_t i = 0; i < h->ntensors; i++) {
        const lx_st_tensor *t = &h->tensors[i];
        CHECK(t->name);
        CHECK(t->begin == expect && t->end >= t->begin);
        CHECK(t->ndim >= 0 && t->ndim <= LX_MAX_NDIM);
        CHECK((unsigned)t->dtype < LX_DT_COUNT);
        uint64_t nelem = 1;
        for (int k = 0; k < t->ndim; k++)
            nelem *= t->shape[k];
        CHECK(nelem == t->nelem);
        CHECK((t->end - t->begin) * 8 == t->nelem * lx_dtype_bits(t->dtype));
        CHECK(h->data_start + t->end <= size);
        expect = t->end;
        names[i] = t->name;
        /* the escaper, with every small buffer size */
        char q[16];
        for (size_t len = 1; len <= sizeof q; len++)
            CHECK(strlen(lx_st_escape_name(t->name, q, len)) < len);
    }
    CHECK(h->data_start + expect == size);
    qsort(names, h->ntensors, sizeof *names, by_name);
    for (size_t i = 1; i < h->ntensors; i++)
        CHECK(strcmp(names[i - 1], names[i]) != 0);
    free(names);
    for (size_t i = 0; i < h->nmeta; i++)
        CHECK(h->meta_keys[i] && h->meta_values[i]);
}

/* Rewrite the header with the writer and parse the result again. */
static void check_round_trip(const lx_st_header *h, const uint8_t *data, size_t size)
{
    lx_st_entry *e = calloc(h->ntensors ? h->ntensors : 1, sizeof *e);
    CHECK(e);
    for (size_t i = 0; i < h->ntensors; i++) {
        e[i].name = h->tensors[i].name;
        e[i].dtype = h->tensors[i].dtype;
        e[i].ndim = h->tensors[i].ndim;
        memcpy(e[i].shape, h->tensors[i].shape, sizeof e[i].shape);
    }
    lx_st_layout L;
    lx_status st = lx_st_layout_build(&L, e, h->ntensors, (const char *const *)h->meta_keys,
                                      (const char *const *)h->meta_values, h->nmeta);
    if (st != LX_OK) {
        fprintf(stderr, "fuzz_header: the writer refuses what the reader accepted: %s\n",
                lx_errmsg());
        abort();
    }
    uint64_t data_len = size - h->data_start;
    CHECK(L.file_size == L.header_size + data_len);
    unsigned char *file = malloc(L.file_size ? L.file_size : 1);
    CHECK(file);
    memcpy(file, L.header, L.header_size);
    memcpy(file + L.header_size, data + h->data_start, data_len);
    lx_st_header h2;
    st = lx_st_parse(file, L.file_size, "round-trip", &h2);
    if (st != LX_OK) {
        fprintf(stderr, "fuzz_header: the writer's header does not parse: %s\n", lx_errmsg());
        abort();
    }
    CHECK(h2.ntensors == h->ntensors && h2.nmeta == h->nmeta);
    for (size_t i = 0; i < h->ntensors; i++) {
        const lx_st_tensor *a = &h->tensors[i], *b = &h2.tensors[i];
        CHECK(strcmp(a->name, b->name) == 0);
        CHECK(a->dtype == b->dtype && a->ndim == b->ndim);
        CHECK(memcmp(a->shape, b->shape, sizeof a->shape) == 0);
        CHECK(a->begin == b->begin && a->end == b->end);
    }
    for (size_t i = 0; i < h->nmeta; i++)
        CHECK(!strcmp(h->meta_keys[i], h2.meta_keys[i]) &&
              !strcmp(h->meta_values[i], h2.meta_values[i]));
    lx_st_header_free(&h2);
    free(file);
    lx_st_layout_free(&L);
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_st_header h;
    lx_status st = lx_st_parse(data, size, "fuzz.safetensors", &h);
    if (st != LX_OK) {
        /* an input rejected names the file; nothing is left to free */
        CHECK(st != LX_EINPUT || strstr(lx_errmsg(), "fuzz.safetensors") != NULL);
        CHECK(h.ntensors == 0 && h.tensors == NULL && h.nmeta == 0);
        return 0;
    }
    check_accepted(&h, data, size);
    check_round_trip(&h, data, size);
    lx_st_header_free(&h);
    return 0;
}

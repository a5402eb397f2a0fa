/* fuzz_index.c - libFuzzer target: the input bytes are a
 * model.safetensors.index.json, given to lx_index_parse.
 *
 * An accepted index must keep what checkpoint.h promises: every shard name a
 * plain file name (no '/', not "." or ".."), tensor names unique and without
 * NUL.  The bytes are passed without a terminating NUL, as a mapping would be.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "fuzz_index: invariant failed: %s (line %d)\n", #cond, __LINE__); \
            abort(); \
        } \
    } while (0)

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly `size` bytes, so that ASan sees any read past them */
    char *json = malloc(size ? size : 1);
    CHECK(json);
    memcpy(json, data, size);
    lx_index ix;
    lx_status st = lx_index_parse(json, size, "fuzz.index.json", &ix);
    free(json);
    if (st != LX_OK) {
        CHECK(st != LX_EINPUT || strstr(lx_errmsg(), "fuzz.index.json") != NULL);
        CHECK(ix.n == 0 && ix.tensor_names == NULL && ix.shard_names == NULL);
        return 0;
    }
    char **sorted = malloc((ix.n ? ix.n : 1) * sizeof *sorted);
    CHECK(sorted);
    for (size_t i = 0; i < ix.n; i++) {
        const char *s = ix.shard_names[i];
        CHECK(s && *s && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, ".."));
        CHECK(lx_is_plain_filename(s));
        CHECK(ix.tensor_names[i]);
        sorted[i] = ix.tensor_names[i];
    }
    qsort(sorted, ix.n, sizeof *sorted, by_name);
    for (size_t i = 1; i < ix.n; i++)
        CHECK(strcmp(sorted[i - 1], sorted[i]) != 0);
    free(sorted);
    lx_index_free(&ix);
    return 0;
}

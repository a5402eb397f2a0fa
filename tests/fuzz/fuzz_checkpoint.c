/* fuzz_checkpoint.c - libFuzzer target: the input is a whole checkpoint
 * directory, written to a private temporary directory and opened with
 * lx_checkpoint_open.
 *
 * Input layout: parts separated by "--lxpart--" (see checkpoint.dict).
 *   one part:   the file model.safetensors (opened as a directory, then as
 *               a file path);
 *   2+ parts:   part 0 is model.safetensors.index.json (none if empty: the
 *               shards are then loose files), parts 1..K are the shards
 *               model-0000k-of-0000K.safetensors.
 * An opened checkpoint must keep checkpoint.h's promises: every tensor's
 * bytes inside its shard's mapping (both ends are read), lookups that find
 * each tensor, totals that add up.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/checkpoint.h"
#include "loxstream/fs.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "fuzz_checkpoint: invariant failed: %s (line %d)\n", #cond, \
                    __LINE__); \
            abort(); \
        } \
    } while (0)

#define SEP "--lxpart--"
#define MAX_PARTS 8

static char dir[64];
static int verbose;                /* LX_FUZZ_VERBOSE=1: print each outcome (triage) */

/* Remove every file of the directory (it holds only what we wrote). */
static void clear_dir(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = lx_path_join(dir, e->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
}

static void cleanup(void)
{
    clear_dir();
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* tmpfs when there is one: every execution writes its files */
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/lx-fuzz-ckpt-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("fuzz_checkpoint: mkdtemp");
        abort();
    }
    atexit(cleanup);
    verbose = getenv("LX_FUZZ_VERBOSE") != NULL;
    return 0;
}

static void write_file(const char *name, const uint8_t *p, size_t len)
{
    char *path = lx_path_join(dir, name);
    CHECK(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(lx_write_all(fd, p, len, path) == LX_OK);
    close(fd);
    free(path);
}

static void check_opened(const lx_checkpoint *ck)
{
    uint64_t bytes = 0, params = 0;
    for (size_t i = 0; i < ck->ntensors; i++) {
        const lx_tensor *t = &ck->tensors[i];
        CHECK(t->shard < ck->nshards);
        const lx_shard *s = &ck->shards[t->shard];
        CHECK(lx_is_plain_filename(s->name));
        CHECK(t->offset >= s->header.data_start);
        CHECK(t->offset <= s->size && t->nbytes <= s->size - t->offset);
        if (t->nbytes) {
            CHECK(t->data == s->map + t->offset);
            volatile const unsigned char *p = t->data;
            (void)p[0];
            (void)p[t->nbytes - 1];
        }
        CHECK(lx_checkpoint_find(ck, t->name) == t);
        bytes += t->nbytes;
        params += t->nelem;
    }
    CHECK(bytes == ck->total_bytes && params == ck->total_params);
    CHECK(lx_checkpoint_find(ck, "\x01 no such tensor") == NULL);
}

static void open_and_check(const char *path)
{
    lx_checkpoint *ck = NULL;
    lx_status st = lx_checkpoint_open(path, &ck);
    if (verbose)
        fprintf(stderr, "fuzz_checkpoint: %d %s\n", (int)st,
                st == LX_OK ? "opened" : lx_errmsg());
    if (st != LX_OK) {
        CHECK(ck == NULL);
        CHECK(*lx_errmsg() != '\0');
        return;
    }
    check_opened(ck);
    lx_checkpoint_close(ck);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *part[MAX_PARTS];
    size_t len[MAX_PARTS], n = 0;
    const size_t sl = strlen(SEP);
    const uint8_t *at = data, *end = data + size;
    while (n < MAX_PARTS - 1) {
        const uint8_t *sep = memmem(at, (size_t)(end - at), SEP, sl);
        if (!sep)
            break;
        part[n] = at;
        len[n++] = (size_t)(sep - at);
        at = sep + sl;
    }
    part[n] = at;
    len[n++] = (size_t)(end - at);

    clear_dir();
    if (n == 1) {
        write_file("model.safetensors", part[0], len[0]);
        open_and_check(dir);
        char *file = lx_path_join(dir, "model.safetensors");
        CHECK(file);
        open_and_check(file);
        free(file);
        return 0;
    }
    if (len[0])
        write_file("model.safetensors.index.json", part[0], len[0]);
    for (size_t k = 1; k < n; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k, n - 1);
        write_file(name, part[k], len[k]);
    }
    open_and_check(dir);
    return 0;
}

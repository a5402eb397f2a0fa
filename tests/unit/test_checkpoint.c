/* test_checkpoint.c - opening checkpoints (file, sharded directory with an
 * index, model.safetensors, loose files), the index parser and writer, the
 * cross-checks, and the name lookup.
 *
 * The files are written by hand here (8-byte length, JSON, data), so the
 * expectations do not come from the code under test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "loxstream/checkpoint.h"
#include "tmpdir.h"

/* ---- fixtures -------------------------------------------------------- */

static char *path_in(const char *sub, const char *name)
{
    static char buf[16][512]; /* a few may be alive at once */
    static int k;
    char *p = buf[k++ % 16];
    if (name)
        snprintf(p, 512, "%s/%s/%s", tmpdir_root(), sub, name);
    else
        snprintf(p, 512, "%s/%s", tmpdir_root(), sub);
    return p;
}

static void make_dir(const char *sub)
{
    assert_int_equal(mkdir(path_in(sub, NULL), 0777), 0);
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A safetensors file: header json, then data_len bytes where byte i of the
 * data buffer is (i + seed) & 0xff, so tensor data can be checked. */
static void write_st(const char *path, const char *json, size_t data_len, unsigned seed)
{
    size_t n = strlen(json);
    unsigned char *b = malloc(8 + n + data_len);
    assert_non_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < data_len; i++)
        b[8 + n + i] = (unsigned char)((i + seed) & 0xff);
    write_bytes(path, b, 8 + n + data_len);
    free(b);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

#define T_A "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}"
#define SHARD1                                                                               \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                                 \
    "\"layer.1\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[16,22]},"               \
    "\"layer.0\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"               \
    "\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[22,30]}}"
#define SHARD2                                                                               \
    "{\"empty\":{\"dtype\":\"F16\",\"shape\":[2,0],\"data_offsets\":[0,0]},"                 \
    "\"head\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":[0,5]}}"
#define S1 "model-00001-of-00002.safetensors"
#define S2 "model-00002-of-00002.safetensors"
#define INDEX_OK                                                                             \
    "{\"metadata\":{\"total_size\":35},\"weight_map\":{"                                     \
    "\"head\":\"" S2 "\",\"layer.0\":\"" S1 "\",\"scalar\":\"" S1 "\","                    \
    "\"empty\":\"" S2 "\",\"layer.1\":\"" S1 "\"}}"

static lx_status open_expect(const char *path, lx_status want, const char *msg_part)
{
    lx_checkpoint *ck = (lx_checkpoint *)1;
    lx_status st = lx_checkpoint_open(path, &ck);
    if (st != want || (msg_part && !strstr(lx_errmsg(), msg_part)))
        fail_msg("open %s: status %d, message \"%s\"; expected %d and \"%s\"", path, st,
                 lx_errmsg(), want, msg_part ? msg_part : "");
    if (st != LX_OK)
        assert_null(ck);
    return st;
}

/* ---- valid checkpoints ---------------------------------------------- */

static void single_file(void **state)
{
    (void)state;
    make_dir("single");
    const char *json = T_A ",\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}";
    const char *p = path_in("single", "w.safetensors");
    write_st(p, json, 19, 7);
    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(p, &ck), LX_OK);
    assert_string_equal(ck->path, p);
    assert_string_equal(ck->dir, path_in("single", NULL));
    assert_int_equal(ck->has_index, 0);
    assert_int_equal(ck->nshards, 1);
    assert_string_equal(ck->shards[0].name, "w.safetensors");
    assert_string_equal(ck->shards[0].path, p);
    assert_int_equal(ck->shards[0].size, 8 + strlen(json) + 19);
    /* identity: XXH3 of the 8-byte length and the JSON as written */
    size_t n = strlen(json);
    unsigned char head[512];
    for (int i = 0; i < 8; i++)
        head[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(head + 8, json, n);
    assert_true(ck->shards[0].header_xxh3 == XXH3_64bits(head, 8 + n));
    assert_int_equal(ck->ntensors, 2);
    assert_int_equal(ck->total_bytes, 19);
    assert_int_equal(ck->total_params, 7);
    const lx_tensor *b = lx_checkpoint_find(ck, "b");
    assert_non_null(b);
    assert_ptr_equal(b, &ck->tensors[1]);
    assert_int_equal(b->dtype, LX_DT_U8);
    assert_int_equal(b->nbytes, 3);
    assert_int_equal(b->offset, 8 + n + 16);
    /* data points at the bytes written: (16 + seed 7) ... */
    assert_int_equal(b->data[0], 23);
    assert_int_equal(b->data[2], 25);
    assert_int_equal(ck->tensors[0].data[0], 7);
    assert_null(lx_checkpoint_find(ck, "c"));
    assert_null(lx_checkpoint_find(ck, ""));
    lx_checkpoint_close(ck);
}

static void sharded_with_index(void **state)
{
    (void)state;
    make_dir("sharded");
    write_st(path_in("sharded", S2), SHARD2, 5, 100);
    write_st(path_in("sharded", S1), SHARD1, 30, 0);
    write_text(path_in("sharded", "model.safetensors.index.json"), INDEX_OK);
    /* ignored when there is an index */
    write_text(path_in("sharded", "config.json"), "{}");
    write_st(path_in("sharded", "stray.txt"), T_A "}", 16, 0);

    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(path_in("sharded", NULL), &ck), LX_OK);
    assert_int_equal(ck->has_index, 1);
    assert_int_equal(ck->nshards, 2);
    assert_string_equal(ck->shards[0].name, S1);
    assert_string_equal(ck->shards[1].name, S2);
    assert_string_equal(ck->shards[0].path, path_in("sharded", S1));
    assert_int_equal(ck->shards[0].header.nmeta, 1);
    /* shard order, then offset order; the tie at offset 0 of shard 2 is
     * broken by name ("empty" < "head") */
    static const char *order[] = {"layer.0", "layer.1", "scalar", "empty", "head"};
    static const uint32_t shard_of[] = {0, 0, 0, 1, 1};
    static const uint64_t nbytes[] = {16, 6, 8, 0, 5};
    assert_int_equal(ck->ntensors, 5);
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(ck->tensors[i].name, order[i]);
        assert_int_equal(ck->tensors[i].shard, shard_of[i]);
        assert_int_equal(ck->tensors[i].nbytes, nbytes[i]);
        assert_ptr_equal(lx_checkpoint_find(ck, order[i]), &ck->tensors[i]);
    }
    assert_int_equal(ck->total_bytes, 35);
    assert_int_equal(ck->total_params, 4 + 3 + 1 + 0 + 5);
    const lx_tensor *s = lx_checkpoint_find(ck, "scalar");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->nelem, 1);
    assert_int_equal(s->offset, 8 + strlen(SHARD1) + 22);
    assert_int_equal(s->data[0], 22);
    const lx_tensor *e = lx_checkpoint_find(ck, "empty");
    assert_null(e->data);
    assert_int_equal(e->shape[0], 2);
    assert_int_equal(e->shape[1], 0);
    assert_int_equal(lx_checkpoint_find(ck, "head")->data[4], 104);
    lx_checkpoint_close(ck);
}

static void single_model_file_in_dir(void **state)
{
    (void)state;
    make_dir("one");
    write_st(path_in("one", "model.safetensors"), T_A "}", 16, 0);
    /* model.safetensors wins over loose files */
    write_st(path_in("one", "other.safetensors"), "{\"x\":1}", 0, 0);
    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(path_in("one", NULL), &ck), LX_OK);
    assert_int_equal(ck->has_index, 0);
    assert_int_equal(ck->nshards, 1);
    assert_string_equal(ck->shards[0].name, "model.safetensors");
    assert_int_equal(ck->ntensors, 1);
    assert_non_null(lx_checkpoint_find(ck, "a"));
    lx_checkpoint_close(ck);
}

static void loose_files_sorted(void **state)
{
    (void)state;
    make_dir("loose");
    write_st(path_in("loose", "b.safetensors"), "{\"z\":{\"dtype\":\"U8\",\"shape\":[1],"
             "\"data_offsets\":[0,1]}}", 1, 0);
    write_st(path_in("loose", "a.safetensors"), "{\"y\":{\"dtype\":\"U8\",\"shape\":[2],"
             "\"data_offsets\":[0,2]}}", 2, 0);
    /* not shards: macOS "._" files, other suffixes */
    write_text(path_in("loose", "._a.safetensors"), "garbage");
    write_text(path_in("loose", "notes.safetensors.txt"), "garbage");
    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(path_in("loose", NULL), &ck), LX_OK);
    assert_int_equal(ck->nshards, 2);
    assert_string_equal(ck->shards[0].name, "a.safetensors");
    assert_string_equal(ck->shards[1].name, "b.safetensors");
    assert_string_equal(ck->tensors[0].name, "y");
    assert_string_equal(ck->tensors[1].name, "z");
    assert_int_equal(lx_checkpoint_find(ck, "z")->shard, 1);
    lx_checkpoint_close(ck);
}

/* ---- rejected checkpoints ----------------------------------------- */

/* A sharded directory from the two good shards and the given index. */
static const char *sharded_dir(const char *sub, const char *index)
{
    make_dir(sub);
    write_st(path_in(sub, S1), SHARD1, 30, 0);
    write_st(path_in(sub, S2), SHARD2, 5, 0);
    write_text(path_in(sub, "model.safetensors.index.json"), index);
    return path_in(sub, NULL);
}

static void reject_index_missing_shard(void **state)
{
    (void)state;
    const char *d = sharded_dir("missing", "{\"weight_map\":{\"layer.0\":\"" S1 "\","
                                "\"head\":\"model-00003-of-00002.safetensors\"}}");
    char want[600];
    snprintf(want, sizeof want, "%s/model-00003-of-00002.safetensors: shard "
             "'model-00003-of-00002.safetensors' (listed for tensor 'head'): No such file", d);
    open_expect(d, LX_EINPUT, want);
}

static void reject_index_tensor_not_in_shard(void **state)
{
    (void)state;
    /* "head" is in shard 2, the index says shard 1 */
    const char *d = sharded_dir("wrongshard", "{\"weight_map\":{\"head\":\"" S1 "\","
                                "\"layer.0\":\"" S1 "\",\"layer.1\":\"" S1 "\",\"scalar\":\"" S1 "\","
                                "\"empty\":\"" S2 "\"}}");
    open_expect(d, LX_EINPUT, "model.safetensors.index.json: tensor 'head': listed in shard '" S1
                "', which does not hold it (it is in '" S2 "')");
    /* a tensor that no shard holds */
    d = sharded_dir("ghost", "{\"weight_map\":{\"head\":\"" S2 "\",\"layer.0\":\"" S1 "\","
                    "\"layer.1\":\"" S1 "\",\"scalar\":\"" S1 "\",\"empty\":\"" S2 "\","
                    "\"lm_head.weight\":\"" S2 "\"}}");
    open_expect(d, LX_EINPUT, "model.safetensors.index.json: tensor 'lm_head.weight': listed in "
                "shard '" S2 "', which does not hold it");
}

static void reject_unlisted_tensor(void **state)
{
    (void)state;
    /* "scalar" is in shard 1 but not in the index */
    const char *d = sharded_dir("unlisted", "{\"weight_map\":{\"head\":\"" S2 "\","
                                "\"layer.0\":\"" S1 "\",\"layer.1\":\"" S1 "\",\"empty\":\"" S2 "\"}}");
    char want[600];
    snprintf(want, sizeof want, "%s/" S1 ": tensor 'scalar': not listed in the index %s/"
             "model.safetensors.index.json", d, d);
    open_expect(d, LX_EINPUT, want);
}

static void reject_duplicate_across_shards(void **state)
{
    (void)state;
    make_dir("dup");
    write_st(path_in("dup", "a.safetensors"), T_A "}", 16, 0);
    write_st(path_in("dup", "b.safetensors"), T_A "}", 16, 0);
    char want[600];
    snprintf(want, sizeof want, "tensor 'a' is in two shards: %s and %s",
             path_in("dup", "a.safetensors"), path_in("dup", "b.safetensors"));
    open_expect(path_in("dup", NULL), LX_EINPUT, want);
    /* with an index, the name cannot be listed twice */
    make_dir("dupix");
    write_st(path_in("dupix", "a.safetensors"), T_A "}", 16, 0);
    write_st(path_in("dupix", "b.safetensors"), T_A "}", 16, 0);
    write_text(path_in("dupix", "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"a.safetensors\",\"a\":\"b.safetensors\"}}");
    open_expect(path_in("dupix", NULL), LX_EINPUT, "duplicate object key near '\"a\"'");
    /* listing it once still finds it in two shards */
    write_text(path_in("dupix", "model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"a.safetensors\",\"x\":\"b.safetensors\"}}");
    open_expect(path_in("dupix", NULL), LX_EINPUT, "tensor 'a' is in two shards");
}

static void reject_unsafe_shard_names(void **state)
{
    (void)state;
    static const char *bad[] = {"../" S1, "sub/" S1, "..", ".", "/etc/passwd", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char sub[32], index[256], want[256];
        snprintf(sub, sizeof sub, "unsafe%zu", i);
        snprintf(index, sizeof index, "{\"weight_map\":{\"layer.0\":\"%s\"}}", bad[i]);
        snprintf(want, sizeof want, "model.safetensors.index.json: weight_map: tensor 'layer.0': "
                 "shard name '%s' is not a plain file name", bad[i]);
        open_expect(sharded_dir(sub, index), LX_EINPUT, want);
    }
}

static void reject_bad_index(void **state)
{
    (void)state;
    open_expect(sharded_dir("ix1", "{\"weight_map\":"), LX_EINPUT,
                "model.safetensors.index.json: not valid JSON");
    open_expect(sharded_dir("ix2", "{\"weight_map\":[]}"), LX_EINPUT,
                "model.safetensors.index.json: weight_map is not an object");
    open_expect(sharded_dir("ix3", "{\"metadata\":{}}"), LX_EINPUT,
                "model.safetensors.index.json: no \"weight_map\"");
    open_expect(sharded_dir("ix4", "{\"weight_map\":{}}"), LX_EINPUT,
                "model.safetensors.index.json: weight_map lists no tensors");
    open_expect(sharded_dir("ix5", "{\"weight_map\":{\"a\":1}}"), LX_EINPUT,
                "weight_map: tensor 'a': shard is 1, expected a string");
}

static void reject_no_safetensors(void **state)
{
    (void)state;
    make_dir("nothing");
    write_text(path_in("nothing", "config.json"), "{}");
    write_text(path_in("nothing", "model.bin"), "x");
    char want[600];
    snprintf(want, sizeof want, "%s: no model.safetensors.index.json, model.safetensors or "
             "*.safetensors file in this directory", path_in("nothing", NULL));
    open_expect(path_in("nothing", NULL), LX_EINPUT, want);
}

static void reject_bad_shard_names_the_file(void **state)
{
    (void)state;
    make_dir("badshard");
    write_st(path_in("badshard", "a.safetensors"), T_A "}", 16, 0);
    write_st(path_in("badshard", "b.safetensors"), T_A "}", 15, 0); /* one byte short */
    char want[600];
    snprintf(want, sizeof want, "%s: file is", path_in("badshard", "b.safetensors"));
    open_expect(path_in("badshard", NULL), LX_EINPUT, want);
    open_expect(path_in("badshard", NULL), LX_EINPUT, "truncated (1 bytes missing)");
    /* an empty file: no mapping, still rejected */
    write_text(path_in("badshard", "c.safetensors"), "");
    open_expect(path_in("badshard", "c.safetensors"), LX_EINPUT,
                "c.safetensors: file is 0 bytes, shorter than the 8-byte header length");
}

static void reject_missing_and_special_paths(void **state)
{
    (void)state;
    open_expect(path_in("does-not-exist", NULL), LX_EFAIL, "cannot open: No such file or directory");
    const char *fifo = path_in("fifo", NULL);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    open_expect(fifo, LX_EINPUT, "not a safetensors file or a directory");
    /* a directory named like a shard */
    make_dir("dirshard");
    make_dir("dirshard/x.safetensors");
    open_expect(path_in("dirshard", NULL), LX_EINPUT, "x.safetensors: not a regular file");
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* Mappings of files whose path contains `part`. */
static int count_maps(const char *part)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, part) != NULL;
    fclose(f);
    return n;
}

/* On failure after two good shards were mapped, nothing stays open or mapped. */
static void failure_releases_everything(void **state)
{
    (void)state;
    make_dir("leak");
    write_st(path_in("leak", "a.safetensors"), T_A "}", 16, 0);
    write_st(path_in("leak", "b.safetensors"), "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],"
             "\"data_offsets\":[0,1]}}", 1, 0);
    write_st(path_in("leak", "c.safetensors"), T_A "}", 16, 0); /* duplicate of a */
    int fds = count_entries("/proc/self/fd");
    assert_int_equal(count_maps("/leak/"), 0);
    for (int i = 0; i < 50; i++)
        open_expect(path_in("leak", NULL), LX_EINPUT, "tensor 'a' is in two shards");
    assert_int_equal(count_entries("/proc/self/fd"), fds);
    assert_int_equal(count_maps("/leak/"), 0);
    /* a success keeps one descriptor per shard (lx_tensor_release) and its
     * mappings, until it is closed */
    unlink(path_in("leak", "c.safetensors"));
    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(path_in("leak", NULL), &ck), LX_OK);
    assert_int_equal(count_entries("/proc/self/fd"), fds + 2);
    assert_int_equal(count_maps("/leak/"), 2);
    lx_checkpoint_close(ck);
    assert_int_equal(count_entries("/proc/self/fd"), fds);
    assert_int_equal(count_maps("/leak/"), 0);
}

/* ---- the index on its own ----------------------------------------- */

static void index_parse_valid(void **state)
{
    (void)state;
    const char *j = INDEX_OK;
    lx_index ix;
    assert_int_equal(lx_index_parse(j, strlen(j), "i.json", &ix), LX_OK);
    assert_int_equal(ix.has_total_size, 1);
    assert_int_equal(ix.total_size, 35);
    assert_int_equal(ix.n, 5);
    /* file order */
    assert_string_equal(ix.tensor_names[0], "head");
    assert_string_equal(ix.shard_names[0], S2);
    assert_string_equal(ix.tensor_names[4], "layer.1");
    assert_string_equal(ix.shard_names[4], S1);
    lx_index_free(&ix);
    assert_int_equal(ix.n, 0);

    /* no metadata; other metadata fields; an integral real total_size */
    j = "{\"weight_map\":{\"a\":\"x.safetensors\"}}";
    assert_int_equal(lx_index_parse(j, strlen(j), "i.json", &ix), LX_OK);
    assert_int_equal(ix.has_total_size, 0);
    assert_int_equal(ix.n, 1);
    lx_index_free(&ix);
    j = "{\"metadata\":{\"total_parameters\":3,\"total_size\":12.0},\"weight_map\":{}}";
    assert_int_equal(lx_index_parse(j, strlen(j), "i.json", &ix), LX_OK);
    assert_int_equal(ix.has_total_size, 1);
    assert_int_equal(ix.total_size, 12);
    assert_int_equal(ix.n, 0);
    lx_index_free(&ix);
}

static void index_expect(const char *j, const char *want)
{
    lx_index ix;
    lx_status st = lx_index_parse(j, strlen(j), "i.json", &ix);
    if (st != LX_EINPUT || strncmp(lx_errmsg(), "i.json: ", 8) != 0 || !strstr(lx_errmsg(), want))
        fail_msg("%s: status %d, message \"%s\"; expected \"%s\"", j, st, lx_errmsg(), want);
    assert_int_equal(ix.n, 0);
    assert_null(ix.tensor_names);
}

static void index_parse_rejects(void **state)
{
    (void)state;
    index_expect("[]", "expected a JSON object");
    index_expect("{\"weight_map\":{}} x", "not valid JSON");
    index_expect("{\"metadata\":[],\"weight_map\":{}}", "metadata is not an object");
    index_expect("{\"metadata\":{\"total_size\":-1},\"weight_map\":{}}",
                 "metadata.total_size is -1, expected a non-negative integer");
    index_expect("{\"metadata\":{\"total_size\":\"35\"},\"weight_map\":{}}",
                 "metadata.total_size is \"35\", expected a non-negative integer");
    index_expect("{\"metadata\":{\"total_size\":1.5},\"weight_map\":{}}",
                 "metadata.total_size is 1.5, expected a non-negative integer");
    index_expect("{\"weight_map\":{\"a\":\"x\",\"b\":[\"y\"]}}",
                 "weight_map: tensor 'b': shard is [\"y\"], expected a string");
    index_expect("{\"weight_map\":{\"a\":\"x\\u0000y\"}}",
                 "weight_map: tensor 'a': shard name 'x' contains a NUL byte");
    index_expect("{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", "duplicate object key near '\"a\"'");
    index_expect("{\"weight_map\":{\"a\":\"..\"}}",
                 "tensor 'a': shard name '..' is not a plain file name");
}

static void plain_filename(void **state)
{
    (void)state;
    assert_true(lx_is_plain_filename("model-00001-of-00002.safetensors"));
    assert_true(lx_is_plain_filename("a..b"));
    assert_true(lx_is_plain_filename("...")); /* a name, not a parent reference */
    assert_true(lx_is_plain_filename(".hidden"));
    assert_false(lx_is_plain_filename(""));
    assert_false(lx_is_plain_filename(NULL));
    assert_false(lx_is_plain_filename("."));
    assert_false(lx_is_plain_filename(".."));
    assert_false(lx_is_plain_filename("a/b"));
    assert_false(lx_is_plain_filename("../a"));
    assert_false(lx_is_plain_filename("/a"));
    assert_false(lx_is_plain_filename("a/"));
}

static void index_write_as_transformers(void **state)
{
    (void)state;
    const char *names[] = {"b.weight", "a.weight", "\xc3\xa9"};
    const char *shards[] = {"model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
                            "model-00001-of-00002.safetensors"};
    const char *p = path_in("index.json", NULL);
    assert_int_equal(lx_index_write(p, 123, 3, names, shards), LX_OK);
    /* what python's json.dumps(index, indent=2, sort_keys=True) + "\n" gives,
     * but for the case of the hex digits of \u escapes */
    static const char want[] =
        "{\n  \"metadata\": {\n    \"total_size\": 123\n  },\n  \"weight_map\": {\n"
        "    \"a.weight\": \"model-00001-of-00002.safetensors\",\n"
        "    \"b.weight\": \"model-00002-of-00002.safetensors\",\n"
        "    \"\\u00e9\": \"model-00001-of-00002.safetensors\"\n  }\n}\n";
    char got[1024];
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    for (char *c = strstr(got, "\\u"); c; c = strstr(c + 2, "\\u"))
        for (int k = 2; k < 6 && c[k]; k++)
            if (c[k] >= 'A' && c[k] <= 'F')
                c[k] = (char)(c[k] - 'A' + 'a');
    assert_string_equal(got, want);
    /* and it reads back */
    lx_index ix;
    assert_int_equal(lx_index_parse(got, n, p, &ix), LX_OK);
    assert_int_equal(ix.total_size, 123);
    assert_int_equal(ix.n, 3);
    assert_string_equal(ix.tensor_names[2], "\xc3\xa9");
    lx_index_free(&ix);
    /* no temporary left behind */
    struct stat sb;
    assert_int_not_equal(stat(path_in("index.json.tmp", NULL), &sb), 0);
    /* a name twice is refused */
    const char *dn[] = {"a", "a"};
    assert_int_equal(lx_index_write(p, 0, 2, dn, shards), LX_EFAIL);
    assert_non_null(strstr(lx_errmsg(), "tensor 'a' listed twice"));
}

/* ---- scale ------------------------------------------------------------ */

/* 100k tensors across two shards, built by hand; every name is found at its
 * place, near misses are not. */
static void lookup_100k(void **state)
{
    (void)state;
    enum { N = 100000 };
    make_dir("big");
    for (int s = 0; s < 2; s++) {
        size_t cap = (size_t)N * 96, at = 0;
        char *json = malloc(cap);
        assert_non_null(json);
        json[at++] = '{';
        for (int i = s; i < N; i += 2) /* U8 [1]: tensor i at byte i/2 */
            at += (size_t)snprintf(json + at, cap - at,
                                   "%s\"model.layers.%d.mlp.w\":{\"dtype\":\"U8\",\"shape\":[1],"
                                   "\"data_offsets\":[%d,%d]}",
                                   i > 1 ? "," : "", i, i / 2, i / 2 + 1);
        json[at++] = '}';
        json[at] = '\0';
        write_st(path_in("big", s ? "s1.safetensors" : "s0.safetensors"), json, N / 2, 0);
        free(json);
    }
    lx_checkpoint *ck;
    assert_int_equal(lx_checkpoint_open(path_in("big", NULL), &ck), LX_OK);
    assert_int_equal(ck->ntensors, N);
    for (int i = 0; i < N; i++) {
        char name[64];
        snprintf(name, sizeof name, "model.layers.%d.mlp.w", i);
        const lx_tensor *t = lx_checkpoint_find(ck, name);
        if (!t || t != &ck->tensors[(i % 2) * (N / 2) + i / 2])
            fail_msg("%s: found %p", name, (const void *)t);
        assert_int_equal(t->shard, (uint32_t)(i % 2));
        snprintf(name, sizeof name, "model.layers.%d.mlp.W", i);
        assert_null(lx_checkpoint_find(ck, name));
    }
    lx_checkpoint_close(ck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_file),
        cmocka_unit_test(sharded_with_index),
        cmocka_unit_test(single_model_file_in_dir),
        cmocka_unit_test(loose_files_sorted),
        cmocka_unit_test(reject_index_missing_shard),
        cmocka_unit_test(reject_index_tensor_not_in_shard),
        cmocka_unit_test(reject_unlisted_tensor),
        cmocka_unit_test(reject_duplicate_across_shards),
        cmocka_unit_test(reject_unsafe_shard_names),
        cmocka_unit_test(reject_bad_index),
        cmocka_unit_test(reject_no_safetensors),
        cmocka_unit_test(reject_bad_shard_names_the_file),
        cmocka_unit_test(reject_missing_and_special_paths),
        cmocka_unit_test(failure_releases_everything),
        cmocka_unit_test(index_parse_valid),
        cmocka_unit_test(index_parse_rejects),
        cmocka_unit_test(plain_filename),
        cmocka_unit_test(index_write_as_transformers),
        cmocka_unit_test(lookup_100k),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

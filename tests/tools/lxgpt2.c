/* lxgpt2 - test helper: GPT-2-style checkpoints, whose linear layers are
 * transformers' Conv1D, weights stored [in, out].
 *
 *   lxgpt2 synth DIR SEED
 *       DIR/base and DIR/aligned, each model.safetensors (F32) and a
 *       config.json with model_type gpt2: two blocks of hidden size 48, as
 *       GPT2LMHeadModel saves them (transformer.wte/wpe embeddings,
 *       h.N.attn.c_attn [48, 144], attn.c_proj [48, 48], mlp.c_fc [48, 192],
 *       mlp.c_proj [192, 48], layer norms and biases; the head tied to wte,
 *       not stored).  aligned = base + a planted update of decaying spectrum
 *       (s_k = 2^-k, k < 10) on every 2-D weight.
 *   lxgpt2 conv1d ADAPTER REGEX OUT
 *       OUT.safetensors: for every module of the PEFT adapter file ADAPTER
 *       whose name matches REGEX, its merged weight in Conv1D layout,
 *       W[i][o] = sum_t B[o][t] A[t][i] (PEFT's transpose(B @ A) for
 *       fan_in_fan_out), named <module>.weight without base_model.model.
 *
 * The files are written here byte by byte (header by jansson), not by
 * loxstream's writer.  Exit 0, or 2 on a usage or I/O error.
 */
#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "loxstream/checkpoint.h"
#include "loxstream/dtype.h"

#define D 48
#define V 96
#define P 32
#define LAYERS 2
#define PLANTED 10

typedef struct tensor {
    char name[128];
    uint64_t rows, cols;           /* cols 0: 1-D */
    float *v;
} tensor;

static void die(const char *what)
{
    fprintf(stderr, "lxgpt2: %s\n", what);
    exit(2);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

static uint64_t rng_state;

static double uniform(void) /* [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / (double)(1ull << 52) - 1.0;
}

static void write_file(const char *path, const tensor *t, size_t n)
{
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t bytes = t[i].rows * (t[i].cols ? t[i].cols : 1) * 4;
        json_t *shape = t[i].cols ? json_pack("[I,I]", (json_int_t)t[i].rows, (json_int_t)t[i].cols)
                                  : json_pack("[I]", (json_int_t)t[i].rows);
        json_object_set_new(h, t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", "F32", "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    if (!text)
        die("cannot build the header");
    size_t len = strlen(text), pad = (8 - len % 8) % 8;
    FILE *f = fopen(path, "wb");
    if (!f)
        die(path);
    uint64_t hl = len + pad; /* little-endian on the machines the tests run on */
    fwrite(&hl, 8, 1, f);
    fwrite(text, 1, len, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    for (size_t i = 0; i < n; i++)
        fwrite(t[i].v, 4, t[i].rows * (t[i].cols ? t[i].cols : 1), f);
    free(text);
    if (fclose(f) != 0)
        die(path);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        die(path);
}

static size_t add(tensor *t, size_t n, const char *name, uint64_t rows, uint64_t cols)
{
    snprintf(t[n].name, sizeof t[n].name, "%s", name);
    t[n].rows = rows;
    t[n].cols = cols;
    t[n].v = xcalloc(rows * (cols ? cols : 1), sizeof(float));
    return n + 1;
}

/* DIR/NAME/model.safetensors and its config.json */
static void write_model(const char *dir, const char *name, const tensor *t, size_t n)
{
    const char *config = "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                         "  \"n_embd\": 48,\n  \"n_layer\": 2,\n  \"n_head\": 4,\n"
                         "  \"n_positions\": 32,\n  \"vocab_size\": 96\n}\n";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/%s/model.safetensors", dir, name);
    write_file(path, t, n);
    snprintf(path, sizeof path, "%s/%s/config.json", dir, name);
    write_text(path, config);
}

static int synth(const char *dir, uint64_t seed)
{
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    tensor t[64];
    size_t n = 0;
    char name[128];
    n = add(t, n, "transformer.wte.weight", V, D);
    n = add(t, n, "transformer.wpe.weight", P, D);
    for (int l = 0; l < LAYERS; l++) {
        static const struct { const char *what; uint64_t rows, cols; } parts[] = {
            {"ln_1.weight", D, 0},       {"ln_1.bias", D, 0},
            {"attn.c_attn.weight", D, 3 * D}, {"attn.c_attn.bias", 3 * D, 0},
            {"attn.c_proj.weight", D, D}, {"attn.c_proj.bias", D, 0},
            {"ln_2.weight", D, 0},       {"ln_2.bias", D, 0},
            {"mlp.c_fc.weight", D, 4 * D}, {"mlp.c_fc.bias", 4 * D, 0},
            {"mlp.c_proj.weight", 4 * D, D}, {"mlp.c_proj.bias", D, 0}};
        for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, parts[p].what);
            n = add(t, n, name, parts[p].rows, parts[p].cols);
        }
    }
    n = add(t, n, "transformer.ln_f.weight", D, 0);
    n = add(t, n, "transformer.ln_f.bias", D, 0);
    for (size_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < t[i].rows * (t[i].cols ? t[i].cols : 1); k++)
            t[i].v[k] = (float)(0.1 * uniform());
    mkdir(dir, 0777);
    write_model(dir, "base", t, n);
    /* the planted update: rows x cols = sum_k 2^-k u_k v_k^T */
    for (size_t i = 0; i < n; i++) {
        if (!t[i].cols)
            continue;
        uint64_t r = t[i].rows, c = t[i].cols;
        double *u = xcalloc(r, sizeof *u), *v = xcalloc(c, sizeof *v);
        for (int k = 0; k < PLANTED; k++) {
            for (uint64_t a = 0; a < r; a++)
                u[a] = uniform();
            for (uint64_t b = 0; b < c; b++)
                v[b] = uniform();
            double s = 0.05 / (double)(1u << k);
            for (uint64_t a = 0; a < r; a++)
                for (uint64_t b = 0; b < c; b++)
                    t[i].v[a * c + b] += (float)(s * u[a] * v[b]);
        }
        free(u);
        free(v);
    }
    write_model(dir, "aligned", t, n);
    for (size_t i = 0; i < n; i++)
        free(t[i].v);
    return 0;
}

static int conv1d(const char *adapter, const char *re, const char *out)
{
    regex_t rx;
    if (regcomp(&rx, re, REG_EXTENDED | REG_NOSUB) != 0)
        die("invalid regular expression");
    lx_checkpoint *ad;
    if (lx_checkpoint_open(adapter, &ad) != LX_OK)
        die(adapter);
    tensor *t = xcalloc(ad->ntensors, sizeof *t);
    size_t n = 0;
    const char *pre = "base_model.model.", *sa = ".lora_A.weight";
    for (size_t i = 0; i < ad->ntensors; i++) {
        const lx_tensor *A = &ad->tensors[i];
        size_t len = strlen(A->name);
        if (strncmp(A->name, pre, strlen(pre)) || len < strlen(pre) + strlen(sa) ||
            strcmp(A->name + len - strlen(sa), sa))
            continue;
        char module[256], bname[300];
        snprintf(module, sizeof module, "%.*s", (int)(len - strlen(pre) - strlen(sa)),
                 A->name + strlen(pre));
        snprintf(bname, sizeof bname, "%s%s.lora_B.weight", pre, module);
        const lx_tensor *B = lx_checkpoint_find(ad, bname);
        if (!B || A->ndim != 2 || B->ndim != 2 || B->shape[1] != A->shape[0] ||
            regexec(&rx, module, 0, NULL, 0) != 0)
            continue;
        uint64_t r = A->shape[0], in = A->shape[1], o = B->shape[0];
        float *a = xcalloc(A->nelem, sizeof *a), *b = xcalloc(B->nelem, sizeof *b);
        lx_to_f32(A->dtype, A->data, a, A->nelem);
        lx_to_f32(B->dtype, B->data, b, B->nelem);
        char wname[300];
        snprintf(wname, sizeof wname, "%s.weight", module);
        n = add(t, n, wname, in, o);
        for (uint64_t x = 0; x < in; x++)
            for (uint64_t y = 0; y < o; y++) {
                double s = 0;
                for (uint64_t k = 0; k < r; k++)
                    s += (double)b[y * r + k] * a[k * in + x];
                t[n - 1].v[x * o + y] = (float)s;
            }
        free(a);
        free(b);
    }
    if (n == 0)
        die("no module of the adapter matches");
    write_file(out, t, n);
    for (size_t i = 0; i < n; i++)
        free(t[i].v);
    free(t);
    regfree(&rx);
    lx_checkpoint_close(ad);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "synth"))
        return synth(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 5 && !strcmp(argv[1], "conv1d"))
        return conv1d(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: lxgpt2 synth DIR SEED | lxgpt2 conv1d ADAPTER REGEX OUT\n");
    return 2;
}

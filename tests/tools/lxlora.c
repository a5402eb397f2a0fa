/* lxlora - test helper: checks a `loxstream lora` adapter against an exact SVD.
 *
 *   lxlora [--include RE] [--exclude RE] [--embedding RE] [--dtype T]
 *          [--apply-maxerr E] [--fan-in-fan-out RE] [--no-embeddings]
 *          [--base-model NAME] [--revision REV] [--peft-keys FILE]
 *          [--peft-keys-within FILE]
 *          BASE ALIGNED ADAPTER_DIR RANK ALPHA MAXERR [APPLY_OUTPUT]
 *
 * Independently of loxstream's randomized SVD and of its plan:
 * - the expected modules are the 2-D F16/BF16/F32/F64 tensors of ALIGNED
 *   named "<module>.weight" that exist in BASE (and match --include, not
 *   --exclude); those matching the embedding ERE (default: embed_tokens,
 *   wte, wpe, word_embeddings, position_embeddings, token_type_embeddings,
 *   embed_positions, embed_in) must be stored as
 *   base_model.model.<module>.lora_embedding_A [r, vocab] / _B [dim, r],
 *   the others as base_model.model.<module>.lora_A.weight [r, in] /
 *   lora_B.weight [out, r], where a weight matching --fan-in-fan-out is
 *   stored [in, out] (GPT-2's Conv1D) and the others [out, in]; with
 *   --no-embeddings the embeddings and the heads (lm_head, embed_out) are
 *   not expected; no other tensor may be in the adapter; the
 *   dtype is T, or by default the aligned tensor's (F32 for F64);
 * - adapter_config.json: peft_type LORA, task_type CAUSAL_LM, r = RANK,
 *   lora_alpha = ALPHA * RANK, target_modules = the sorted unique leaf
 *   names of the expected modules, base_model_name_or_path = NAME (default:
 *   the absolute path of ALIGNED), revision REV (default null),
 *   lora_dropout 0, fan_in_fan_out true exactly when a module matches
 *   --fan-in-fan-out, bias "none", use_rslora false, inference_mode true,
 *   modules_to_save null, no "loxstream" key; with --peft-keys the set of
 *   keys is that of FILE (an adapter_config.json PEFT wrote), with
 *   --peft-keys-within a subset of FILE's;
 * - per module, PEFT's merge rule (get_delta_weight) written out:
 *   D = transpose(B A, fan_in_fan_out) * (lora_alpha / r), transposed for
 *   embeddings and for the [in, out] weights, and T the exact rank-RANK
 *   truncation of dW = aligned - base as stored
 *   (full SVD through lx_svd_thin, as lxcheck):
 *       err = ||D - ALPHA * T||_F / ||ALPHA * T||_F       (<= MAXERR)
 * - with APPLY_OUTPUT (a `loxstream apply` output with the same options):
 *       apply_err = ||(out - aligned) - D||_F / ||D||_F   (<= E, default 1e-5)
 * Prints "config<TAB>ok" (or the problems), then "module<TAB>err[<TAB>apply_err]"
 * per module; exits 1 on any failed check, 2 on usage or input errors.
 */
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loxstream/checkpoint.h"
#include "loxstream/dtype.h"
#include "loxstream/linalg.h"
#include "exact.h"

#define PREFIX "base_model.model."
#define EMB_DEFAULT                                                                        \
    "(^|\\.)(embed_tokens|wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|"   \
    "embed_positions|embed_in)\\.weight$"
#define HEADS "(^|\\.)(lm_head|embed_out)\\.weight$"

static int failures;

static void problem(const char *fmt, const char *a, const char *b)
{
    printf("FAIL\t");
    printf(fmt, a, b);
    printf("\n");
    failures++;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "lxlora: out of memory\n");
        exit(2);
    }
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct expect {
    const lx_tensor *al, *ba;
    char *module, *leaf, *key_a, *key_b;
    int embedding, fifo;
} expect;

static float *read_f32(const lx_tensor *t)
{
    float *x = xmalloc(t->nelem * sizeof *x);
    lx_to_f32(t->dtype, t->data, x, t->nelem);
    return x;
}

static int shape_is(const lx_tensor *t, uint64_t d0, uint64_t d1)
{
    return t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1;
}

static void check_module(const expect *e, const lx_checkpoint *ad, const lx_checkpoint *ap,
                         int rank, double alpha, double scale, int has_dtype, lx_dtype dtype,
                         double maxerr, double apply_maxerr)
{
    size_t m = e->al->shape[0], n = e->al->shape[1];
    const lx_tensor *A = lx_checkpoint_find(ad, e->key_a), *B = lx_checkpoint_find(ad, e->key_b);
    if (!A || !B) {
        problem("%s: missing %s", e->module, !A ? e->key_a : e->key_b);
        return;
    }
    lx_dtype want = has_dtype ? dtype
                    : (e->al->dtype == LX_DT_F64 ? LX_DT_F32 : e->al->dtype);
    if (A->dtype != want || B->dtype != want) {
        problem("%s: adapter dtype %s", e->module, lx_dtype_name(A->dtype != want ? A->dtype : B->dtype));
        return;
    }
    uint64_t r = (uint64_t)rank;
    /* linear [out, in]: A [r, n], B [m, r]; embedding [vocab, dim] and
     * Conv1D [in, out]: A [r, m], B [n, r] */
    int tr = e->embedding || e->fifo;
    uint64_t la = tr ? m : n, lb = tr ? n : m;
    if (!shape_is(A, r, la) || !shape_is(B, lb, r)) {
        problem("%s: wrong shape of %s", e->module, !shape_is(A, r, la) ? e->key_a : e->key_b);
        return;
    }
    float *a = read_f32(A), *b = read_f32(B);
    /* beyond min(m, n) the factors have no rank left: A's rows and B's
     * columns there are zeros */
    size_t kmax = m < n ? m : n;
    int nonzero = 0;
    for (size_t t = kmax; t < r; t++) {
        for (size_t p = 0; p < la; p++)
            nonzero |= a[t * la + p] != 0;
        for (size_t p = 0; p < lb; p++)
            nonzero |= b[p * r + t] != 0;
    }
    if (nonzero)
        problem("%s: rows of A or columns of B beyond rank min(m, n) are not zero%s", e->module, "");
    double *T = exact_truncation("lxlora", e->al->name, e->al->dtype, e->al->data, e->ba->data, m,
                                 n, rank);
    double *D = xmalloc(m * n * sizeof *D);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t t = 0; t < r; t++)
                s += tr ? (double)b[j * r + t] * a[t * m + i]
                        : (double)b[i * r + t] * a[t * n + j];
            D[i * n + j] = scale * s;
        }
    double num = 0, den = 0;
    for (size_t i = 0; i < m * n; i++) {
        double d = D[i] - alpha * T[i];
        num += d * d;
        den += alpha * T[i] * alpha * T[i];
    }
    double err = den > 0 ? sqrt(num / den) : (num == 0 ? 0 : INFINITY);
    int bad = !(err <= maxerr);
    printf("%s\t%.3e", e->module, err);
    if (ap) {
        const lx_tensor *o = lx_checkpoint_find(ap, e->al->name);
        if (!o || !shape_is(o, m, n)) {
            printf("\tmissing in the apply output");
            bad = 1;
        } else {
            float *ov = read_f32(o), *av = xmalloc(m * n * sizeof *av);
            lx_to_f32(e->al->dtype, e->al->data, av, m * n);
            double num2 = 0, den2 = 0;
            for (size_t i = 0; i < m * n; i++) {
                double d = ((double)ov[i] - (double)av[i]) - D[i];
                num2 += d * d;
                den2 += D[i] * D[i];
            }
            double aerr = den2 > 0 ? sqrt(num2 / den2) : (num2 == 0 ? 0 : INFINITY);
            printf("\t%.3e", aerr);
            bad |= !(aerr <= apply_maxerr);
            free(ov);
            free(av);
        }
    }
    printf("%s\n", bad ? "\tFAIL" : "");
    failures += bad;
    free(a); free(b); free(T); free(D);
}

/* ---- adapter_config.json ---- */

typedef struct config_want {
    const char *base_model;        /* base_model_name_or_path */
    const char *revision;          /* NULL: null */
    int fifo;                      /* fan_in_fan_out */
    const char *keys, *keys_within; /* adapter_config.json files of PEFT, or NULL */
} config_want;

/* The keys of c against those of the PEFT-written file: equal (exact) or
 * a subset. */
static void check_keys(const json_t *c, const char *path, int exact)
{
    json_error_t jerr;
    json_t *p = json_load_file(path, 0, &jerr);
    if (!json_is_object(p)) {
        fprintf(stderr, "lxlora: %s: %s\n", path, p ? "not an object" : jerr.text);
        exit(2);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)c, k, v)
        if (!json_object_get(p, k))
            problem("config: key %s is not in %s", k, path);
    json_object_foreach(p, k, v)
        if (exact && !json_object_get(c, k))
            problem("config: lacks key %s (in %s)", k, path);
    json_decref(p);
}

static void check_config(const char *dir, const config_want *w, int rank, double alpha,
                         const expect *ex, size_t nex, double *scale)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t jerr;
    json_t *c = json_load_file(path, 0, &jerr);
    if (!c || !json_is_object(c)) {
        fprintf(stderr, "lxlora: %s: %s\n", path, c ? "not an object" : jerr.text);
        exit(2);
    }
    int before = failures;
    const char *s;
    json_t *v;
#define STR_IS(key, want)                                                                     \
    do {                                                                                      \
        v = json_object_get(c, key);                                                          \
        if (!json_is_string(v) || strcmp(json_string_value(v), want))                         \
            problem("config: %s is not \"%s\"", key, want);                                   \
    } while (0)
#define BOOL_IS(key, want)                                                                    \
    do {                                                                                      \
        v = json_object_get(c, key);                                                          \
        if (!json_is_boolean(v) || json_is_true(v) != (want))                                 \
            problem("config: %s is not %s", key, (want) ? "true" : "false");                  \
    } while (0)
    STR_IS("peft_type", "LORA");
    STR_IS("task_type", "CAUSAL_LM");
    STR_IS("bias", "none");
    STR_IS("base_model_name_or_path", w->base_model);
    v = json_object_get(c, "revision");
    if (w->revision ? !json_is_string(v) || strcmp(json_string_value(v), w->revision)
                    : !json_is_null(v))
        problem("config: revision is not %s%s", w->revision ? w->revision : "null", "");
    BOOL_IS("fan_in_fan_out", w->fifo);
    BOOL_IS("use_rslora", 0);
    BOOL_IS("inference_mode", 1);
    v = json_object_get(c, "modules_to_save");
    if (!json_is_null(v))
        problem("config: %s is not %s", "modules_to_save", "null");
    v = json_object_get(c, "lora_dropout");
    if (!json_is_number(v) || json_number_value(v) != 0)
        problem("config: %s is not %s", "lora_dropout", "0");
    v = json_object_get(c, "r");
    if (!json_is_integer(v) || json_integer_value(v) != rank)
        problem("config: %s is not %s", "r", "RANK");
    v = json_object_get(c, "lora_alpha");
    double la = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(fabs(la - alpha * rank) <= 1e-12 * fabs(alpha * rank)))
        problem("config: %s is not %s", "lora_alpha", "ALPHA * RANK");
    *scale = la / rank;
    /* PEFT before 0.14 passes every key to LoraConfig(**kwargs) */
    if (json_object_get(c, "loxstream"))
        problem("config: has a %s key (%s)", "loxstream", "not a LoraConfig field");
    if (w->keys)
        check_keys(c, w->keys, 1);
    if (w->keys_within)
        check_keys(c, w->keys_within, 0);
    /* target_modules: the sorted unique leaves of the expected modules */
    const char **leaves = xmalloc(nex * sizeof *leaves);
    for (size_t i = 0; i < nex; i++)
        leaves[i] = ex[i].leaf;
    qsort(leaves, nex, sizeof *leaves, cmp_str);
    size_t nu = 0;
    for (size_t i = 0; i < nex; i++)
        if (i == 0 || strcmp(leaves[i], leaves[nu - 1]))
            leaves[nu++] = leaves[i];
    v = json_object_get(c, "target_modules");
    if (!json_is_array(v) || json_array_size(v) != nu) {
        problem("config: target_modules has %s entries, expected %s",
                json_is_array(v) ? "another number of" : "no", "the expected leaves");
    } else {
        for (size_t i = 0; i < nu; i++) {
            s = json_string_value(json_array_get(v, i));
            if (!s || strcmp(s, leaves[i]))
                problem("config: target_modules entry is not '%s'%s", leaves[i], "");
        }
    }
    free(leaves);
    if (failures == before)
        printf("config\tok\n");
    json_decref(c);
}

static void compile(regex_t *re, const char *s, const char *what)
{
    if (regcomp(re, s, REG_EXTENDED | REG_NOSUB) != 0) {
        fprintf(stderr, "lxlora: %s: invalid regex '%s'\n", what, s);
        exit(2);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: lxlora [--include RE] [--exclude RE] [--embedding RE] [--dtype T] "
            "[--apply-maxerr E] [--fan-in-fan-out RE] [--no-embeddings] [--base-model NAME] "
            "[--revision REV] [--peft-keys FILE] [--peft-keys-within FILE] "
            "BASE ALIGNED ADAPTER_DIR RANK ALPHA MAXERR [APPLY_OUTPUT]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *inc = NULL, *exc = NULL, *emb = EMB_DEFAULT, *fifo = NULL;
    config_want want = {0};
    int no_emb = 0;
    int has_dtype = 0;
    lx_dtype dtype = LX_DT_F32;
    double apply_maxerr = 1e-5;
    int ai = 1;
    while (ai < argc && !strncmp(argv[ai], "--", 2)) {
        if (!strcmp(argv[ai], "--no-embeddings")) {
            no_emb = 1;
            ai++;
            continue;
        }
        if (ai + 1 >= argc)
            usage();
        const char *opt = argv[ai], *val = argv[ai + 1];
        if (!strcmp(opt, "--fan-in-fan-out"))
            fifo = val;
        else if (!strcmp(opt, "--base-model"))
            want.base_model = val;
        else if (!strcmp(opt, "--revision"))
            want.revision = val;
        else if (!strcmp(opt, "--peft-keys"))
            want.keys = val;
        else if (!strcmp(opt, "--peft-keys-within"))
            want.keys_within = val;
        else if (!strcmp(opt, "--include"))
            inc = val;
        else if (!strcmp(opt, "--exclude"))
            exc = val;
        else if (!strcmp(opt, "--embedding"))
            emb = val;
        else if (!strcmp(opt, "--apply-maxerr"))
            apply_maxerr = atof(val);
        else if (!strcmp(opt, "--dtype")) {
            has_dtype = 1;
            if (!lx_dtype_from_name(val, &dtype))
                usage();
        } else
            usage();
        ai += 2;
    }
    if (argc - ai != 6 && argc - ai != 7)
        usage();
    char **a = argv + ai;
    int rank = atoi(a[3]);
    double alpha = atof(a[4]), maxerr = atof(a[5]);
    if (rank < 1)
        usage();
    regex_t rinc, rexc, remb, rfifo, rheads;
    if (inc)
        compile(&rinc, inc, "--include");
    if (exc)
        compile(&rexc, exc, "--exclude");
    compile(&remb, emb, "--embedding");
    compile(&rheads, HEADS, "heads");
    if (fifo)
        compile(&rfifo, fifo, "--fan-in-fan-out");
    char *aligned_abs = realpath(a[1], NULL);
    if (!want.base_model)
        want.base_model = aligned_abs ? aligned_abs : a[1];
    char adapter[4096];
    snprintf(adapter, sizeof adapter, "%s/adapter_model.safetensors", a[2]);
    lx_checkpoint *base, *al, *ad, *ap = NULL;
    if (lx_checkpoint_open(a[0], &base) || lx_checkpoint_open(a[1], &al) ||
        lx_checkpoint_open(adapter, &ad) || (argc - ai == 7 && lx_checkpoint_open(a[6], &ap))) {
        fprintf(stderr, "lxlora: %s\n", lx_errmsg());
        return 2;
    }
    if (lx_linalg_init(1) != LX_OK)
        return 2;
    /* the expected modules */
    expect *ex = xmalloc(al->ntensors * sizeof *ex);
    size_t nex = 0;
    for (size_t i = 0; i < al->ntensors; i++) {
        const lx_tensor *t = &al->tensors[i];
        const lx_tensor *b = lx_checkpoint_find(base, t->name);
        size_t len = strlen(t->name);
        if (t->ndim != 2 || !lx_dtype_is_transformable(t->dtype) || !b || t->nelem == 0 ||
            len <= 7 || strcmp(t->name + len - 7, ".weight") ||
            (inc && regexec(&rinc, t->name, 0, NULL, 0) != 0) ||
            (exc && regexec(&rexc, t->name, 0, NULL, 0) == 0))
            continue;
        int is_emb = regexec(&remb, t->name, 0, NULL, 0) == 0;
        if (no_emb && (is_emb || regexec(&rheads, t->name, 0, NULL, 0) == 0))
            continue;
        expect *e = &ex[nex++];
        e->al = t;
        e->ba = b;
        e->module = strndup(t->name, len - 7);
        const char *dot = strrchr(e->module, '.');
        e->leaf = strdup(dot ? dot + 1 : e->module);
        e->embedding = is_emb;
        e->fifo = !is_emb && fifo && regexec(&rfifo, t->name, 0, NULL, 0) == 0;
        want.fifo |= e->fifo;
        if (asprintf(&e->key_a, PREFIX "%s%s", e->module,
                     e->embedding ? ".lora_embedding_A" : ".lora_A.weight") < 0 ||
            asprintf(&e->key_b, PREFIX "%s%s", e->module,
                     e->embedding ? ".lora_embedding_B" : ".lora_B.weight") < 0 || !e->leaf ||
            !e->module)
            return 2;
    }
    /* every adapter tensor is one of the expected keys */
    for (size_t i = 0; i < ad->ntensors; i++) {
        const char *name = ad->tensors[i].name;
        int known = 0;
        for (size_t k = 0; k < nex && !known; k++)
            known = !strcmp(name, ex[k].key_a) || !strcmp(name, ex[k].key_b);
        if (!known)
            problem("adapter tensor %s is not an expected module's%s", name, "");
    }
    if (ad->ntensors != 2 * nex)
        problem("adapter holds another number of tensors than 2 x the %s expected modules%s",
                "", "");
    if (nex == 0)
        problem("no module expected in %s%s", a[1], "");
    double scale = alpha;
    check_config(a[2], &want, rank, alpha, ex, nex, &scale);
    for (size_t k = 0; k < nex; k++)
        check_module(&ex[k], ad, ap, rank, alpha, scale, has_dtype, dtype, maxerr, apply_maxerr);
    printf("modules\t%zu\n", nex);
    for (size_t k = 0; k < nex; k++) {
        free(ex[k].module);
        free(ex[k].leaf);
        free(ex[k].key_a);
        free(ex[k].key_b);
    }
    free(ex);
    if (inc)
        regfree(&rinc);
    if (exc)
        regfree(&rexc);
    regfree(&remb);
    regfree(&rheads);
    if (fifo)
        regfree(&rfifo);
    free(aligned_abs);
    lx_checkpoint_close(base);
    lx_checkpoint_close(al);
    lx_checkpoint_close(ad);
    if (ap)
        lx_checkpoint_close(ap);
    return failures ? 1 : 0;
}

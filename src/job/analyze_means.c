/* analyze_means.c - the groups of analyze's means (module type and layer
 * of a tensor, by name), the sums per group and the means as a TSV
 * (--means); see analyze_int.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze_int.h"

const char *const lx_amodule_names[LX_NMODULES] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    "embeddings", "lm_head", "other"};

/* Is the dot-separated component [p, p + len) of a name equal to word? */
static int is_word(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

int lx_amodule_of(const char *name, int linear)
{
    static const struct { const char *word; int module; } words[] = {
        {"q_proj", LX_MOD_Q},       {"k_proj", LX_MOD_K},   {"v_proj", LX_MOD_V},
        {"o_proj", LX_MOD_O},       {"gate_proj", LX_MOD_GATE}, {"up_proj", LX_MOD_UP},
        {"down_proj", LX_MOD_DOWN}, {"lm_head", LX_MOD_LM_HEAD},
        /* Mixtral's experts: w1 gate, w3 up, w2 down */
        {"w1", LX_MOD_GATE},        {"w3", LX_MOD_UP},      {"w2", LX_MOD_DOWN}};
    if (!linear)
        return LX_MOD_EMBED;
    int found = LX_MOD_OTHER;
    for (const char *p = name; *p;) {
        size_t len = strcspn(p, ".");
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if (is_word(p, len, words[i].word)) {
                found = words[i].module;
                if (found == LX_MOD_LM_HEAD)
                    return found;
            }
        p += len;
        if (*p)
            p++;
    }
    return found;
}

long lx_alayer_of(const char *name)
{
    const char *p = name;
    while (*p) {
        size_t len = strcspn(p, ".");
        const char *next = p + len + (p[len] ? 1 : 0);
        if ((is_word(p, len, "layers") || is_word(p, len, "layer") || is_word(p, len, "h") ||
             is_word(p, len, "blocks")) &&
            *next >= '0' && *next <= '9') {
            size_t dl = strcspn(next, ".");
            if (strspn(next, "0123456789") == dl && dl <= 5) /* at most 99999 */
                return strtol(next, NULL, 10);
        }
        p = next;
    }
    return -1;
}

void lx_aft_key(char *buf, size_t len, const char *base, size_t i, size_t nft)
{
    /* the keys are short: base is one of ours, i below LX_ANALYZE_MAX_FT */
    size_t b = strlen(base);
    if (b >= len)
        b = len - 1;
    memcpy(buf, base, b);
    buf[b] = 0;
    if (nft > 1 && len - b > 6)
        sprintf(buf + b, "_%u", (unsigned)(i + 1) % 10000);
}

static void add(lx_amean *g, const lx_arow *r, size_t nranks, size_t nft)
{
    g->n++;
    g->r_align += r->r_align;
    for (size_t i = 0; i < nranks; i++)
        g->energy[i] += r->energy[i];
    for (size_t j = 0; j < nft; j++)
        if (r->ft[j].have) {
            g->nft[j]++;
            g->r_ft[j] += r->ft[j].r_ft;
            g->retention[j] += r->ft[j].retention;
        }
}

lx_status lx_ameans_add(lx_ameans *M, const lx_arow *r)
{
    if (r->linear)
        add(&M->all, r, M->nranks, M->nft);
    add(&M->module[r->module], r, M->nranks, M->nft);
    if (r->layer < 0)
        return LX_OK;
    size_t l = (size_t)r->layer;
    if (l >= M->nlayer) {
        lx_amean *g = realloc(M->layer, (l + 1) * sizeof *g);
        if (!g)
            return lx_fail(LX_EFAIL, "out of memory");
        memset(g + M->nlayer, 0, (l + 1 - M->nlayer) * sizeof *g);
        M->layer = g;
        M->nlayer = l + 1;
    }
    add(&M->layer[l], r, M->nranks, M->nft);
    return LX_OK;
}

void lx_ameans_free(lx_ameans *M)
{
    free(M->layer);
    M->layer = NULL;
    M->nlayer = 0;
}

static void tsv_line(const lx_amean *g, const char *group, const char *name, size_t nranks,
                     size_t nft, FILE *f)
{
    double n = (double)g->n;
    fprintf(f, "%s\t%s\t%zu\t%.6f", group, name, g->n, g->r_align / n);
    for (size_t i = 0; i < nranks; i++)
        fprintf(f, "\t%.6f", g->energy[i] / n);
    for (size_t j = 0; j < nft; j++) {
        if (g->nft[j])
            fprintf(f, "\t%zu\t%.6f\t%.6f", g->nft[j], g->r_ft[j] / (double)g->nft[j],
                    g->retention[j] / (double)g->nft[j]);
        else
            fputs("\t0\t\t", f);
    }
    fputc('\n', f);
}

void lx_ameans_write_tsv(const lx_ameans *M, const lx_analyze_opts *o, FILE *f)
{
    fputs("group\tname\tmatrices\tr_align", f);
    for (size_t i = 0; i < o->nranks; i++)
        fprintf(f, "\tenergy_%d", o->ranks[i]);
    for (size_t j = 0; j < M->nft; j++) {
        char a[32], b[32], c[32];
        lx_aft_key(a, sizeof a, "matrices_ft", j, M->nft);
        lx_aft_key(b, sizeof b, "r_ft", j, M->nft);
        lx_aft_key(c, sizeof c, "retention", j, M->nft);
        fprintf(f, "\t%s\t%s\t%s", a, b, c);
    }
    fputc('\n', f);
    if (M->all.n)
        tsv_line(&M->all, "all", "*", o->nranks, M->nft, f);
    for (int m = 0; m < LX_NMODULES; m++)
        if (M->module[m].n)
            tsv_line(&M->module[m], "module", lx_amodule_names[m], o->nranks, M->nft, f);
    for (size_t l = 0; l < M->nlayer; l++)
        if (M->layer[l].n) {
            char name[32];
            snprintf(name, sizeof name, "%zu", l);
            tsv_line(&M->layer[l], "layer", name, o->nranks, M->nft, f);
        }
}

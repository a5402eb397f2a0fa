/* analyze.c - R_align, R_ft and spectra per matrix (see analyze.h): the
 * engine (engine.c) opens and plans the inputs (the fine-tuned models as
 * more) and factors each matrix; this file projects the fine-tuned updates
 * onto the factors, writes the TSV and hands each matrix's results to the
 * other outputs (analyze_int.h: JSON, means, chart). */
#include "config.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "analyze_int.h"
#include "loxstream/report_file.h"
#include "loxstream/linalg.h"
#include "loxstream/lanes.h"
#include "loxstream/prefetch.h"
#include "loxstream/progress.h"
#include "loxstream/safetensors.h"
#include "loxstream/parse.h"
#include "loxstream/sys.h"


void lx_analyze_opts_default(lx_analyze_opts *o)
{
    memset(o, 0, sizeof *o);
    o->rank = 6;
    static const int def[] = {1, 2, 3, 4, 6, 8};
    o->nranks = sizeof def / sizeof def[0];
    memcpy(o->ranks, def, sizeof def);
    lx_engine_opts_default(&o->stream);
    o->embedding = LX_EMBEDDING_REGEX;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

lx_status lx_analyze_parse_ranks(const char *list, lx_analyze_opts *o)
{
    size_t n = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[32];
        uint64_t v;
        if (len == 0 || len >= sizeof item)
            return lx_fail(LX_EUSAGE, "--ranks: '%s': expected ranks like 1,2,4,8", list);
        memcpy(item, p, len);
        item[len] = 0;
        lx_status st = lx_parse_u64(item, "--ranks", 1, 100000, &v);
        if (st != LX_OK)
            return st;
        if (n == LX_ANALYZE_MAX_RANKS)
            return lx_fail(LX_EUSAGE, "--ranks: at most %d ranks", LX_ANALYZE_MAX_RANKS);
        o->ranks[n++] = (int)v;
        if (!end)
            break;
        p = end + 1;
    }
    qsort(o->ranks, n, sizeof o->ranks[0], cmp_int);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || o->ranks[i] != o->ranks[u - 1])
            o->ranks[u++] = o->ranks[i];
    o->nranks = u;
    return LX_OK;
}

typedef struct actx {
    const lx_analyze_opts *o;
    lx_inputs in;                  /* base, aligned, filters, plan (engine.h) */
    size_t nft;
    lx_checkpoint *ft[LX_ANALYZE_MAX_FT]; /* the fine-tuned models, planned against base */
    lx_plan ftplan[LX_ANALYZE_MAX_FT];
    char ftrole[LX_ANALYZE_MAX_FT][24];   /* "fine-tuned", or "fine-tuned 2" of several */
    regex_t embed;
    int has_embed;
    int kmax, top;                 /* factor rank; singular values listed (0: all) */
    float *panel;                  /* LX_RSVD_PANEL_ROWS x n_max */
    float *proj;                   /* kmax x n_max: U^T dW_ft */
    /* the means: R_align over the linear matrices, R_ft and the ratio over
     * those that each fine-tuned model has; per module type and layer */
    lx_ameans means;
    lx_aplot *plot;                /* --plot: the rows collected */
    lx_factor_stats svd;           /* the factorisations (matrices analysed) */
    lx_budget budget;              /* read-ahead within the memory limit */
    uint64_t need_max;             /* the largest need (check_memory) */
    lx_lanes *lanes;               /* matrices factored ahead (NULL: in turn) */
} actx;

/* The plan item of fine-tuned model j for aligned item it, or NULL when
 * that model has no such matrix (then its R_ft is left empty). */
static const lx_plan_item *ft_item(actx *A, size_t j, const lx_plan_item *it)
{
    if (j >= A->nft)
        return NULL;
    const lx_tensor *t = lx_checkpoint_find(A->ft[j], it->aligned->name);
    if (!t)
        return NULL;
    const lx_plan_item *f = &A->ftplan[j].items[t - A->ft[j]->tensors];
    if (f->action != LX_ACT_LOWRANK || f->m != it->m || f->n != it->n || f->batch != it->batch)
        return NULL;
    return f;
}

/* ||U_k^T dW_ft||_F^2 for k = 1..kk (prefix sums into pk[0..kk)) and
 * ||dW_ft||_F^2, in one streaming pass over dW_ft's rows: proj = U^T dW_ft
 * (kk x n) accumulated panel by panel. */
static lx_status project_ft(actx *A, const lx_plan_item *f, uint64_t b, const lx_factors *fac,
                            double *pk, double *ft2)
{
    size_t m = f->m, n = f->n, k = (size_t)fac->k;
    double f2 = 0;
    for (size_t r0 = 0; r0 < m; r0 += LX_RSVD_PANEL_ROWS) {
        size_t h = m - r0 < LX_RSVD_PANEL_ROWS ? m - r0 : LX_RSVD_PANEL_ROWS;
        lx_status st = lx_delta_rows(f, b, r0, h, A->panel, n);
        if (st != LX_OK)
            return st;
        for (size_t i = 0; i < h * n; i++)
            f2 += (double)A->panel[i] * A->panel[i];
        /* proj (k x n, row-major) += U[r0.., :]^T (k x h) * panel (h x n) */
        lx_sgemm(k, n, h, 1.0f, fac->U + r0 * k, 1, (ptrdiff_t)k, A->panel, (ptrdiff_t)n, 1,
                 r0 == 0 ? 0.0f : 1.0f, A->proj, (ptrdiff_t)n, 1);
    }
    double acc = 0;
    for (size_t i = 0; i < k; i++) {
        double r2 = 0;
        for (size_t j = 0; j < n; j++)
            r2 += (double)A->proj[i * n + j] * A->proj[i * n + j];
        acc += r2;
        pk[i] = acc;
    }
    *ft2 = f2;
    return LX_OK;
}

static void print_header(actx *A, FILE *out)
{
    fputs("tensor\tmatrix\trows\tcols\tlinear\tpasses\tconverged\terr_est\tfrobenius", out);
    for (size_t i = 0; i < A->o->nranks; i++)
        fprintf(out, "\tenergy_%d", A->o->ranks[i]);
    fputs("\tr_align\t", out);
    for (size_t j = 0; j < A->nft; j++) {
        const char *names[] = {"frobenius_ft", "r_ft", "retention"};
        for (int c = 0; c < 3; c++) {
            char key[32];
            lx_aft_key(key, sizeof key, names[c], j, A->nft);
            fprintf(out, "%s\t", key);
        }
    }
    fputs("singular_values\n", out);
}

/* One TSV line. */
static lx_status print_row(actx *A, const lx_arow *r, FILE *out)
{
    /* the whole name, escaped as everywhere (one TSV field, one line) */
    char *q = lx_st_escape_dup(r->name);
    if (!q)
        return lx_fail(LX_EFAIL, "out of memory");
    fprintf(out, "%s\t%" PRIu64 "\t%zu\t%zu\t%s\t%d\t%s\t%.3g\t%.6g", q, r->matrix, r->m, r->n,
            r->linear ? "yes" : "no", r->passes, r->converged ? "yes" : "no", r->err_est,
            r->frob);
    free(q);
    for (size_t i = 0; i < A->o->nranks; i++)
        fprintf(out, "\t%.6f", r->energy[i]);
    fprintf(out, "\t%.6f", r->r_align);
    for (size_t j = 0; j < A->nft; j++) {
        if (r->ft[j].have)
            fprintf(out, "\t%.6g\t%.6f\t%.6f", r->ft[j].frob, r->ft[j].r_ft, r->ft[j].retention);
        else
            fputs("\t\t\t", out);
    }
    fputc('\t', out);
    for (int i = 0; i < r->listed; i++)
        fprintf(out, "%s%.6g", i ? "," : "", r->S[i]);
    fputc('\n', out);
    return LX_OK;
}

/* The captured share cum / total, clamped to 1 (rounding can put the
 * captured energy a hair above the total). */
static double share(const double *cum, int r, double total)
{
    double e = r > 0 && total > 0 ? cum[r - 1] / total : 0;
    return e > 1 ? 1 : e;
}

/* R_ft of each fine-tuned model at k = kk, into r->ft. */
static lx_status project_all(actx *A, const lx_plan_item *it, uint64_t b, const lx_factors *f,
                             int kk, double *pk, lx_arow *r)
{
    for (size_t j = 0; j < A->nft; j++) {
        const lx_plan_item *fi = ft_item(A, j, it);
        if (!fi || f->k <= 0)
            continue;
        double ft2 = 0;
        lx_status st = project_ft(A, fi, b, f, pk, &ft2);
        if (st != LX_OK)
            return st;
        lx_aft *a = &r->ft[j];
        a->have = 1;
        a->frob = sqrt(ft2);
        a->r_ft = sqrt(share(pk, kk, ft2));
        a->retention = r->r_align > 0 ? a->r_ft / r->r_align : 0.0;
    }
    return LX_OK;
}

static lx_status analyze_matrix(actx *A, const lx_plan_item *it, uint64_t b, FILE *out)
{
    const lx_analyze_opts *o = A->o;
    lx_factors f;
    lx_status st =
        lx_lanes_get(A->lanes, &o->stream, it, b, lx_engine_rank(it, A->kmax), &f, &A->svd);
    if (st != LX_OK)
        return st;
    /* energy of the top r: sum s_i^2 / ||dW||^2, r clamped to the triplets kept */
    double *cum = calloc((size_t)(f.k > 0 ? f.k : 1), sizeof *cum);
    double *pk = calloc((size_t)(f.k > 0 ? f.k : 1), sizeof *pk);
    if (!cum || !pk) {
        st = lx_fail(LX_EFAIL, "out of memory");
        goto done;
    }
    double acc = 0;
    for (int i = 0; i < f.k; i++) {
        acc += (double)f.S[i] * f.S[i];
        cum[i] = acc;
    }
    lx_arow r;
    memset(&r, 0, sizeof r);
    r.name = it->aligned->name;
    r.matrix = b;
    r.m = it->m;
    r.n = it->n;
    r.linear = !(A->has_embed && regexec(&A->embed, it->aligned->name, 0, NULL, 0) == 0);
    r.module = lx_amodule_of(r.name, r.linear);
    r.layer = lx_alayer_of(r.name);
    r.passes = f.passes;
    r.converged = f.converged;
    r.err_est = f.err_est;
    r.frob = sqrt(f.frob2);
    r.k = f.k;
    r.S = f.S;
    r.cum = cum;
    r.listed = A->top > 0 && A->top < f.k ? A->top : f.k;
    for (size_t i = 0; i < o->nranks; i++)
        r.energy[i] = share(cum, o->ranks[i] < f.k ? o->ranks[i] : f.k, f.frob2);
    int kk = o->rank < f.k ? o->rank : f.k;
    r.r_align = sqrt(share(cum, kk, f.frob2));
    if ((st = project_all(A, it, b, &f, kk, pk, &r)) != LX_OK)
        goto done;
    st = o->json ? lx_ajson_row(&r, o, out) : print_row(A, &r, out);
    if (st == LX_OK)
        st = lx_ameans_add(&A->means, &r);
    if (st == LX_OK && A->plot)
        st = lx_aplot_add(A->plot, &r);
done:
    free(cum);
    free(pk);
    lx_factors_free(&f);
    return st;
}

/* Working memory of the largest matrix: the SVD's, one f32 panel and, with
 * fine-tuned models, the projection (one buffer, reused for each model);
 * refused before any work if above --max-memory. */
static lx_status check_memory(actx *A, size_t *n_max)
{
    const lx_analyze_opts *o = A->o;
    uint64_t worst = 0;
    const char *worst_name = NULL;
    *n_max = 1;
    for (size_t i = 0; i < A->in.plan.n; i++) {
        const lx_plan_item *it = &A->in.plan.items[i];
        if (it->action != LX_ACT_LOWRANK)
            continue;
        if (it->n > *n_max)
            *n_max = it->n;
        uint64_t need = lx_engine_svd_bytes(&o->stream, it, A->kmax) +
                        (uint64_t)(LX_RSVD_PANEL_ROWS + (A->nft ? A->kmax : 0)) * it->n * 4;
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    A->need_max = worst;
    return lx_engine_check_memory(&o->stream, &A->in.plan, worst, worst_name, &A->budget);
}

/* Every matrix analysed, factored on two lanes where the engine's policy
 * allows (lanes.h): the same bits. */
static void lanes_open(actx *A)
{
    lx_lane_item *items = malloc((A->in.plan.n + 1) * sizeof *items);
    if (!items)
        return;
    size_t n = 0;
    for (size_t i = 0; i < A->in.plan.n; i++) {
        const lx_plan_item *it = &A->in.plan.items[i];
        if (it->action == LX_ACT_LOWRANK)
            items[n++] = (lx_lane_item){it, lx_engine_rank(it, A->kmax)};
    }
    A->lanes = lx_lanes_open(&A->o->stream, &A->budget, A->need_max, items, n, NULL, NULL);
    free(items);
}

/* Before any output: something to analyse (else exit 2, as a filter that
 * selects nothing), and fine-tuned models that each have at least one of
 * those matrices (else its R_ft would be empty everywhere: exit 3). */
static lx_status check_selection(actx *A)
{
    size_t n = 0, shared[LX_ANALYZE_MAX_FT] = {0};
    for (size_t i = 0; i < A->in.plan.n; i++) {
        if (A->in.plan.items[i].action != LX_ACT_LOWRANK)
            continue;
        n++;
        for (size_t j = 0; j < A->nft; j++)
            shared[j] += ft_item(A, j, &A->in.plan.items[i]) != NULL;
    }
    if (n == 0)
        return lx_fail(LX_EUSAGE, "analyze: no matrix to analyse (check --include/--exclude)");
    for (size_t j = 0; j < A->nft; j++)
        if (shared[j] == 0)
            return lx_fail(LX_EINPUT, "%s: the %s model shares no matrix with the base and "
                           "aligned models (none of the %zu tensors analysed is in it with the "
                           "same dtype and shape)", A->o->finetuned[j], A->ftrole[j], n);
    return LX_OK;
}

/* "mean R_ft X, mean R_ft/R_align Y" of fine-tuned model j over the
 * linear matrices, into buf. */
static void ft_means(const actx *A, size_t j, char *buf, size_t len)
{
    const lx_amean *g = &A->means.all;
    snprintf(buf, len, "mean R_ft %.4f, mean R_ft/R_align %.4f", g->r_ft[j] / (double)g->nft[j],
             g->retention[j] / (double)g->nft[j]);
}

/* The means as status lines: R_align over the linear matrices, R_ft and
 * R_ft / R_align over those of them that each fine-tuned model has (one
 * line with one model, one more line per model with several). */
static void print_means(const actx *A)
{
    const lx_analyze_opts *o = A->o;
    const lx_amean *g = &A->means.all;
    if (g->n == 0) {
        lx_say(&o->stream.report, "analyze: %zu matri%s, all embedding tables (--embedding): no means "
               "over linear matrices", A->svd.matrices, A->svd.matrices == 1 ? "x" : "ces");
        return;
    }
    char ft[256] = "", m[128];
    if (A->nft == 1 && g->nft[0] > 0) {
        ft_means(A, 0, m, sizeof m);
        snprintf(ft, sizeof ft, "; %zu of them in the fine-tuned model: %s", g->nft[0], m);
    } else if (A->nft == 1) {
        snprintf(ft, sizeof ft, "; none of them in the fine-tuned model: no mean R_ft");
    }
    lx_say(&o->stream.report, "analyze: %zu linear matrices (embedding tables excluded): mean R_align "
           "%.4f at k = %d%s", g->n, g->r_align / (double)g->n, o->rank, ft);
    for (size_t j = 0; A->nft > 1 && j < A->nft; j++) {
        char q[LX_NAME_QUOTE];
        if (g->nft[j] > 0)
            ft_means(A, j, m, sizeof m);
        lx_say(&o->stream.report, "analyze: %s (%s): %zu of the linear matrices in it%s%s",
               A->ftrole[j], lx_st_escape_name(o->finetuned[j], q, sizeof q), g->nft[j],
               g->nft[j] ? ": " : ": no mean R_ft", g->nft[j] ? m : "");
    }
}

/* The factor rank and the singular values listed (analyze.h: top). */
static lx_status choose_ranks(actx *A)
{
    const lx_analyze_opts *o = A->o;
    if (o->rank < 1)
        return lx_fail(LX_EUSAGE, "analyze: --rank must be at least 1");
    A->top = o->top ? o->top : (o->json || o->plot_path) ? LX_ANALYZE_TOP_DEFAULT : 0;
    if (!o->top && o->factor_rank && A->top > o->factor_rank)
        A->top = o->factor_rank; /* the default top: as many as there are */
    A->kmax = o->rank > A->top ? o->rank : A->top;
    for (size_t i = 0; i < o->nranks; i++)
        if (o->ranks[i] > A->kmax)
            A->kmax = o->ranks[i];
    if (o->factor_rank && A->kmax > o->factor_rank)
        return lx_fail(o->stream.factors ? LX_EINPUT : LX_EUSAGE, "analyze: --rank, --ranks "
                       "and --top need rank %d, above the factor rank %d%s", A->kmax,
                       o->factor_rank, o->stream.factors ? " of --factors" : "");
    if (o->factor_rank)
        A->kmax = o->factor_rank;
    A->nft = o->nfinetuned;
    for (size_t j = 0; j < A->nft; j++)
        snprintf(A->ftrole[j], sizeof A->ftrole[j], A->nft == 1 ? "fine-tuned" : "fine-tuned %zu",
                 j + 1);
    A->means.nranks = o->nranks;
    A->means.nft = A->nft;
    return A->o->plot_path ? lx_aplot_new(&A->plot, A->top) : LX_OK;
}

/* Neither standard output nor the files of --plot and --means go onto an
 * input (analyze > m/aligned/config.json), nor two of them onto one file. */
static lx_status check_targets(actx *A, FILE *out)
{
    const lx_analyze_opts *o = A->o;
    lx_status st = LX_OK;
    for (size_t j = 0; j <= A->nft && st == LX_OK; j++) {
        lx_inputs fts = {.base = A->ft[j > 0 ? j - 1 : 0]};
        const lx_inputs *in = j == 0 ? &A->in : &fts;
        st = lx_report_check_fd(fileno(out), "analyze: standard output", in, NULL);
        if (st == LX_OK && o->plot_path)
            st = lx_report_check("--plot", o->plot_path, in, NULL);
        if (st == LX_OK && o->means_path)
            st = lx_report_check("--means", o->means_path, in, NULL);
    }
    const char *opt[2] = {"--plot", "--means"}, *path[2] = {o->plot_path, o->means_path};
    for (int w = 0; w < 2 && st == LX_OK; w++)
        if (path[w])
            st = lx_report_distinct_fd(fileno(out), "standard output", opt[w], path[w]);
    if (st == LX_OK && path[0] && path[1])
        st = lx_report_distinct(opt[0], path[0], opt[1], path[1]);
    return st;
}

/* --plot and --means, at the end. */
static lx_status write_files(actx *A)
{
    const lx_analyze_opts *o = A->o;
    const char *opt[2] = {"--plot", "--means"}, *path[2] = {o->plot_path, o->means_path};
    for (int w = 0; w < 2; w++) {
        if (!path[w])
            continue;
        FILE *f;
        lx_status st = lx_report_open(opt[w], path[w], &A->in, NULL, &f);
        if (st != LX_OK)
            return st;
        if (w == 0)
            st = lx_aplot_write(A->plot, o, f);
        else
            lx_ameans_write_tsv(&A->means, o, f);
        int bad = ferror(f);
        if (fclose(f) != 0 || bad)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot write '%s'", opt[w], path[w]);
        if (st != LX_OK)
            return st;
    }
    return LX_OK;
}

static lx_status run(actx *A, FILE *out)
{
    const lx_analyze_opts *o = A->o;
    lx_status st = choose_ranks(A);
    if (st == LX_OK)
        st = lx_engine_filter(&A->in, &o->stream);
    if (st != LX_OK)
        return st;
    if (o->embedding && *o->embedding) {
        if (regcomp(&A->embed, o->embedding, REG_EXTENDED | REG_NOSUB) != 0)
            return lx_fail(LX_EUSAGE, "--embedding: invalid regular expression '%s'", o->embedding);
        A->has_embed = 1;
    }
    /* the fine-tuned models may lack tensors or differ in some: those
     * matrices get no R_ft, with the plan's warning */
    const char *roles[LX_ANALYZE_MAX_FT];
    for (size_t j = 0; j < A->nft; j++)
        roles[j] = A->ftrole[j];
    st = lx_engine_open_more(&A->in, &o->stream, A->kmax, A->nft, o->finetuned, roles, A->ft,
                             A->ftplan);
    if (st != LX_OK || (st = check_targets(A, out)) != LX_OK)
        return st;
    if ((st = check_selection(A)) != LX_OK)
        return st;
    size_t n_max;
    if ((st = check_memory(A, &n_max)) != LX_OK)
        return st;
    if ((st = lx_linalg_init(o->stream.threads)) != LX_OK)
        return st;
    A->panel = lx_falloc((size_t)LX_RSVD_PANEL_ROWS * n_max);
    A->proj = lx_falloc((size_t)A->kmax * n_max);
    if (!A->panel || !A->proj)
        return lx_fail(LX_EFAIL, "out of memory allocating buffers");
    lx_progress prog;
    lx_progress_begin(&prog, "analyze", A->in.plan.n, A->in.plan.transform_bytes, o->stream.quiet,
                      &o->stream.report);
    if (!o->json)
        print_header(A, out);
    uint64_t done = 0;
    lx_read_ahead ra;
    lx_read_ahead_start(&ra, &A->budget);
    lanes_open(A);
    for (size_t i = 0; i < A->in.plan.n && st == LX_OK; i++) {
        const lx_plan_item *it = &A->in.plan.items[i];
        if (it->action == LX_ACT_LOWRANK) {
            /* this item's inputs (with the fine-tuned models') and the next ones' */
            const lx_plan_item *next[LX_PREFETCH_MAX / 2];
            size_t nn = 0;
            for (size_t j = i; j < A->in.plan.n && nn + 1 + A->nft <= LX_PREFETCH_MAX / 2; j++) {
                if (A->in.plan.items[j].action != LX_ACT_LOWRANK)
                    continue;
                next[nn++] = &A->in.plan.items[j];
                for (size_t m = 0; m < A->nft; m++)
                    next[nn++] = ft_item(A, m, &A->in.plan.items[j]);
            }
            lx_read_ahead_set(&ra, next, nn);
            for (uint64_t b = 0; b < it->batch && st == LX_OK; b++)
                st = analyze_matrix(A, it, b, out);
            done += it->aligned->nbytes;
            lx_read_ahead_done(&ra, it);
            for (size_t m = 0; m < A->nft; m++)
                if (ft_item(A, m, it))
                    lx_read_ahead_done(&ra, ft_item(A, m, it));
        }
        lx_progress_update(&prog, i + 1, done, it->aligned->name);
    }
    lx_lanes_stop(A->lanes);
    A->lanes = NULL;
    lx_read_ahead_stop(&ra);
    if (st == LX_OK && o->json)
        st = lx_ajson_summary(&A->means, o, A->svd.matrices, A->svd.unconverged, out);
    if (st == LX_OK && fflush(out) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "cannot write the analysis to standard output");
    if (st == LX_OK)
        st = write_files(A);
    if (st != LX_OK)
        return st;
    lx_progress_end(&prog);
    lx_engine_warn_unconverged(&o->stream, "analyze", &A->svd);
    if (!o->stream.quiet)
        print_means(A);
    return LX_OK;
}

lx_status lx_analyze_run(const lx_analyze_opts *o, FILE *out)
{
    actx A;
    memset(&A, 0, sizeof A);
    A.o = o;
    lx_status st = run(&A, out);
    free(A.panel);
    free(A.proj);
    for (size_t j = 0; j < A.nft; j++) {
        lx_plan_free(&A.ftplan[j]);
        lx_checkpoint_close(A.ft[j]);
    }
    if (A.has_embed)
        regfree(&A.embed);
    lx_ameans_free(&A.means);
    lx_aplot_free(A.plot);
    lx_inputs_free(&A.in);
    return st;
}

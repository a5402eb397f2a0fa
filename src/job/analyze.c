/* analyze.c - R_align, R_ft and spectra per matrix (see analyze.h): the
 * engine (engine.c) opens and plans the inputs (the fine-tuned model as a
 * third one) and factors each matrix; this file projects the fine-tuned
 * update onto the factors and writes the TSV. */
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

#include "loxstream/analyze.h"
#include "loxstream/report_file.h"
#include "loxstream/linalg.h"
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
    lx_checkpoint *ft;             /* the fine-tuned model, planned against base */
    lx_plan ftplan;
    regex_t embed;
    int has_embed;
    int kmax;
    float *panel;                  /* LX_RSVD_PANEL_ROWS x n_max */
    float *proj;                   /* kmax x n_max: U^T dW_ft */
    /* means over linear layers: R_align over all nlinear, R_ft and the
     * ratio over the nlinear_ft that the fine-tuned model has */
    size_t nlinear, nlinear_ft;
    double sum_ralign, sum_rft, sum_ratio;
    lx_factor_stats svd;           /* the factorisations (matrices analysed) */
    lx_budget budget;              /* read-ahead within the memory limit */
} actx;

/* The plan item of the fine-tuned model for aligned item it, or NULL when the
 * fine-tuned model has no such matrix (then R_ft is left empty). */
static const lx_plan_item *ft_item(actx *A, const lx_plan_item *it)
{
    if (!A->ft)
        return NULL;
    const lx_tensor *t = lx_checkpoint_find(A->ft, it->aligned->name);
    if (!t)
        return NULL;
    const lx_plan_item *f = &A->ftplan.items[t - A->ft->tensors];
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
    fprintf(out, "\tr_align\t%s", A->ft ? "frobenius_ft\tr_ft\tretention\t" : "");
    fputs("singular_values\n", out);
}

static lx_status analyze_matrix(actx *A, const lx_plan_item *it, uint64_t b, FILE *out)
{
    const lx_analyze_opts *o = A->o;
    size_t m = it->m, n = it->n;
    lx_factors f;
    lx_status st = lx_engine_factor(&o->stream, it, b, lx_engine_rank(it, A->kmax), &f, &A->svd);
    if (st != LX_OK)
        return st;
    double fro2 = f.frob2;
    /* energy of the top r: sum s_i^2 / ||dW||^2, r clamped to the triplets kept */
    double *cum = calloc((size_t)(f.k > 0 ? f.k : 1), sizeof *cum);
    double *pk = calloc((size_t)(f.k > 0 ? f.k : 1), sizeof *pk);
    if (!cum || !pk) {
        free(cum);
        free(pk);
        lx_factors_free(&f);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    double acc = 0;
    for (int i = 0; i < f.k; i++) {
        acc += (double)f.S[i] * f.S[i];
        cum[i] = acc;
    }
    int kk = o->rank < f.k ? o->rank : f.k;
    double e_k = kk > 0 && fro2 > 0 ? cum[kk - 1] / fro2 : 0;
    /* rounding can put the captured energy a hair above the total */
    double r_align = sqrt(e_k > 1 ? 1 : e_k);
    const lx_plan_item *fi = ft_item(A, it);
    double ft2 = 0, r_ft = 0;
    int have_ft = 0;
    if (fi && f.k > 0) {
        st = project_ft(A, fi, b, &f, pk, &ft2);
        if (st != LX_OK) {
            free(cum);
            free(pk);
            lx_factors_free(&f);
            return st;
        }
        double q = kk > 0 && ft2 > 0 ? pk[kk - 1] / ft2 : 0;
        r_ft = sqrt(q > 1 ? 1 : q);
        have_ft = 1;
    }
    int linear = !(A->has_embed && regexec(&A->embed, it->aligned->name, 0, NULL, 0) == 0);
    /* the whole name, escaped as everywhere (one TSV field, one line) */
    char *q = lx_st_escape_dup(it->aligned->name);
    if (!q) {
        free(cum);
        free(pk);
        lx_factors_free(&f);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    fprintf(out, "%s\t%" PRIu64 "\t%zu\t%zu\t%s\t%d\t%s\t%.3g\t%.6g", q, b, m, n,
            linear ? "yes" : "no", f.passes, f.converged ? "yes" : "no", f.err_est, sqrt(fro2));
    free(q);
    for (size_t i = 0; i < o->nranks; i++) {
        int r = o->ranks[i] < f.k ? o->ranks[i] : f.k;
        double e = r > 0 && fro2 > 0 ? cum[r - 1] / fro2 : 0;
        fprintf(out, "\t%.6f", e > 1 ? 1.0 : e);
    }
    fprintf(out, "\t%.6f", r_align);
    if (A->ft) {
        if (have_ft)
            fprintf(out, "\t%.6g\t%.6f\t%.6f", sqrt(ft2), r_ft,
                    r_align > 0 ? r_ft / r_align : 0.0);
        else
            fputs("\t\t\t", out);
    }
    fputc('\t', out);
    for (int i = 0; i < f.k; i++)
        fprintf(out, "%s%.6g", i ? "," : "", f.S[i]);
    fputc('\n', out);
    if (linear) {
        A->nlinear++;
        A->sum_ralign += r_align;
        if (have_ft) {
            A->nlinear_ft++;
            A->sum_rft += r_ft;
            A->sum_ratio += r_align > 0 ? r_ft / r_align : 0;
        }
    }
    free(cum);
    free(pk);
    lx_factors_free(&f);
    return LX_OK;
}

/* Working memory of the largest matrix: the SVD's, one f32 panel and, with a
 * fine-tuned model, the projection; refused before any work if above
 * --max-memory. */
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
                        (uint64_t)(LX_RSVD_PANEL_ROWS + (A->ft ? A->kmax : 0)) * it->n * 4;
        if (need > worst) {
            worst = need;
            worst_name = it->aligned->name;
        }
    }
    return lx_engine_check_memory(&o->stream, &A->in.plan, worst, worst_name, &A->budget);
}

/* Before any output: something to analyse (else exit 2, as a filter that
 * selects nothing), and a fine-tuned model that has at least one of those
 * matrices (else its R_ft would be empty everywhere: exit 3). */
static lx_status check_selection(actx *A)
{
    size_t n = 0, shared = 0;
    for (size_t i = 0; i < A->in.plan.n; i++) {
        if (A->in.plan.items[i].action != LX_ACT_LOWRANK)
            continue;
        n++;
        shared += ft_item(A, &A->in.plan.items[i]) != NULL;
    }
    if (n == 0)
        return lx_fail(LX_EUSAGE, "analyze: no matrix to analyse (check --include/--exclude)");
    if (A->ft && shared == 0)
        return lx_fail(LX_EINPUT, "%s: the fine-tuned model shares no matrix with the base and "
                       "aligned models (none of the %zu tensors analysed is in it with the "
                       "same dtype and shape)", A->o->finetuned_path, n);
    return LX_OK;
}

/* The means as a status line: R_align over the linear matrices, R_ft and R_ft /
 * R_align over those of them that the fine-tuned model has. */
static void print_means(const actx *A)
{
    const lx_analyze_opts *o = A->o;
    if (A->nlinear == 0) {
        lx_say(&o->stream.report, "analyze: %zu matri%s, all embedding tables (--embedding): no means "
               "over linear matrices", A->svd.matrices, A->svd.matrices == 1 ? "x" : "ces");
        return;
    }
    char ft[256] = "";
    if (A->ft && A->nlinear_ft > 0)
        snprintf(ft, sizeof ft, "; %zu of them in the fine-tuned model: mean R_ft %.4f, mean "
                 "R_ft/R_align %.4f", A->nlinear_ft, A->sum_rft / (double)A->nlinear_ft,
                 A->sum_ratio / (double)A->nlinear_ft);
    else if (A->ft)
        snprintf(ft, sizeof ft, "; none of them in the fine-tuned model: no mean R_ft");
    lx_say(&o->stream.report, "analyze: %zu linear matrices (embedding tables excluded): mean R_align "
           "%.4f at k = %d%s", A->nlinear, A->sum_ralign / (double)A->nlinear, o->rank, ft);
}

static lx_status run(actx *A, FILE *out)
{
    const lx_analyze_opts *o = A->o;
    if (o->rank < 1)
        return lx_fail(LX_EUSAGE, "analyze: --rank must be at least 1");
    A->kmax = o->rank;
    for (size_t i = 0; i < o->nranks; i++)
        if (o->ranks[i] > A->kmax)
            A->kmax = o->ranks[i];
    lx_status st = lx_engine_filter(&A->in, &o->stream);
    if (st != LX_OK)
        return st;
    if (o->embedding && *o->embedding) {
        if (regcomp(&A->embed, o->embedding, REG_EXTENDED | REG_NOSUB) != 0)
            return lx_fail(LX_EUSAGE, "--embedding: invalid regular expression '%s'", o->embedding);
        A->has_embed = 1;
    }
    /* the fine-tuned model may lack tensors or differ in some: those
     * matrices get no R_ft, with the plan's warning */
    st = o->finetuned_path ? lx_engine_open_third(&A->in, &o->stream, A->kmax, o->finetuned_path,
                                                  "fine-tuned", &A->ft, &A->ftplan)
                           : lx_engine_open(&A->in, &o->stream, A->kmax, 0);
    if (st != LX_OK)
        return st;
    /* the TSV never goes onto an input (analyze > m/aligned/config.json) */
    lx_inputs fts = {.base = A->ft};
    if ((st = lx_report_check_fd(fileno(out), "analyze: standard output", &A->in, NULL)) != LX_OK ||
        (A->ft && (st = lx_report_check_fd(fileno(out), "analyze: standard output", &fts, NULL)) !=
                      LX_OK))
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
    print_header(A, out);
    uint64_t done = 0;
    lx_read_ahead ra;
    lx_read_ahead_start(&ra, &A->budget);
    for (size_t i = 0; i < A->in.plan.n && st == LX_OK; i++) {
        const lx_plan_item *it = &A->in.plan.items[i];
        if (it->action == LX_ACT_LOWRANK) {
            /* this item's inputs (with the fine-tuned model's) and the next ones' */
            const lx_plan_item *next[LX_PREFETCH_MAX / 2];
            size_t nn = 0;
            for (size_t j = i; j < A->in.plan.n && nn + 2 <= LX_PREFETCH_MAX / 2; j++) {
                if (A->in.plan.items[j].action != LX_ACT_LOWRANK)
                    continue;
                next[nn++] = &A->in.plan.items[j];
                next[nn++] = ft_item(A, &A->in.plan.items[j]);
            }
            lx_read_ahead_set(&ra, next, nn);
            for (uint64_t b = 0; b < it->batch && st == LX_OK; b++)
                st = analyze_matrix(A, it, b, out);
            done += it->aligned->nbytes;
            lx_read_ahead_done(&ra, it);
            if (ft_item(A, it))
                lx_read_ahead_done(&ra, ft_item(A, it));
        }
        lx_progress_update(&prog, i + 1, done, it->aligned->name);
    }
    lx_read_ahead_stop(&ra);
    if (st == LX_OK && fflush(out) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "cannot write the analysis to standard output");
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
    lx_plan_free(&A.ftplan);
    if (A.has_embed)
        regfree(&A.embed);
    lx_checkpoint_close(A.ft);
    lx_inputs_free(&A.in);
    return st;
}

/* apply_sweep.c - the outputs of an apply run (see apply_sweep.h): the
 * value lists checked, the factor rank and the ranks it certifies, and one
 * set of options per (alpha, rank) with its output and report paths.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/apply_sweep.h"

char *lx_sweep_expand(const char *tmpl, const char *a, const char *k, int *used)
{
    size_t la = strlen(a), lk = strlen(k), n = 1;
    for (const char *p = tmpl; *p; p++)
        n += la + lk + 1;
    char *s = malloc(n), *d = s;
    *used = 0;
    if (!s)
        return NULL;
    for (const char *p = tmpl; *p; p++) {
        if (p[0] == '%' && (p[1] == 'a' || p[1] == 'k')) {
            const char *v = p[1] == 'a' ? a : k;
            *used |= p[1] == 'a' ? 1 : 2;
            memcpy(d, v, strlen(v));
            d += strlen(v);
            p++;
        } else if (p[0] == '%' && p[1] == '%') {
            *d++ = '%';
            p++;
        } else {
            *d++ = *p;
        }
    }
    *d = '\0';
    return s;
}

/* The shortest decimal that reads back as x (the default alpha for %a). */
static void shortest(double x, char *buf, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
}

static lx_status keep_path(lx_sweep *s, char *p)
{
    if (!p)
        return lx_fail(LX_EFAIL, "out of memory");
    s->paths[s->npaths++] = p;
    return LX_OK;
}

static lx_status check_lists(const lx_apply_opts *o, size_t na, size_t nk, const double *al,
                             const int *rk, int *kmax)
{
    *kmax = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < i; j++)
            if (al[i] == al[j])
                return lx_fail(LX_EUSAGE, "apply: --alpha: the value %s is given twice",
                               o->alpha_text[i]);
    for (size_t i = 0; i < nk; i++) {
        for (size_t j = 0; j < i; j++)
            if (rk[i] == rk[j])
                return lx_fail(LX_EUSAGE, "apply: --rank: the value %s is given twice",
                               o->rank_text[i]);
        if (rk[i] == 0 && nk > 1)
            return lx_fail(LX_EUSAGE, "apply: --rank: 0 (full rank, no factorisation) cannot "
                           "be swept with other ranks: run it on its own");
        if (rk[i] > *kmax)
            *kmax = rk[i];
    }
    if (o->factor_rank && *kmax == 0)
        return lx_fail(LX_EUSAGE, "apply: --factor-rank %d: rank 0 (full rank) has no "
                       "factorisation", o->factor_rank);
    if (o->factor_rank && o->factor_rank < *kmax)
        return lx_fail(LX_EUSAGE, "apply: --factor-rank %d is below --rank %d: the factors "
                       "must hold every rank", o->factor_rank, *kmax);
    return LX_OK;
}

lx_status lx_sweep_build(lx_sweep *s, const lx_apply_opts *o)
{
    memset(s, 0, sizeof *s);
    double one_alpha = o->alpha;
    int one_rank = o->rank;
    size_t na = o->nalpha ? o->nalpha : 1, nk = o->nrank ? o->nrank : 1;
    const double *al = o->nalpha ? o->alphas : &one_alpha;
    const int *rk = o->nrank ? o->ranks : &one_rank;
    char atext[LX_SWEEP_TEXT], ktext[LX_SWEEP_TEXT];
    int kmax;
    lx_status st = check_lists(o, na, nk, al, rk, &kmax);
    if (st != LX_OK)
        return st;
    s->factor_rank = o->factor_rank ? o->factor_rank : kmax;
    /* factors used at several ranks (or at a chosen one): every rank
     * 1..K certified, so that each output is the same whichever others
     * are made with it; a plain run (or one swept over alpha only)
     * certifies its rank alone */
    int certify_all = nk > 1 || o->factor_rank;
    s->n = na * nk;
    if (s->n > 1 && o->nparts > 1)
        return lx_fail(LX_EUSAGE, "apply: --part with a sweep (%zu outputs): run each value on "
                       "its own with --part, or the sweep without it", s->n);
    if (s->n > 1 && o->report_path && !strcmp(o->report_path, "-"))
        return lx_fail(LX_EUSAGE, "apply: --report -: a sweep writes one report per output: "
                       "give a file name with %%a and %%k as in --output");
    s->outs = calloc(s->n, sizeof *s->outs);
    s->paths = calloc(2 * s->n, sizeof *s->paths);
    if (!s->outs || !s->paths)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; i < na && st == LX_OK; i++) {
        for (size_t j = 0; j < nk && st == LX_OK; j++) {
            lx_apply_opts *u = &s->outs[i * nk + j];
            *u = *o;
            u->nalpha = u->nrank = 0;
            u->alpha = al[i];
            u->rank = rk[j];
            u->factor_rank = certify_all ? s->factor_rank : 0;
            u->stream.certify_all = certify_all;
            if (o->nalpha)
                snprintf(atext, sizeof atext, "%s", o->alpha_text[i]);
            else
                shortest(o->alpha, atext, sizeof atext);
            if (o->nrank)
                snprintf(ktext, sizeof ktext, "%s", o->rank_text[j]);
            else
                snprintf(ktext, sizeof ktext, "%d", o->rank);
            int used;
            char *p = lx_sweep_expand(o->output_path, atext, ktext, &used);
            if ((st = keep_path(s, p)) != LX_OK)
                break;
            u->output_path = p;
            for (size_t q = 0; q < i * nk + j && st == LX_OK; q++)
                if (!strcmp(s->outs[q].output_path, p))
                    st = lx_fail(LX_EUSAGE, "apply: --output '%s' gives the directory '%s' "
                                 "for several outputs: separate %%a and %%k (e.g. "
                                 "--output lox-a%%a-k%%k)", o->output_path, p);
            if (st != LX_OK)
                break;
            if (na > 1 && !(used & 1))
                st = lx_fail(LX_EUSAGE, "apply: --alpha gives %zu values but --output '%s' has "
                             "no %%a: each output needs its own directory (e.g. "
                             "--output lox-a%%a)", na, o->output_path);
            else if (nk > 1 && !(used & 2))
                st = lx_fail(LX_EUSAGE, "apply: --rank gives %zu values but --output '%s' has "
                             "no %%k: each output needs its own directory (e.g. "
                             "--output lox-k%%k)", nk, o->output_path);
            if (st != LX_OK || !o->report_path || !strcmp(o->report_path, "-"))
                continue;
            p = lx_sweep_expand(o->report_path, atext, ktext, &used);
            if ((st = keep_path(s, p)) != LX_OK)
                break;
            u->report_path = p;
            for (size_t q = 0; q < i * nk + j && st == LX_OK; q++)
                if (!strcmp(s->outs[q].report_path, p))
                    st = lx_fail(LX_EUSAGE, "apply: --report '%s' names the same file for "
                                 "several outputs: use %%a and %%k in it as in --output",
                                 o->report_path);
        }
    }
    return st;
}

void lx_sweep_free(lx_sweep *s)
{
    for (size_t i = 0; i < s->npaths; i++)
        free(s->paths[i]);
    free(s->paths);
    free(s->outs);
    memset(s, 0, sizeof *s);
}

/* analyze_json.c - analyze --json: one JSON object per matrix and the
 * summary object {"tensor": "*"}, one per line, written with jansson (see
 * analyze_int.h for the rows and groups, analyze.h for the keys). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "analyze_int.h"
#include "loxstream/safetensors.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(10))

/* A number, or null when it has no finite value. */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* A name as a JSON string: itself, or escaped (lx_st_escape_dup) when it
 * is not valid UTF-8. */
static json_t *name_string(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *q = lx_st_escape_dup(s);
    j = q ? json_string(q) : NULL;
    free(q);
    return j;
}

/* {"1": e_1, "2": e_2, ...} over the ranks of o, from sums[i] / n. */
static json_t *energy_object(const lx_analyze_opts *o, const double *v, double n)
{
    json_t *e = json_object();
    int bad = !e;
    for (size_t i = 0; i < o->nranks && !bad; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", o->ranks[i]);
        bad = json_object_set_new(e, key, num(v[i] / n));
    }
    if (bad) {
        json_decref(e);
        return NULL;
    }
    return e;
}

/* Write o as one line; takes the reference. */
static lx_status dump_line(json_t *obj, int bad, FILE *out)
{
    if (!bad)
        bad = json_dumpf(obj, out, DUMP_FLAGS) != 0 || fputc('\n', out) == EOF;
    json_decref(obj);
    return bad ? lx_fail(LX_EFAIL, "analyze --json: cannot write a line (out of memory or "
                         "standard output failed)")
               : LX_OK;
}

lx_status lx_ajson_row(const lx_arow *r, const lx_analyze_opts *o, FILE *out)
{
    json_t *j = json_object(), *shape = json_array(), *sv = json_array();
    int bad = !j || !shape || !sv;
    bad = bad || json_array_append_new(shape, json_integer((json_int_t)r->m));
    bad = bad || json_array_append_new(shape, json_integer((json_int_t)r->n));
    for (int i = 0; i < r->listed && !bad; i++)
        bad = json_array_append_new(sv, num(r->S[i]));
    bad = bad || json_object_set_new(j, "tensor", name_string(r->name));
    bad = bad || json_object_set_new(j, "matrix", json_integer((json_int_t)r->matrix));
    bad = bad || json_object_set(j, "shape", shape);
    bad = bad || json_object_set_new(j, "linear", json_boolean(r->linear));
    bad = bad || json_object_set_new(j, "module", json_string(lx_amodule_names[r->module]));
    bad = bad || json_object_set_new(j, "layer", r->layer >= 0 ? json_integer(r->layer)
                                                                : json_null());
    bad = bad || json_object_set_new(j, "rank", json_integer(o->rank));
    bad = bad || json_object_set_new(j, "passes", json_integer(r->passes));
    bad = bad || json_object_set_new(j, "converged", json_boolean(r->converged));
    bad = bad || json_object_set_new(j, "err_est", num(r->err_est));
    bad = bad || json_object_set_new(j, "frobenius", num(r->frob));
    bad = bad || json_object_set(j, "singular_values", sv);
    bad = bad || json_object_set_new(j, "energy", energy_object(o, r->energy, 1.0));
    bad = bad || json_object_set_new(j, "r_align", num(r->r_align));
    for (size_t f = 0; f < o->nfinetuned && !bad; f++) {
        const lx_aft *a = &r->ft[f];
        char k1[32], k2[32], k3[32];
        lx_aft_key(k1, sizeof k1, "frobenius_ft", f, o->nfinetuned);
        lx_aft_key(k2, sizeof k2, "r_ft", f, o->nfinetuned);
        lx_aft_key(k3, sizeof k3, "retention", f, o->nfinetuned);
        bad = json_object_set_new(j, k1, a->have ? num(a->frob) : json_null()) ||
              json_object_set_new(j, k2, a->have ? num(a->r_ft) : json_null()) ||
              json_object_set_new(j, k3, a->have ? num(a->retention) : json_null());
    }
    json_decref(shape);
    json_decref(sv);
    return dump_line(j, bad, out);
}

/* One group's means: matrices, r_align, energy, and per model
 * matrices_ft, r_ft, retention (null when none). */
static json_t *group_object(const lx_amean *g, const lx_analyze_opts *o)
{
    json_t *j = json_object();
    double n = (double)g->n;
    int bad = !j;
    bad = bad || json_object_set_new(j, "matrices", json_integer((json_int_t)g->n));
    bad = bad || json_object_set_new(j, "r_align", g->n ? num(g->r_align / n) : json_null());
    bad = bad || json_object_set_new(j, "energy", g->n ? energy_object(o, g->energy, n)
                                                       : json_null());
    for (size_t f = 0; f < o->nfinetuned && !bad; f++) {
        char k1[32], k2[32], k3[32];
        double nf = (double)g->nft[f];
        lx_aft_key(k1, sizeof k1, "matrices_ft", f, o->nfinetuned);
        lx_aft_key(k2, sizeof k2, "r_ft", f, o->nfinetuned);
        lx_aft_key(k3, sizeof k3, "retention", f, o->nfinetuned);
        bad = json_object_set_new(j, k1, json_integer((json_int_t)g->nft[f])) ||
              json_object_set_new(j, k2, g->nft[f] ? num(g->r_ft[f] / nf) : json_null()) ||
              json_object_set_new(j, k3, g->nft[f] ? num(g->retention[f] / nf) : json_null());
    }
    if (bad) {
        json_decref(j);
        return NULL;
    }
    return j;
}

lx_status lx_ajson_summary(const lx_ameans *M, const lx_analyze_opts *o, size_t matrices,
                           size_t unconverged, FILE *out)
{
    json_t *j = json_object(), *ranks = json_array(), *ft = json_array();
    json_t *mods = json_object(), *layers = json_object();
    int bad = !j || !ranks || !ft || !mods || !layers;
    for (size_t i = 0; i < o->nranks && !bad; i++)
        bad = json_array_append_new(ranks, json_integer(o->ranks[i]));
    for (size_t f = 0; f < o->nfinetuned && !bad; f++)
        bad = json_array_append_new(ft, name_string(o->finetuned[f]));
    for (int m = 0; m < LX_NMODULES && !bad; m++)
        if (M->module[m].n)
            bad = json_object_set_new(mods, lx_amodule_names[m], group_object(&M->module[m], o));
    for (size_t l = 0; l < M->nlayer && !bad; l++)
        if (M->layer[l].n) {
            char key[32];
            snprintf(key, sizeof key, "%zu", l);
            bad = json_object_set_new(layers, key, group_object(&M->layer[l], o));
        }
    bad = bad || json_object_set_new(j, "tensor", json_string("*"));
    bad = bad || json_object_set_new(j, "matrices", json_integer((json_int_t)matrices));
    bad = bad || json_object_set_new(j, "unconverged", json_integer((json_int_t)unconverged));
    bad = bad || json_object_set_new(j, "rank", json_integer(o->rank));
    bad = bad || json_object_set(j, "ranks", ranks);
    bad = bad || json_object_set(j, "finetuned", ft);
    bad = bad || json_object_set_new(j, "means", group_object(&M->all, o));
    bad = bad || json_object_set(j, "modules", mods);
    bad = bad || json_object_set(j, "layers", layers);
    json_decref(ranks);
    json_decref(ft);
    json_decref(mods);
    json_decref(layers);
    return dump_line(j, bad, out);
}

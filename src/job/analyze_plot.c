/* analyze_plot.c - analyze --plot: the spectra as an SVG chart that reads
 * without other tools.  Three panels, one colour per module type (legend
 * at the bottom right):
 *   - the singular values of dW_align by index, log scale: per module
 *     type the geometric mean over its matrices (across layers), with a
 *     band from the smallest to the largest;
 *   - the energy captured by the top r, r = 1..top: the mean per type;
 *   - the energy captured by the top k (--rank) per layer index.
 * Plain SVG 1.1 written here: text stays text (titles, ticks and legend
 * can be read and searched in the file; cairo's SVG surface would turn
 * them into glyph outlines), and no dependency is added. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analyze_int.h"

#define W 1100
#define H 860

typedef struct prow {
    int module, nsv;
    long layer;
    float *sv;                     /* top values: sv[0..nsv) */
    float *en;                     /* energy of the top r = i + 1: en[0..nsv) */
    double ek;                     /* energy of the top k */
} prow;

struct lx_aplot {
    int top;
    size_t n, cap;
    prow *rows;
    size_t matrices;
};

static const char *const colour[LX_NMODULES] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

lx_status lx_aplot_new(lx_aplot **p, int top)
{
    *p = calloc(1, sizeof **p);
    if (!*p)
        return lx_fail(LX_EFAIL, "out of memory");
    (*p)->top = top > 0 ? top : 1;
    return LX_OK;
}

lx_status lx_aplot_add(lx_aplot *p, const lx_arow *r)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        prow *rows = realloc(p->rows, cap * sizeof *rows);
        if (!rows)
            return lx_fail(LX_EFAIL, "out of memory");
        p->rows = rows;
        p->cap = cap;
    }
    prow *q = &p->rows[p->n];
    q->module = r->module;
    q->layer = r->layer;
    q->nsv = r->k < p->top ? r->k : p->top;
    q->sv = malloc(((size_t)q->nsv + 1) * sizeof *q->sv);
    q->en = malloc(((size_t)q->nsv + 1) * sizeof *q->en);
    if (!q->sv || !q->en) {
        free(q->sv);
        free(q->en);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    double total = r->frob * r->frob;
    for (int i = 0; i < q->nsv; i++) {
        q->sv[i] = r->S[i];
        double e = total > 0 ? r->cum[i] / total : 0;
        q->en[i] = (float)(e > 1 ? 1 : e);
    }
    q->ek = r->r_align * r->r_align;
    p->n++;
    return LX_OK;
}

void lx_aplot_free(lx_aplot *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->rows[i].sv);
        free(p->rows[i].en);
    }
    free(p->rows);
    free(p);
}

/* ---- drawing ------------------------------------------------------------ */

/* A plot area: pixels [x0, x0 + w] x [y0, y0 + h], data [xa, xb] x [ya, yb]
 * (ya, yb as log10 when logy). */
typedef struct area {
    double x0, y0, w, h, xa, xb, ya, yb;
    int logy;
} area;

static double px(const area *a, double x)
{
    return a->x0 + (x - a->xa) / (a->xb - a->xa) * a->w;
}

static double py(const area *a, double y)
{
    double v = a->logy ? log10(y) : y;
    return a->y0 + a->h - (v - a->ya) / (a->yb - a->ya) * a->h;
}

/* Text as XML character data: markup escaped, control bytes and bytes
 * outside ASCII as '?', at most max bytes (the start elided). */
static void xml_text(FILE *f, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len > max) {
        fputs("...", f);
        s += len - max + 3;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '&')
            fputs("&amp;", f);
        else if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else
            fputc(c < 0x20 || c >= 0x7f ? '?' : c, f);
    }
}

static void text(FILE *f, double x, double y, const char *anchor, int size, const char *extra,
                 const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s>", x, y, anchor,
            size, extra);
    xml_text(f, s, 200);
    fputs("</text>\n", f);
}

/* A step of 1, 2 or 5 times a power of ten giving about n intervals over
 * span (at least min_step). */
static double nice_step(double span, int n, double min_step)
{
    double raw = span / n, mag = pow(10, floor(log10(raw > 0 ? raw : 1)));
    double step = mag;
    if (raw > 5 * mag)
        step = 10 * mag;
    else if (raw > 2 * mag)
        step = 5 * mag;
    else if (raw > mag)
        step = 2 * mag;
    return step < min_step ? min_step : step;
}

static void tick_label(char *buf, size_t len, double v, int logy)
{
    if (logy) {
        int e = (int)lround(log10(v));
        double m = v / pow(10, e);
        if (e >= -3 && e <= 4)
            snprintf(buf, len, "%g", v);
        else if (fabs(m - 1) < 1e-9)
            snprintf(buf, len, "1e%d", e);
        else
            snprintf(buf, len, "%ge%d", m, e);
    } else {
        snprintf(buf, len, "%g", fabs(v) < 1e-12 ? 0.0 : v);
    }
}

/* Frame, grid, ticks with labels, axis titles and the panel title. */
static void axes(FILE *f, const area *a, double xstep, double ystep, const char *title,
                 const char *xtitle, const char *ytitle)
{
    char buf[64];
    fprintf(f, "<g class=\"axes\" font-size=\"12\" fill=\"#222\">\n");
    /* vertical grid and x ticks */
    for (double x = ceil(a->xa / xstep - 1e-9) * xstep; x <= a->xb + 1e-9; x += xstep) {
        double X = px(a, x);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n",
                X, a->y0, X, a->y0 + a->h);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n",
                X, a->y0 + a->h, X, a->y0 + a->h + 5);
        tick_label(buf, sizeof buf, x, 0);
        text(f, X, a->y0 + a->h + 19, "middle", 12, "", buf);
    }
    /* horizontal grid and y ticks: decades (and 2, 5 within when few) on a log axis */
    if (a->logy) {
        int sub = a->yb - a->ya <= 2;
        for (int e = (int)floor(a->ya); e <= (int)ceil(a->yb); e++)
            for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) {
                if (m > 1 && !sub)
                    break;
                double v = m * pow(10, e), lv = log10(v);
                if (lv < a->ya - 1e-9 || lv > a->yb + 1e-9)
                    continue;
                double Y = py(a, v);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"#e4e4e4\"/>\n", a->x0, Y, a->x0 + a->w, Y);
                fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"#222\"/>\n", a->x0 - 5, Y, a->x0, Y);
                tick_label(buf, sizeof buf, v, 1);
                text(f, a->x0 - 8, Y + 4, "end", 12, "", buf);
            }
    } else {
        for (double y = ceil(a->ya / ystep - 1e-9) * ystep; y <= a->yb + 1e-9; y += ystep) {
            double Y = py(a, y);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                    "stroke=\"#e4e4e4\"/>\n", a->x0, Y, a->x0 + a->w, Y);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#222\"/>\n",
                    a->x0 - 5, Y, a->x0, Y);
            tick_label(buf, sizeof buf, y, 0);
            text(f, a->x0 - 8, Y + 4, "end", 12, "", buf);
        }
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#222\"/>\n", a->x0, a->y0, a->w, a->h);
    text(f, a->x0 + a->w / 2, a->y0 + a->h + 40, "middle", 14, "", xtitle);
    char rot[96];
    double yx = a->x0 - 58, yy = a->y0 + a->h / 2;
    snprintf(rot, sizeof rot, " transform=\"rotate(-90 %.1f %.1f)\"", yx, yy);
    text(f, yx, yy, "middle", 14, rot, ytitle);
    text(f, a->x0, a->y0 - 12, "start", 15, " font-weight=\"bold\"", title);
    fputs("</g>\n", f);
}

/* The dashed line at x = k, labelled. */
static void k_marker(FILE *f, const area *a, int k)
{
    if (k < a->xa || k > a->xb)
        return;
    double X = px(a, k);
    char buf[32];
    snprintf(buf, sizeof buf, "k = %d", k);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\" "
            "stroke-dasharray=\"5,4\"/>\n", X, a->y0, X, a->y0 + a->h);
    text(f, X + 4, a->y0 + 14, "start", 12, " fill=\"#444\"", buf);
}

static void polyline(FILE *f, const char *col, const double *xs, const double *ys, int n,
                     int dots)
{
    if (n <= 0)
        return;
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.1f,%.1f", i ? " " : "", xs[i], ys[i]);
    fputs("\"/>\n", f);
    for (int i = 0; dots && i < n; i++)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", xs[i], ys[i], col);
}

/* Per module type and index i < top: the geometric mean, min and max of
 * s_i and the mean energy of the top i + 1, over the rows of that type. */
typedef struct series {
    int present, n;                /* points: indices 0..n) with values */
    double *gm, *lo, *hi, *en;
} series;

static int build_series(const lx_aplot *p, series *s)
{
    int top = p->top;
    for (int m = 0; m < LX_NMODULES; m++) {
        series *q = &s[m];
        q->gm = calloc((size_t)top, sizeof *q->gm);
        q->lo = calloc((size_t)top, sizeof *q->lo);
        q->hi = calloc((size_t)top, sizeof *q->hi);
        q->en = calloc((size_t)top, sizeof *q->en);
        if (!q->gm || !q->lo || !q->hi || !q->en)
            return -1;
        for (int i = 0; i < top; i++) {
            size_t cnt = 0, ecnt = 0;
            double lsum = 0, lo = INFINITY, hi = 0, esum = 0;
            for (size_t r = 0; r < p->n; r++) {
                const prow *w = &p->rows[r];
                if (w->module != m || w->nsv == 0)
                    continue;
                q->present = 1;
                /* beyond its last value a matrix keeps its energy (rank reached) */
                esum += w->en[i < w->nsv ? i : w->nsv - 1];
                ecnt++;
                if (i < w->nsv && w->sv[i] > 0) {
                    lsum += log(w->sv[i]);
                    lo = w->sv[i] < lo ? w->sv[i] : lo;
                    hi = w->sv[i] > hi ? w->sv[i] : hi;
                    cnt++;
                }
            }
            if (ecnt)
                q->en[i] = esum / (double)ecnt;
            if (cnt) {
                q->gm[i] = exp(lsum / (double)cnt);
                q->lo[i] = lo;
                q->hi[i] = hi;
                q->n = i + 1;
            }
        }
    }
    return 0;
}

static void free_series(series *s)
{
    for (int m = 0; m < LX_NMODULES; m++) {
        free(s[m].gm);
        free(s[m].lo);
        free(s[m].hi);
        free(s[m].en);
    }
}

static void panel_decay(FILE *f, const series *s, int k)
{
    double lo = INFINITY, hi = 0;
    int nmax = 1;
    for (int m = 0; m < LX_NMODULES; m++)
        for (int i = 0; i < s[m].n; i++) {
            if (s[m].lo[i] > 0 && s[m].lo[i] < lo)
                lo = s[m].lo[i];
            if (s[m].hi[i] > hi)
                hi = s[m].hi[i];
            nmax = i + 1 > nmax ? i + 1 : nmax;
        }
    if (!(hi > 0)) {
        lo = 0.1;
        hi = 1;
    }
    area a = {80, 90, 420, 300, 1, nmax > 1 ? nmax : 2, floor(log10(lo)), ceil(log10(hi)), 1};
    if (a.yb - a.ya < 1)
        a.yb = a.ya + 1;
    fputs("<g id=\"decay\">\n", f);
    axes(f, &a, nice_step(a.xb - a.xa, 6, 1), 0, "Singular values of dW_align by index",
         "index i of the singular value", "singular value s_i (log scale)");
    double xs[4096], ys[4096];
    for (int m = 0; m < LX_NMODULES; m++) {
        const series *q = &s[m];
        int n = q->n < 2048 ? q->n : 2048;
        if (n <= 0)
            continue;
        /* the band: upper edge forward, lower edge back */
        fprintf(f, "<polygon fill=\"%s\" fill-opacity=\"0.15\" stroke=\"none\" points=\"",
                colour[m]);
        for (int i = 0; i < n; i++)
            fprintf(f, "%s%.1f,%.1f", i ? " " : "", px(&a, i + 1), py(&a, q->hi[i]));
        for (int i = n - 1; i >= 0; i--)
            fprintf(f, " %.1f,%.1f", px(&a, i + 1), py(&a, q->lo[i]));
        fputs("\"/>\n", f);
        for (int i = 0; i < n; i++) {
            xs[i] = px(&a, i + 1);
            ys[i] = py(&a, q->gm[i]);
        }
        polyline(f, colour[m], xs, ys, n, n <= 32);
    }
    k_marker(f, &a, k);
    fputs("</g>\n", f);
}

static void panel_energy(FILE *f, const lx_aplot *p, const series *s, int k)
{
    int nmax = 1;
    for (int m = 0; m < LX_NMODULES; m++)
        if (s[m].present)
            nmax = p->top;
    area a = {600, 90, 420, 300, 1, nmax > 1 ? nmax : 2, 0, 1, 0};
    fputs("<g id=\"energy\">\n", f);
    axes(f, &a, nice_step(a.xb - a.xa, 6, 1), 0.2, "Energy captured by the top r",
         "rank r", "share of ||dW_align||_F^2 in the top r");
    double xs[2048], ys[2048];
    for (int m = 0; m < LX_NMODULES; m++) {
        int n = s[m].present ? (p->top < 2048 ? p->top : 2048) : 0;
        for (int i = 0; i < n; i++) {
            xs[i] = px(&a, i + 1);
            ys[i] = py(&a, s[m].en[i]);
        }
        polyline(f, colour[m], xs, ys, n, n <= 32);
    }
    k_marker(f, &a, k);
    fputs("</g>\n", f);
}

static void panel_layers(FILE *f, const lx_aplot *p, int k)
{
    long lmin = -1, lmax = -1;
    for (size_t r = 0; r < p->n; r++)
        if (p->rows[r].layer >= 0) {
            if (lmin < 0 || p->rows[r].layer < lmin)
                lmin = p->rows[r].layer;
            if (p->rows[r].layer > lmax)
                lmax = p->rows[r].layer;
        }
    char title[96];
    snprintf(title, sizeof title, "Energy captured by the top k = %d, per layer", k);
    area a = {80, 500, 760, 280, lmin < 0 ? 0 : lmin - 0.5, lmin < 0 ? 1 : lmax + 0.5, 0, 1, 0};
    fputs("<g id=\"layers\">\n", f);
    axes(f, &a, nice_step(a.xb - a.xa, 10, 1), 0.2, title, "layer index",
         "share of ||dW_align||_F^2 in the top k");
    if (lmin < 0) {
        text(f, a.x0 + a.w / 2, a.y0 + a.h / 2, "middle", 14, " fill=\"#666\"",
             "no layer index in the tensor names");
        fputs("</g>\n", f);
        return;
    }
    size_t nl = (size_t)(lmax - lmin + 1);
    double *xs = malloc(nl * sizeof *xs), *ys = malloc(nl * sizeof *ys);
    for (int m = 0; xs && ys && m < LX_NMODULES; m++) {
        int n = 0;
        for (long l = lmin; l <= lmax; l++) {
            double sum = 0;
            size_t cnt = 0;
            for (size_t r = 0; r < p->n; r++)
                if (p->rows[r].module == m && p->rows[r].layer == l) {
                    sum += p->rows[r].ek;
                    cnt++;
                }
            if (cnt) {
                xs[n] = px(&a, (double)l);
                ys[n] = py(&a, sum / (double)cnt);
                n++;
            }
        }
        polyline(f, colour[m], xs, ys, n, n <= 64);
    }
    free(xs);
    free(ys);
    fputs("</g>\n", f);
}

static void legend(FILE *f, const series *s, int k)
{
    double x = 880, y = 510;
    fputs("<g id=\"legend\" font-size=\"13\">\n", f);
    text(f, x, y, "start", 14, " font-weight=\"bold\"", "Module type");
    y += 24;
    for (int m = 0; m < LX_NMODULES; m++) {
        if (!s[m].present)
            continue;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"3\"/>\n", x, y - 4, x + 26, y - 4, colour[m]);
        text(f, x + 34, y, "start", 13, "", lx_amodule_names[m]);
        y += 21;
    }
    y += 10;
    char buf[64];
    snprintf(buf, sizeof buf, "dashed: k = %d (--rank)", k);
    text(f, x, y, "start", 12, " fill=\"#444\"", "lines: mean over matrices");
    text(f, x, y + 17, "start", 12, " fill=\"#444\"", "band: smallest to largest");
    text(f, x, y + 34, "start", 12, " fill=\"#444\"", buf);
    fputs("</g>\n", f);
}

lx_status lx_aplot_write(const lx_aplot *p, const lx_analyze_opts *o, FILE *f)
{
    series s[LX_NMODULES];
    memset(s, 0, sizeof s);
    if (build_series(p, s) != 0) {
        free_series(s);
        return lx_fail(LX_EFAIL, "--plot: out of memory");
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Verdana, Arial, Helvetica, sans-serif\">\n",
            W, H, W, H);
    fputs("<title>loxstream analyze: spectra of dW_align</title>\n", f);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    text(f, 30, 32, "start", 19, " font-weight=\"bold\"",
         "loxstream analyze: spectra of dW_align = W_aligned - W_base");
    char sub[96];
    snprintf(sub, sizeof sub, "%zu matrices, k = %d; aligned: ", p->n, o->rank);
    fprintf(f, "<text x=\"30\" y=\"56\" font-size=\"12\" fill=\"#555\">");
    xml_text(f, sub, sizeof sub);
    xml_text(f, o->stream.aligned_path ? o->stream.aligned_path : "", 60);
    fputs(", base: ", f);
    xml_text(f, o->stream.base_path ? o->stream.base_path : "", 60);
    fputs("</text>\n", f);
    panel_decay(f, s, o->rank);
    panel_energy(f, p, s, o->rank);
    panel_layers(f, p, o->rank);
    legend(f, s, o->rank);
    fputs("</svg>\n", f);
    free_series(s);
    return LX_OK;
}

/* lxrcheck - test helper: checks `loxstream analyze` output against exact
 * values computed here.
 *
 *   lxrcheck BASE ALIGNED FINETUNED|- RANK TSV MAXERR
 *
 * TSV is analyze's output (header line first).  For every 2-D+ float
 * matrix of ALIGNED that BASE also has, the expectation comes from the
 * stored values: dW in double, full SVD through sgesvd (lx_svd_thin), then
 *   energy_r = sum_{i<r} s_i^2 / ||dW||_F^2, R_align = sqrt(energy_RANK),
 *   R_ft = ||U_RANK^T dW_ft||_F / ||dW_ft||_F with U the exact left vectors,
 *   retention = R_ft / R_align, and every singular value listed (relative
 *   to s_1; at most min(rows, cols) of them).
 * Names are unescaped (lx_unescape_name) before the look-up.  A matrix the
 * fine-tuned model lacks (or has in another dtype or shape) must have
 * empty frobenius_ft, r_ft and retention fields; converged, when there,
 * must be yes or no.
 * Every matrix must have exactly one line and every line a matrix; each
 * value must be within MAXERR (absolute for the ratios in [0, 1],
 * relative for ||dW||_F, ||dW_ft||_F and the singular values).  Prints the
 * worst difference per matrix; exits 1 on any failure, 2 on usage or input
 * errors.  Meant for small models.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/checkpoint.h"
#include "loxstream/dtype.h"
#include "loxstream/journal.h"
#include "loxstream/linalg.h"

#define MAXCOL 64

static char *fields[MAXCOL];
static int nfields;

static void split(char *line)
{
    nfields = 0;
    char *p = line;
    for (;;) {
        fields[nfields++] = p;
        char *t = strchr(p, '\t');
        if (!t || nfields == MAXCOL)
            break;
        *t = 0;
        p = t + 1;
    }
    char *nl = strchr(fields[nfields - 1], '\n');
    if (nl)
        *nl = 0;
}

static int col(char **hdr, int nh, const char *name)
{
    for (int i = 0; i < nh; i++)
        if (!strcmp(hdr[i], name))
            return i;
    return -1;
}

static double worst;

static int near(const char *what, const char *got, double want, double tol, int relative)
{
    char *end;
    double g = strtod(got, &end);
    if (end == got) {
        printf("  %s: not a number '%s'\tFAIL\n", what, got);
        return 1;
    }
    double d = fabs(g - want) / (relative && want != 0 ? fabs(want) : 1.0);
    if (d > worst)
        worst = d;
    if (!(d <= tol)) {
        printf("  %s: %s, expected %.6g (diff %.3g)\tFAIL\n", what, got, want, d);
        return 1;
    }
    return 0;
}

/* the row of this matrix: exact quantities against the TSV fields */
static int check(const lx_tensor *t, const lx_tensor *b, const lx_tensor *f, uint64_t k, int rank,
                 char **hdr, int nh, double tol)
{
    size_t m = t->shape[t->ndim - 2], n = t->shape[t->ndim - 1], p = m < n ? m : n;
    size_t es = lx_dtype_bits(t->dtype) / 8, off = k * m * n * es;
    float *x = malloc(m * n * 4), *y = malloc(m * n * 4), *A = malloc(m * n * 4);
    float *U = malloc(m * p * 4), *S = malloc(p * 4);
    double *dft = malloc(m * n * sizeof *dft);
    if (!x || !y || !A || !U || !S || !dft) {
        fprintf(stderr, "lxrcheck: out of memory\n");
        exit(2);
    }
    lx_to_f32(t->dtype, t->data + off, x, m * n);
    lx_to_f32(t->dtype, b->data + off, y, m * n);
    double fro2 = 0;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double d = (double)x[i * n + j] - (double)y[i * n + j];
            A[j * m + i] = (float)d;
            fro2 += d * d;
        }
    double ft2 = 0;
    if (f) {
        lx_to_f32(f->dtype, f->data + off, x, m * n);
        for (size_t i = 0; i < m * n; i++) {
            dft[i] = (double)x[i] - (double)y[i];
            ft2 += dft[i] * dft[i];
        }
    }
    if (lx_svd_thin(A, m, n, m, U, m, S, NULL, p) != LX_OK) {
        fprintf(stderr, "lxrcheck: %s: %s\n", t->name, lx_errmsg());
        exit(2);
    }
    int bad = 0;
    double cum = 0;
    int kk = rank < (int)p ? rank : (int)p;
    bad += near("frobenius", fields[col(hdr, nh, "frobenius")], sqrt(fro2), tol, 1);
    for (int c = 0; c < nh; c++) {
        if (strncmp(hdr[c], "energy_", 7))
            continue;
        int r = atoi(hdr[c] + 7);
        if (r > (int)p)
            r = (int)p;
        double e = 0;
        for (int i = 0; i < r; i++)
            e += (double)S[i] * S[i];
        bad += near(hdr[c], fields[c], fro2 > 0 ? e / fro2 : 0, tol, 0);
    }
    for (int i = 0; i < kk; i++)
        cum += (double)S[i] * S[i];
    double ra = fro2 > 0 ? sqrt(cum / fro2) : 0;
    bad += near("r_align", fields[col(hdr, nh, "r_align")], ra, tol, 0);
    if (!f && col(hdr, nh, "r_ft") >= 0) {
        const char *names[] = {"frobenius_ft", "r_ft", "retention"};
        for (int i = 0; i < 3; i++)
            if (*fields[col(hdr, nh, names[i])]) {
                printf("  %s: '%s' for a matrix the fine-tuned model lacks\tFAIL\n", names[i],
                       fields[col(hdr, nh, names[i])]);
                bad++;
            }
    }
    int cc = col(hdr, nh, "converged");
    if (cc >= 0 && strcmp(fields[cc], "yes") && strcmp(fields[cc], "no")) {
        printf("  converged: '%s'\tFAIL\n", fields[cc]);
        bad++;
    }
    if (f) {
        double pr = 0;
        for (int i = 0; i < kk; i++) {
            for (size_t j = 0; j < n; j++) {
                double s = 0;
                for (size_t r = 0; r < m; r++)
                    s += (double)U[(size_t)i * m + r] * dft[r * n + j];
                pr += s * s;
            }
        }
        double rf = ft2 > 0 ? sqrt(pr / ft2) : 0;
        bad += near("frobenius_ft", fields[col(hdr, nh, "frobenius_ft")], sqrt(ft2), tol, 1);
        bad += near("r_ft", fields[col(hdr, nh, "r_ft")], rf, tol, 0);
        bad += near("retention", fields[col(hdr, nh, "retention")], ra > 0 ? rf / ra : 0, tol, 0);
    }
    /* every singular value listed (at most min(m, n)), relative to s_1 */
    char *sv = fields[col(hdr, nh, "singular_values")];
    for (int i = 0; i < (int)p && sv && *sv; i++) {
        char *end;
        double g = strtod(sv, &end);
        double d = S[0] > 0 ? fabs(g - S[i]) / S[0] : fabs(g);
        if (d > worst)
            worst = d;
        if (!(d <= tol)) {
            printf("  s_%d: %g, expected %g\tFAIL\n", i + 1, g, S[i]);
            bad++;
        }
        sv = *end == ',' ? end + 1 : end;
    }
    free(x); free(y); free(A); free(U); free(S); free(dft);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: lxrcheck BASE ALIGNED FINETUNED|- RANK TSV MAXERR\n");
        return 2;
    }
    lx_checkpoint *base, *al, *ft = NULL;
    if (lx_checkpoint_open(argv[1], &base) || lx_checkpoint_open(argv[2], &al) ||
        (strcmp(argv[3], "-") && lx_checkpoint_open(argv[3], &ft))) {
        fprintf(stderr, "lxrcheck: %s\n", lx_errmsg());
        return 2;
    }
    if (lx_linalg_init(1) != LX_OK)
        return 2;
    int rank = atoi(argv[4]);
    double tol = atof(argv[6]);
    FILE *in = fopen(argv[5], "r");
    if (!in) {
        perror(argv[5]);
        return 2;
    }
    static char hline[8192], line[65536];
    if (!fgets(hline, sizeof hline, in)) {
        fprintf(stderr, "lxrcheck: %s: empty\n", argv[5]);
        return 2;
    }
    split(hline);
    char *hdr[MAXCOL];
    int nh = nfields;
    memcpy(hdr, fields, sizeof hdr);
    const char *need[] = {"tensor", "matrix", "frobenius", "r_align", "singular_values"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (col(hdr, nh, need[i]) < 0) {
            fprintf(stderr, "lxrcheck: no column %s\n", need[i]);
            return 2;
        }
    if (ft && (col(hdr, nh, "r_ft") < 0 || col(hdr, nh, "retention") < 0)) {
        fprintf(stderr, "lxrcheck: no r_ft/retention columns\n");
        return 2;
    }
    int failures = 0;
    size_t lines = 0, expected = 0;
    for (size_t i = 0; i < al->ntensors; i++) {
        const lx_tensor *t = &al->tensors[i];
        if (t->ndim >= 2 && lx_dtype_is_transformable(t->dtype) && t->nelem &&
            lx_checkpoint_find(base, t->name))
            expected += t->nelem / (t->shape[t->ndim - 2] * t->shape[t->ndim - 1]);
    }
    while (fgets(line, sizeof line, in)) {
        split(line);
        lines++;
        if (nfields != nh) {
            printf("line %zu: %d fields, header %d\tFAIL\n", lines, nfields, nh);
            failures++;
            continue;
        }
        char *name = lx_unescape_name(fields[0], strlen(fields[0]));
        const lx_tensor *t = name ? lx_checkpoint_find(al, name) : NULL;
        const lx_tensor *b = name ? lx_checkpoint_find(base, name) : NULL;
        const lx_tensor *f = ft && name ? lx_checkpoint_find(ft, name) : NULL;
        free(name);
        if (!t || !b || t->ndim < 2) {
            printf("%s: not a matrix of both models\tFAIL\n", fields[0]);
            failures++;
            continue;
        }
        if (f && (f->dtype != t->dtype || f->ndim != t->ndim ||
                  memcmp(f->shape, t->shape, t->ndim * sizeof t->shape[0])))
            f = NULL; /* not comparable: no R_ft expected */
        worst = 0;
        int bad = check(t, b, f, strtoull(fields[1], NULL, 10), rank, hdr, nh, tol);
        printf("%s\t%s\tworst %.3e%s\n", fields[0], fields[1], worst, bad ? "\tFAIL" : "");
        failures += bad != 0;
    }
    fclose(in);
    if (lines != expected) {
        printf("%zu lines, %zu matrices expected\tFAIL\n", lines, expected);
        failures++;
    }
    lx_checkpoint_close(base);
    lx_checkpoint_close(al);
    lx_checkpoint_close(ft);
    return failures ? 1 : 0;
}

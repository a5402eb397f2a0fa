/* lxcheck - test helper: checks an apply output against an exact SVD.
 *
 *   lxcheck BASE ALIGNED OUTPUT RANK ALPHA MAXERR
 *
 * For every tensor of ALIGNED: 2-D+ float tensors are checked per matrix
 * against the exact expectation computed here from the stored values
 * (dW in double, full SVD through LAPACK's sgesvd on dW, truncation to
 * RANK, RANK 0 meaning dW itself), with
 *     err = ||out - round(aligned + alpha * T_k)||_F / ||alpha * T_k||_F
 * (round = to the stored dtype, so bf16 rounding of both sides cancels);
 * a matrix with T_k == 0 must come out bit-identical.  Tensors with fewer
 * than 2 dimensions, or not float, must be bit-identical to ALIGNED.
 * Prints one line per matrix ("name<TAB>matrix<TAB>err") and exits 1 if
 * any err > MAXERR or any copy differs, 2 on usage or input errors.
 * A base tensor of another float dtype than the aligned one (a mixed pair)
 * is read as stored; the output is in the aligned dtype.
 * LXCHECK_ONLY=NAME restricts the check to one tensor (for benchmarks).
 * LXCHECK_ANCHOR=base: the expectation is round(base + alpha * T_k) (apply
 * --anchor base), and copies must equal the base tensor where base has it
 * with the same dtype and size.
 * Meant for small models: it materialises one matrix and its SVD.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/checkpoint.h"
#include "loxstream/dtype.h"
#include "loxstream/linalg.h"
#include "exact.h"

static int check_matrix(const char *name, uint64_t b, lx_dtype dt, const unsigned char *al,
                        lx_dtype dtb, const unsigned char *ba, const unsigned char *out, size_t m, size_t n,
                        int rank, double alpha, double maxerr)
{
    size_t es = lx_dtype_bits(dt) / 8;
    float *o = malloc(m * n * sizeof *o), *e = malloc(m * n * sizeof *e);
    float *expect_f = malloc(m * n * sizeof *expect_f);
    unsigned char *expect = malloc(m * n * es);
    if (!o || !e || !expect_f || !expect) {
        fprintf(stderr, "lxcheck: out of memory\n");
        exit(2);
    }
    lx_to_f32(dt, out, o, m * n);
    double *T = exact_truncation2("lxcheck", name, dt, al, dtb, ba, m, n, rank);
    double num = 0, den = 0;
    for (size_t i = 0; i < m * n; i++)
        expect_f[i] = (float)(alpha * T[i]);
    const char *anchor = getenv("LXCHECK_ANCHOR");
    const unsigned char *w0 = anchor && !strcmp(anchor, "base") ? ba : al;
    lx_add_f32(dt, w0, expect_f, expect, m * n);
    lx_to_f32(dt, expect, e, m * n); /* expected output as f32 */
    for (size_t i = 0; i < m * n; i++) {
        double d = (double)o[i] - (double)e[i];
        num += d * d;
        den += (alpha * T[i]) * (alpha * T[i]);
    }
    int bad;
    double err;
    if (den == 0) {
        err = memcmp(out, w0, m * n * es) ? INFINITY : 0;
        bad = err != 0;
    } else {
        err = sqrt(num / den);
        bad = !(err <= maxerr);
    }
    printf("%s\t%llu\t%.3e%s\n", name, (unsigned long long)b, err, bad ? "\tFAIL" : "");
    free(o); free(e); free(T); free(expect_f); free(expect);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: lxcheck BASE ALIGNED OUTPUT RANK ALPHA MAXERR\n");
        return 2;
    }
    lx_checkpoint *base, *al, *out;
    if (lx_checkpoint_open(argv[1], &base) || lx_checkpoint_open(argv[2], &al) ||
        lx_checkpoint_open(argv[3], &out)) {
        fprintf(stderr, "lxcheck: %s\n", lx_errmsg());
        return 2;
    }
    if (lx_linalg_init(1) != LX_OK)
        return 2;
    int rank = atoi(argv[4]);
    double alpha = atof(argv[5]), maxerr = atof(argv[6]);
    int failures = 0;
    if (out->ntensors != al->ntensors) {
        fprintf(stderr, "lxcheck: output has %zu tensors, aligned %zu\n", out->ntensors, al->ntensors);
        failures++;
    }
    const char *only = getenv("LXCHECK_ONLY"); /* check this tensor only */
    for (size_t i = 0; i < al->ntensors; i++) {
        const lx_tensor *t = &al->tensors[i];
        if (only && strcmp(only, t->name))
            continue;
        const lx_tensor *o = lx_checkpoint_find(out, t->name);
        const lx_tensor *b = lx_checkpoint_find(base, t->name);
        if (!o || o->dtype != t->dtype || o->nbytes != t->nbytes) {
            printf("%s\t-\tmissing or different in output\tFAIL\n", t->name);
            failures++;
            continue;
        }
        if (t->ndim < 2 || !lx_dtype_is_transformable(t->dtype) || !b || t->nelem == 0) {
            const char *anchor = getenv("LXCHECK_ANCHOR");
            const lx_tensor *src = anchor && !strcmp(anchor, "base") && b &&
                                   b->dtype == t->dtype && b->nbytes == t->nbytes ? b : t;
            int same = t->nbytes == 0 || !memcmp(src->data, o->data, t->nbytes);
            printf("%s\t-\t%s\n", t->name, same ? "copied" : "copy differs\tFAIL");
            failures += !same;
            continue;
        }
        size_t m = t->shape[t->ndim - 2], n = t->shape[t->ndim - 1];
        size_t es = lx_dtype_bits(t->dtype) / 8, esb = lx_dtype_bits(b->dtype) / 8;
        uint64_t batch = t->nelem / (m * n);
        for (uint64_t k = 0; k < batch; k++) {
            size_t off = k * m * n * es, offb = k * m * n * esb;
            failures += check_matrix(t->name, k, t->dtype, t->data + off, b->dtype,
                                     b->data + offb, o->data + off, m, n, rank, alpha, maxerr);
        }
    }
    lx_checkpoint_close(base);
    lx_checkpoint_close(al);
    lx_checkpoint_close(out);
    return failures ? 1 : 0;
}

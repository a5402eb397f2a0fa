/* test_pass_kernel.c - the AVX-512 pass products (src/numeric/pass_kernel.c)
 * against the same products summed in double: Y = P V into a column-major
 * Y with a leading dimension beyond the panel, Z = P^T Y (+ the old Z with
 * acc), for panel heights that use every group size (16, 8 and single
 * rows) and their mixes, widths l = 1 .. 16, short and odd rows (n = 1 ..
 * 37 and a long one), with guard values around both outputs that must
 * stay untouched.  The tolerance is float rounding of sums of n (or h)
 * terms.  Also: the same inputs give the same bits on every call, and
 * LOXSTREAM_PASS_KERNEL=blis turns it off.  A CPU without AVX-512F skips
 * (exit 77).
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../src/numeric/pass_kernel.h"
#include "kernel_gate.h"

#define GUARD 1234.5f
#define PAD 32

static uint64_t rng = 88172645463325252ull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* One case: P h x n (row stride n + 3: the kernel reads only n of each
 * row), V n x l, Y in ldy = h + 5 rows, Z n x l (acc: from a random
 * start).  Checks against double sums of the float inputs. */
static void check_case(size_t h, size_t n, size_t l, int acc)
{
    size_t ldy = h + 5, ldp = n + 3;
    float *P = malloc(h * ldp * sizeof *P), *V = malloc(n * l * sizeof *V);
    float *Y = malloc((ldy * l + 2 * PAD) * sizeof *Y), *Z = malloc((n * l + 2 * PAD) * sizeof *Z);
    float *Z0 = malloc(n * l * sizeof *Z0);
    double *Yd = malloc(h * l * sizeof *Yd);
    assert_true(P && V && Y && Z && Z0 && Yd);
    for (size_t i = 0; i < h * ldp; i++)
        P[i] = i % ldp < n ? rnd() : NAN; /* the stride's gap is never read */
    for (size_t i = 0; i < n * l; i++)
        V[i] = rnd();
    for (size_t i = 0; i < ldy * l + 2 * PAD; i++)
        Y[i] = GUARD;
    for (size_t i = 0; i < n * l + 2 * PAD; i++)
        Z[i] = GUARD;
    for (size_t i = 0; i < n * l; i++)
        Z[PAD + i] = Z0[i] = acc ? rnd() : GUARD; /* without acc the old Z is ignored */
    lx_pass_panel(P, ldp, h, n, V, l, Y + PAD, ldy, Z + PAD, acc);
    /* Y[i, j] = sum_k P[i, k] V[k, j], at Y[i + j ldy] */
    for (size_t i = 0; i < h; i++)
        for (size_t j = 0; j < l; j++) {
            double s = 0, a = 0;
            for (size_t k = 0; k < n; k++) {
                s += (double)P[i * ldp + k] * V[k * l + j];
                a += fabs((double)P[i * ldp + k] * V[k * l + j]);
            }
            Yd[i * l + j] = s;
            double got = Y[PAD + i + j * ldy];
            if (fabs(got - s) > 4 * (double)n * 6e-8 * a + 1e-30)
                fail_msg("h %zu n %zu l %zu: Y[%zu,%zu] = %.9g, expected %.9g", h, n, l, i, j, got, s);
        }
    /* rows h .. ldy of each column and the pads untouched */
    for (size_t j = 0; j < l; j++)
        for (size_t i = h; i < ldy; i++)
            assert_true(Y[PAD + i + j * ldy] == GUARD);
    for (size_t i = 0; i < PAD; i++)
        assert_true(Y[i] == GUARD && Y[PAD + ldy * l + i] == GUARD && Z[i] == GUARD &&
                    Z[PAD + n * l + i] == GUARD);
    /* Z[k, j] = (old) + sum_i P[i, k] Y[i, j], with the kernel's own Y */
    for (size_t k = 0; k < n; k++)
        for (size_t j = 0; j < l; j++) {
            double s = acc ? Z0[k * l + j] : 0, a = fabs(s);
            for (size_t i = 0; i < h; i++) {
                double t = (double)P[i * ldp + k] * Y[PAD + i + j * ldy];
                s += t;
                a += fabs(t);
            }
            double got = Z[PAD + k * l + j];
            if (fabs(got - s) > 4 * (double)(h + 1) * 6e-8 * a + 1e-30)
                fail_msg("h %zu n %zu l %zu acc %d: Z[%zu,%zu] = %.9g, expected %.9g", h, n, l, acc,
                         k, j, got, s);
        }
    free(P);
    free(V);
    free(Y);
    free(Z);
    free(Z0);
    free(Yd);
}

static void against_double_sums(void **state)
{
    (void)state;
    const size_t hs[] = {1, 5, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 40, 64};
    const size_t ns[] = {1, 2, 3, 4, 5, 7, 8, 13, 37};
    for (size_t a = 0; a < sizeof hs / sizeof hs[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++)
            for (size_t l = 1; l <= LX_PASS_KERNEL_MAX_L; l += (l < 4 ? 1 : 3))
                for (int acc = 0; acc <= 1; acc++)
                    check_case(hs[a], ns[b], l, acc);
    check_case(16, 1000, 16, 1); /* a long row, the width of a real pass */
    check_case(24, 2049, 11, 0);
}

/* The same call twice: the same bits. */
static void same_bits_every_call(void **state)
{
    (void)state;
    size_t h = 40, n = 300, l = 16;
    float *P = malloc(h * n * sizeof *P), *V = malloc(n * l * sizeof *V);
    float *Y1 = malloc(h * l * sizeof *Y1), *Y2 = malloc(h * l * sizeof *Y2);
    float *Z1 = malloc(n * l * sizeof *Z1), *Z2 = malloc(n * l * sizeof *Z2);
    assert_true(P && V && Y1 && Y2 && Z1 && Z2);
    for (size_t i = 0; i < h * n; i++)
        P[i] = rnd();
    for (size_t i = 0; i < n * l; i++)
        V[i] = rnd();
    lx_pass_panel(P, n, h, n, V, l, Y1, h, Z1, 0);
    lx_pass_panel(P, n, h, n, V, l, Y2, h, Z2, 0);
    assert_memory_equal(Y1, Y2, h * l * sizeof *Y1);
    assert_memory_equal(Z1, Z2, n * l * sizeof *Z1);
    free(P);
    free(V);
    free(Y1);
    free(Y2);
    free(Z1);
    free(Z2);
}

static void limits(void **state)
{
    (void)state;
    assert_true(lx_pass_kernel_ok(16, 4096));
    assert_false(lx_pass_kernel_ok(17, 4096));
    assert_false(lx_pass_kernel_ok(0, 4096));
    assert_false(lx_pass_kernel_ok(16, LX_PASS_KERNEL_MAX_LD + 1));
}

int main(void)
{
    /* decided once per process: the environment's switch first */
    int gate = kernel_gate("LOXSTREAM_PASS_KERNEL", "blis", lx_pass_kernel_on,
                           "no AVX-512F on this CPU (the passes use BLIS)");
    if (gate >= 0)
        return gate;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(against_double_sums),
        cmocka_unit_test(same_bits_every_call),
        cmocka_unit_test(limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

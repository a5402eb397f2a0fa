/* gemmrate.c - the rate of the products of one randomized-SVD pass, as
 * loxstream makes them: each thread takes row chunks of a 4096 x 11008 f32
 * matrix and, per panel of 16 rows, computes Y_b = A_b V and Z_c += A_b^T Y_b
 * (l = 16), through BLIS (lx_sgemm_panel) and, where the CPU has AVX-512F,
 * through loxstream's own pass kernel (pass_kernel.c, on a panel stride
 * padded as krylov.c pads it).  The matrix is already f32 (no conversion):
 * this is the GEMM part alone, the floor that bench/run.sh divides the
 * run's flop count by (at the faster of the two rates).
 *
 *   bench/gemmrate [THREADS]      prints "gemm GFLOP/s: X (BLIS ...)" and
 *                                 "gemm GFLOP/s: Y (pass kernel ...)"
 */
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/linalg.h"
#include "loxstream/sys.h"
#include "../src/numeric/pass_kernel.h"

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1)
        threads = 1;
    if (lx_linalg_init(1) != LX_OK) {
        fprintf(stderr, "gemmrate: %s\n", lx_errmsg());
        return 1;
    }
    size_t m = 4096, n = 11008, l = 16, ph = 16, nch = 16, chunk = m / nch;
    float *A = lx_falloc(m * n), *V = lx_falloc(n * l), *Y = lx_falloc(m * l);
    float *Z = lx_falloc(nch * n * l);
    if (!A || !V || !Y || !Z) {
        fprintf(stderr, "gemmrate: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < m * n; i++)
        A[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < n * l; i++)
        V[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = lx_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (size_t c = 0; c < nch; c++) {
            float *Zc = Z + c * n * l;
            for (size_t r0 = c * chunk; r0 < (c + 1) * chunk; r0 += ph) {
                const float *Ab = A + r0 * n;
                lx_sgemm_panel(ph, l, n, 1.0f, Ab, (ptrdiff_t)n, 1, V, (ptrdiff_t)l, 1, 0.0f,
                               Y + r0, 1, (ptrdiff_t)m);
                lx_sgemm_panel(n, l, ph, 1.0f, Ab, 1, (ptrdiff_t)n, Y + r0, 1, (ptrdiff_t)m,
                               r0 == c * chunk ? 0.0f : 1.0f, Zc, 1, (ptrdiff_t)n);
            }
        }
        double rate = 4.0 * (double)m * (double)n * (double)l / (lx_now() - t0) / 1e9;
        if (rate > best)
            best = rate;
    }
    printf("gemm GFLOP/s: %.1f (BLIS, %d threads, best of 5 passes over 4096 x 11008, l = 16)\n",
           best, threads);
    if (lx_pass_kernel_on()) {
        /* the same products through the pass kernel, rows 11024 floats apart */
        size_t ld = 11024;
        float *Ap = lx_falloc(m * ld);
        if (!Ap) {
            fprintf(stderr, "gemmrate: out of memory\n");
            return 1;
        }
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                Ap[i * ld + j] = A[i * n + j];
        best = 0;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = lx_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
            for (size_t c = 0; c < nch; c++) {
                float *Zc = Z + c * n * l;
                for (size_t r0 = c * chunk; r0 < (c + 1) * chunk; r0 += ph)
                    lx_pass_panel(Ap + r0 * ld, ld, ph, n, V, l, Y + r0, m, Zc, r0 != c * chunk);
            }
            double rate = 4.0 * (double)m * (double)n * (double)l / (lx_now() - t0) / 1e9;
            if (rate > best)
                best = rate;
        }
        printf("gemm GFLOP/s: %.1f (pass kernel, %d threads, best of 5 passes over 4096 x 11008, "
               "l = 16)\n", best, threads);
        free(Ap);
    }
    free(A);
    free(V);
    free(Y);
    free(Z);
    return 0;
}

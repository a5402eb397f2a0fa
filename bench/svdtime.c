/* svdtime.c - CPU and wall time of the randomized SVD of one matrix of a
 * base/aligned pair, as apply factors it (lx_engine_factor: the same seed,
 * rank, tol and row source), repeated on warm inputs; with the number of
 * passes, err_est and a checksum of the factors' bits, so that two builds
 * can be compared for both speed and identical results.
 *
 *   bench/svdtime BASE ALIGNED TENSOR [THREADS [RUNS]]
 *
 * Prints one line per run (wall s, CPU s of the process: user + system),
 * then "min cpu X s, min wall Y s", and two floors: the run's GEMM flops
 * (to divide by bench/gemmrate's rate) and the time one thread takes to
 * read the matrix's bytes in both inputs, the memory floor of one pass's
 * conversion.  THREADS default 1, RUNS default 5.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/dtype.h"
#include "loxstream/engine.h"
#include "loxstream/linalg.h"
#include "loxstream/sys.h"

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* FNV-1a over the bytes of n floats. */
static uint64_t fnv(uint64_t h, const float *x, size_t n)
{
    const unsigned char *p = (const unsigned char *)x;
    for (size_t i = 0; i < n * sizeof(float); i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: svdtime BASE ALIGNED TENSOR [THREADS [RUNS]]\n");
        return 2;
    }
    /* as loxstream itself runs (main.c): OpenMP threads sleep when idle */
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        execv("/proc/self/exe", argv);
    }
    int threads = argc > 4 ? atoi(argv[4]) : 1, runs = argc > 5 ? atoi(argv[5]) : 5;
    if (threads < 1)
        threads = 1;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    lx_engine_opts e;
    lx_engine_opts_default(&e);
    e.base_path = argv[1];
    e.aligned_path = argv[2];
    e.threads = threads;
    lx_inputs in = {0};
    lx_status st = lx_linalg_init(threads);
    if (st == LX_OK)
        st = lx_engine_filter(&in, &e);
    if (st == LX_OK)
        st = lx_engine_open(&in, &e, e.svd.rank, 0);
    if (st != LX_OK) {
        fprintf(stderr, "svdtime: %s\n", lx_errmsg());
        return 1;
    }
    const lx_plan_item *it = NULL;
    for (size_t i = 0; i < in.plan.n; i++)
        if (strcmp(in.plan.items[i].aligned->name, argv[3]) == 0)
            it = &in.plan.items[i];
    if (!it || it->action != LX_ACT_LOWRANK) {
        fprintf(stderr, "svdtime: no matrix '%s' to factor\n", argv[3]);
        return 1;
    }
    double best_cpu = 1e30, best_wall = 1e30, flops = 0;
    for (int r = 0; r < runs; r++) {
        lx_factors f = {0};
        lx_factor_stats s = {0};
        double c0 = cpu_seconds(), t0 = lx_now();
        st = lx_engine_factor(&e, it, 0, lx_engine_rank(it, e.svd.rank), &f, &s);
        double wall = lx_now() - t0, cpu = cpu_seconds() - c0;
        if (st != LX_OK) {
            fprintf(stderr, "svdtime: %s\n", lx_errmsg());
            return 1;
        }
        uint64_t h = 0xcbf29ce484222325ULL;
        h = fnv(h, f.U, f.m * (size_t)f.k);
        h = fnv(h, f.S, (size_t)f.k);
        h = fnv(h, f.V, f.n * (size_t)f.k);
        printf("run %d: wall %.3f s, cpu %.3f s, %d passes, err_est %.3g, s1 %.6g, factors %016llx "
               "(||A||_F^2 %a, err_est %a)\n",
               r + 1, wall, cpu, f.passes, f.err_est, f.S[0], (unsigned long long)h, f.frob2,
               f.err_est);
        flops = 4.0 * f.passes * (double)it->m * (double)it->n * f.l;
        best_cpu = cpu < best_cpu ? cpu : best_cpu;
        best_wall = wall < best_wall ? wall : best_wall;
        lx_factors_free(&f);
    }
    printf("min cpu %.3f s, min wall %.3f s (%d threads)\n", best_cpu, best_wall, threads);
    /* the memory floor: a sum of the 64-bit words of both inputs' bytes */
    size_t bytes = it->m * it->n * (lx_dtype_bits(it->aligned->dtype) / 8), words = bytes / 8;
    double best_read = 1e30;
    uint64_t sum = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = lx_now();
        for (int side = 0; side < 2; side++) {
            const unsigned char *p = side ? it->base->data : it->aligned->data;
            uint64_t acc[8] = {0};
            for (size_t i = 0; i + 8 <= words; i += 8)
                for (int j = 0; j < 8; j++) {
                    uint64_t u;
                    memcpy(&u, p + 8 * (i + j), 8);
                    acc[j] += u;
                }
            for (int j = 0; j < 8; j++)
                sum += acc[j];
        }
        double t = lx_now() - t0;
        best_read = t < best_read ? t : best_read;
    }
    printf("floors: %.2f GFLOP of pass products; reading both inputs (%.0f MB) on one thread: "
           "%.1f ms (%.1f GB/s)%s\n", flops / 1e9, 2.0 * bytes / 1e6, best_read * 1e3,
           2.0 * bytes / best_read / 1e9, sum == 42 ? " " : "");
    lx_inputs_free(&in);
    return 0;
}

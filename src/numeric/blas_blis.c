/* blas_blis.c - GEMM through BLIS, and the choice of BLIS kernels.
 *
 * The only file that includes blis.h (it conflicts with FLAME.h).
 *
 * BLIS 0.9.0 picks its kernels from CPUID when it initialises.  On a CPU it
 * does not know (e.g. AMD family 0x1A, Zen 5) it falls back to "generic",
 * about 3-4 times slower than its AVX2/AVX-512 kernels, although those
 * would run fine.  BLIS_ARCH_TYPE overrides the choice but must be set
 * before BLIS initialises, and asking BLIS which arch it would pick
 * (bli_arch_query_id) initialises it.  So loxstream asks in a forked child,
 * and in the parent sets BLIS_ARCH_TYPE to the best sub-configuration the
 * CPU's instruction set supports before its own bli_init().  A value the
 * user set is always respected.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blis.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "loxstream/linalg.h"
#include "pass_kernel.h"

lx_status lx_flame_init(void); /* lapack_flame.c */

static int initialised;
static int nthreads = 1;
static _Thread_local const atomic_int *local_width; /* non-NULL: the count, read at each use */
static _Thread_local int local_most;                /* local_width's ceiling */
static char description[256];

/* BLIS's own pick, from a child process so the parent stays uninitialised. */
static int probe_blis_arch(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        bli_init();
        int id = (int)bli_arch_query_id();
        ssize_t w = write(fds[1], &id, sizeof id);
        _exit(w == (ssize_t)sizeof id ? 0 : 1);
    }
    close(fds[1]);
    int id = -1;
    ssize_t r;
    do
        r = read(fds[0], &id, sizeof id);
    while (r < 0 && errno == EINTR);
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (r != (ssize_t)sizeof id || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return id;
}

/* The sub-configuration to use instead of "generic", or -1 for none. */
static int fallback_arch(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (__builtin_cpu_is("amd"))
        return avx2 ? BLIS_ARCH_ZEN3 : -1;
    if (avx512)
        return BLIS_ARCH_SKX;
    if (avx2)
        return BLIS_ARCH_HASWELL;
#endif
    return -1;
}

lx_status lx_linalg_init(int threads)
{
    if (initialised) {
        if (threads > 0)
            lx_linalg_set_threads(threads);
        return LX_OK;
    }
    const char *how = "detected by BLIS";
    char how_buf[160];
    const char *user = getenv("BLIS_ARCH_TYPE");
    if (user && *user) {
        snprintf(how_buf, sizeof how_buf, "set by BLIS_ARCH_TYPE=%s", user);
        how = how_buf;
    } else {
        int id = probe_blis_arch();
        int better = id == BLIS_ARCH_GENERIC ? fallback_arch() : -1;
        if (better >= 0) {
            char num[16];
            snprintf(num, sizeof num, "%d", better);
            setenv("BLIS_ARCH_TYPE", num, 1);
            how = "chosen by loxstream: BLIS does not recognise this CPU and would use 'generic'";
        }
    }
    bli_init();
    /* BLIS itself always runs single-threaded: see lx_sgemm. */
    bli_thread_set_num_threads(1);
    lx_status st = lx_flame_init();
    if (st != LX_OK)
        return st;
    if (threads > 0)
        lx_linalg_set_threads(threads);
    snprintf(description, sizeof description, "BLIS %s, kernels %s (%s); pass products: %s",
             bli_info_get_version_str(), bli_arch_string(bli_arch_query_id()), how,
             lx_pass_kernel_on() ? "AVX-512 kernel" : "BLIS");
    initialised = 1;
    return LX_OK;
}

void lx_linalg_set_threads(int threads)
{
    nthreads = threads > 0 ? threads : 1;
}

void lx_linalg_follow_threads(const atomic_int *width, int most)
{
    local_width = width;
    local_most = most > 0 ? most : 1;
}

int lx_linalg_threads(void)
{
    if (local_width) {
        int t = atomic_load_explicit(local_width, memory_order_relaxed);
        return t < 1 ? 1 : t > local_most ? local_most : t;
    }
    return nthreads;
}

int lx_linalg_most_threads(void)
{
    return local_width ? local_most : lx_linalg_threads();
}

const char *lx_linalg_describe(void)
{
    return initialised ? description : "BLIS (not initialised)";
}

/* Results must not depend on the number of threads.  BLIS's own threading
 * partitions C by thread count, and for skinny shapes its "sup" code picks
 * kernels (with different summation orders) by sub-problem size, so the
 * bits of C changed between 1 and 2 threads.  Instead C is cut into blocks
 * whose size depends only on (m, n) - up to LX_GEMM_MAX_BLOCKS blocks of
 * rows (of columns when C is wider than tall), at least LX_GEMM_MIN_BLOCK
 * long, multiples of 16 - and each block is one single-threaded BLIS call;
 * the threads share out the blocks.  Every element of C is then computed
 * by the same call whatever the thread count.
 *
 * BLIS's "sup" (small/unpacked) kernels make the skinny panel products
 * about 4x faster than the packed path, but in BLIS 0.9.0 they read past
 * the end of their operands (found by AddressSanitizer).  For the two
 * layouts of lx_sgemm_panel the over-read was at most 64 bytes (operands
 * placed before an unmapped page, 3000 random shapes), so those operands
 * come from lx_falloc, which adds LX_GEMM_PAD bytes; every other product
 * uses the packed path, which reads only what it is given. */
#define LX_GEMM_MIN_BLOCK 64
#define LX_GEMM_MAX_BLOCKS 16

static void gemm_blocks(size_t m, size_t n, size_t k, float alpha, const float *A, ptrdiff_t rsa,
                        ptrdiff_t csa, const float *B, ptrdiff_t rsb, ptrdiff_t csb, float beta,
                        float *C, ptrdiff_t rsc, ptrdiff_t csc, int allow_sup)
{
    if (m == 0 || n == 0)
        return;
    int by_rows = m >= n;
    size_t len = by_rows ? m : n;
    size_t block = (len + LX_GEMM_MAX_BLOCKS - 1) / LX_GEMM_MAX_BLOCKS;
    block = (block + 15) & ~(size_t)15;
    if (block < LX_GEMM_MIN_BLOCK)
        block = LX_GEMM_MIN_BLOCK;
    long nblocks = (long)((len + block - 1) / block);
    int nt = lx_linalg_threads();
    int threads = nblocks < nt ? (int)nblocks : nt;
#ifdef _OPENMP
    if (omp_in_parallel())
        threads = 1; /* called by one of the threads of a pass (krylov.c) */
#endif
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (long b = 0; b < nblocks; b++) {
        size_t at = (size_t)b * block;
        size_t cnt = len - at < block ? len - at : block;
        float a = alpha, bt = beta;
        rntm_t rntm = BLIS_RNTM_INITIALIZER;
        bli_rntm_set_num_threads(1, &rntm);
        if (!allow_sup)
            bli_rntm_disable_l3_sup(&rntm);
        if (by_rows)
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)cnt, (dim_t)n, (dim_t)k, &a,
                      (float *)(A + (ptrdiff_t)at * rsa), (inc_t)rsa, (inc_t)csa, (float *)B,
                      (inc_t)rsb, (inc_t)csb, &bt, C + (ptrdiff_t)at * rsc, (inc_t)rsc,
                      (inc_t)csc, NULL, &rntm);
        else
            bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)cnt, (dim_t)k, &a,
                      (float *)A, (inc_t)rsa, (inc_t)csa, (float *)(B + (ptrdiff_t)at * csb),
                      (inc_t)rsb, (inc_t)csb, &bt, C + (ptrdiff_t)at * csc, (inc_t)rsc,
                      (inc_t)csc, NULL, &rntm);
    }
}

void lx_sgemm(size_t m, size_t n, size_t k, float alpha, const float *A, ptrdiff_t rsa,
              ptrdiff_t csa, const float *B, ptrdiff_t rsb, ptrdiff_t csb, float beta, float *C,
              ptrdiff_t rsc, ptrdiff_t csc)
{
    gemm_blocks(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc, 0);
}

void lx_sgemm_panel(size_t m, size_t n, size_t k, float alpha, const float *A, ptrdiff_t rsa,
                    ptrdiff_t csa, const float *B, ptrdiff_t rsb, ptrdiff_t csb, float beta,
                    float *C, ptrdiff_t rsc, ptrdiff_t csc)
{
    gemm_blocks(m, n, k, alpha, A, rsa, csa, B, rsb, csb, beta, C, rsc, csc, 1);
}

void lx_sgemm_panel_serial(size_t m, size_t n, size_t k, float alpha, const float *A,
                           ptrdiff_t rsa, ptrdiff_t csa, const float *B, ptrdiff_t rsb,
                           ptrdiff_t csb, float beta, float *C, ptrdiff_t rsc, ptrdiff_t csc)
{
    if (m == 0 || n == 0)
        return;
    float a = alpha, bt = beta;
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &rntm);
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, (dim_t)m, (dim_t)n, (dim_t)k, &a, (float *)A,
                 (inc_t)rsa, (inc_t)csa, (float *)B, (inc_t)rsb, (inc_t)csb, &bt, C, (inc_t)rsc,
                 (inc_t)csc, NULL, &rntm);
}

float *lx_falloc(size_t n)
{
    size_t bytes = n * sizeof(float) + LX_GEMM_PAD;
    if (n > (SIZE_MAX - LX_GEMM_PAD) / sizeof(float))
        return NULL;
    bytes = (bytes + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

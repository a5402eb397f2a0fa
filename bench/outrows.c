/* outrows.c - the output rows of one 4096 x 11008 matrix (a Llama-2-7B
 * down_proj) as apply makes them: per panel of LX_RSVD_PANEL_ROWS rows,
 * tiles of 8 rows shared out among the threads, each
 * lx_factors_add_rows (anchor + alpha U_k S_k V_k^T, rounded to the dtype
 * and checked for overflow) into one of 3 panel buffers in turn, as the
 * writer's pool.  The factors are made up (rank 6, alpha 1.25): the
 * kernel's cost does not depend on their values.  The floor, measured in
 * the same run: memcpy of the same anchor bytes into the same buffers
 * (reading 90 MB and writing 90 MB for BF16).
 *
 *   bench/outrows [THREADS [DTYPE]]    DTYPE BF16 (default), F16 or F32
 *
 * Prints the best of 7 passes of each (wall and process CPU ms) and a
 * checksum of the output's bits, so that two builds can be compared for
 * identical results as well as speed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loxstream/dtype.h"
#include "loxstream/rsvd.h"
#include "loxstream/sys.h"

#define TILE 8
#define BUFFERS 3

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One pass over the matrix; floor: memcpy instead of the kernel.  The
 * checksum (FNV-1a of every panel, in order) is taken when sum != NULL. */
static size_t pass(const lx_factors *f, lx_dtype dt, const unsigned char *A,
                   unsigned char **buf, int threads, int floor, uint64_t *sum)
{
    size_t m = f->m, n = f->n, es = lx_dtype_bits(dt) / 8, P = LX_RSVD_PANEL_ROWS;
    size_t bad = 0;
    for (size_t r0 = 0; r0 < m; r0 += P) {
        size_t h = m - r0 < P ? m - r0 : P, first = h * n;
        unsigned char *ob = buf[(r0 / P) % BUFFERS];
        long tiles = (long)((h + TILE - 1) / TILE);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1) reduction(min:first)
        for (long ti = 0; ti < tiles; ti++) {
            size_t i0 = (size_t)ti * TILE, th = h - i0 < TILE ? h - i0 : TILE, b = th * n;
            const unsigned char *src = A + (r0 + i0) * n * es;
            if (floor)
                memcpy(ob + i0 * n * es, src, th * n * es);
            else
                b = lx_factors_add_rows(f, 6, 1.25f, r0 + i0, th, dt, src, ob + i0 * n * es);
            if (b < th * n && i0 * n + b < first)
                first = i0 * n + b;
        }
        bad += first < h * n;
        if (sum)
            for (size_t i = 0; i < h * n * es; i++)
                *sum = (*sum ^ ob[i]) * 0x100000001b3u;
    }
    return bad;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    lx_dtype dt = LX_DT_BF16;
    if (threads < 1 || (argc > 2 && (!lx_dtype_from_name(argv[2], &dt) ||
                                     (dt != LX_DT_BF16 && dt != LX_DT_F16 && dt != LX_DT_F32)))) {
        fprintf(stderr, "usage: bench/outrows [THREADS [BF16|F16|F32]]\n");
        return 2;
    }
    size_t m = 4096, n = 11008, k = 6, es = lx_dtype_bits(dt) / 8;
    lx_factors f;
    memset(&f, 0, sizeof f);
    f.m = m;
    f.n = n;
    f.k = (int)k;
    f.U = malloc(m * k * sizeof(float));
    f.S = malloc(k * sizeof(float));
    f.Vt = malloc(k * n * sizeof(float));
    unsigned char *A = malloc(m * n * es), *buf[BUFFERS];
    float *row = malloc(n * sizeof(float));
    if (!f.U || !f.S || !f.Vt || !A || !row) {
        fprintf(stderr, "outrows: out of memory\n");
        return 1;
    }
    for (int b = 0; b < BUFFERS; b++) {
        buf[b] = malloc(LX_RSVD_PANEL_ROWS * n * es);
        if (!buf[b]) {
            fprintf(stderr, "outrows: out of memory\n");
            return 1;
        }
        memset(buf[b], 0, LX_RSVD_PANEL_ROWS * n * es);
    }
    for (size_t i = 0; i < m * k; i++)
        f.U[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < k * n; i++)
        f.Vt[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    for (size_t t = 0; t < k; t++)
        f.S[t] = 0.01f / (float)(t + 1);
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++)
            row[j] = (float)(((i * n + j) * 7919u) % 2001) * 1e-4f - 0.1f;
        lx_from_f32(dt, row, A + i * n * es, n);
    }
    uint64_t sum = 0xcbf29ce484222325u;
    if (pass(&f, dt, A, buf, threads, 0, &sum)) {
        fprintf(stderr, "outrows: an overflow in made-up factors\n");
        return 1;
    }
    double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}}; /* [kernel, floor][wall, cpu] */
    for (int rep = 0; rep < 7; rep++)
        for (int fl = 0; fl < 2; fl++) {
            double t0 = lx_now(), c0 = cpu_seconds();
            pass(&f, dt, A, buf, threads, fl, NULL);
            double t = lx_now() - t0, c = cpu_seconds() - c0;
            best[fl][0] = t < best[fl][0] ? t : best[fl][0];
            best[fl][1] = c < best[fl][1] ? c : best[fl][1];
        }
    printf("output rows %zu x %zu %s, rank 6, %d thread%s: %.1f ms wall, %.1f ms cpu; "
           "floor (memcpy of the anchor): %.1f ms wall, %.1f ms cpu; checksum %016llx\n",
           m, n, lx_dtype_name(dt), threads, threads > 1 ? "s" : "", best[0][0] * 1e3,
           best[0][1] * 1e3, best[1][0] * 1e3, best[1][1] * 1e3, (unsigned long long)sum);
    free(f.U);
    free(f.S);
    free(f.Vt);
    free(A);
    free(row);
    for (int b = 0; b < BUFFERS; b++)
        free(buf[b]);
    return 0;
}

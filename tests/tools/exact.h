/* exact.h - the reference the check tools (lxcheck, lxlora) compare with:
 * the exact rank-k truncation of dW = aligned - base of one matrix, from
 * the stored values (dW in double rounded to f32, a full SVD through
 * lx_svd_thin).  Header-only: each tool is a single source file. */
#ifndef LOXSTREAM_TESTS_EXACT_H
#define LOXSTREAM_TESTS_EXACT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/dtype.h"
#include "loxstream/linalg.h"

/* One element of a float dtype as a double (F64 as stored). */
static double exact_elem(lx_dtype dt, const unsigned char *p)
{
    if (dt == LX_DT_F64) {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
    }
    float f;
    lx_to_f32(dt, p, &f, 1);
    return f;
}

/* T (m x n, row-major, malloc'd) = the rank-`rank` truncation of dW, rank
 * clamped to min(m, n); rank 0 gives dW itself.  al holds the m x n matrix
 * in dtype dta, ba in dtb (the same, or another float dtype: a mixed pair).
 * Exits 2 (with `who` and `name` in the message) when out of memory or
 * when the SVD fails. */
static double *exact_truncation2(const char *who, const char *name, lx_dtype dta,
                                 const unsigned char *al, lx_dtype dtb,
                                 const unsigned char *ba, size_t m, size_t n, int rank)
{
    size_t p = m < n ? m : n;
    float *a = malloc(m * n * sizeof *a), *b = malloc(m * n * sizeof *b);
    float *A = malloc(m * n * sizeof *A), *U = malloc(m * p * sizeof *U);
    float *S = malloc(p * sizeof *S), *VT = malloc(p * n * sizeof *VT);
    double *T = malloc(m * n * sizeof *T);
    if (!a || !b || !A || !U || !S || !VT || !T) {
        fprintf(stderr, "%s: out of memory\n", who);
        exit(2);
    }
    size_t ea = lx_dtype_bits(dta) / 8, eb = lx_dtype_bits(dtb) / 8;
    /* column-major dW for LAPACK, each element from the bytes as stored */
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++)
            A[j * m + i] = (float)(exact_elem(dta, al + (i * n + j) * ea) -
                                   exact_elem(dtb, ba + (i * n + j) * eb));
    if (rank == 0) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                T[i * n + j] = A[j * m + i];
    } else {
        if (lx_svd_thin(A, m, n, m, U, m, S, VT, p) != LX_OK) {
            fprintf(stderr, "%s: %s: %s\n", who, name, lx_errmsg());
            exit(2);
        }
        int k = rank > (int)p ? (int)p : rank;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double s = 0;
                for (int t = 0; t < k; t++)
                    s += (double)U[t * m + i] * S[t] * VT[j * p + t];
                T[i * n + j] = s;
            }
    }
    free(a);
    free(b);
    free(A);
    free(U);
    free(S);
    free(VT);
    return T;
}

/* exact_truncation2 with both matrices of dtype dt. */
static inline double *exact_truncation(const char *who, const char *name, lx_dtype dt,
                                const unsigned char *al, const unsigned char *ba, size_t m,
                                size_t n, int rank)
{
    return exact_truncation2(who, name, dt, al, dt, ba, m, n, rank);
}

#endif

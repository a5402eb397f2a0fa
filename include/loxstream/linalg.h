/* linalg.h - the dense kernels loxstream uses, behind one small interface.
 *
 * GEMM comes from BLIS (src/numeric/blas_blis.c, the only file including
 * blis.h); QR and small SVDs come from libFLAME (src/numeric/lapack_flame.c,
 * the only file including FLAME.h): the two headers conflict in one
 * translation unit.  All matrices are float32 with explicit row and column
 * strides (rs, cs), as in BLIS: a row-major m x n matrix with leading
 * dimension ld has rs = ld, cs = 1; its transpose is the same memory with
 * the strides swapped, so no transposed copies are ever made.
 */
#ifndef LOXSTREAM_LINALG_H
#define LOXSTREAM_LINALG_H

#include <stddef.h>
#include <stdatomic.h>

#include "loxstream/error.h"

/* Initialise BLIS and libFLAME once, before any other thread starts.
 * threads <= 0: BLIS's default (BLIS_NUM_THREADS / OMP_NUM_THREADS, else 1).
 * Unless the user set BLIS_ARCH_TYPE, a CPU that BLIS 0.9 does not recognise
 * (it would fall back to its slow "generic" kernels) is given the best
 * sub-configuration its instruction set supports (zen3 for AMD, haswell or
 * skx for Intel, when AVX2/FMA resp. AVX-512 are present). */
lx_status lx_linalg_init(int threads);
/* Set the number of threads of subsequent GEMMs.  Results are bit-identical
 * whatever the number: C is cut into blocks by shape only, one
 * single-threaded BLIS call each, shared out among the threads. */
void lx_linalg_set_threads(int threads);
/* The calling thread's own count in place of that, read from *width at each
 * use from now on (each pass and each product: another thread may change it
 * meanwhile), capped at `most`, the count its workspaces are sized for
 * (lx_linalg_most_threads); NULL: back to lx_linalg_set_threads's.  For a
 * thread that factors one matrix beside another, on its share of the
 * threads or on all of them while the other waits (lanes.h); the bits do
 * not depend on the count. */
void lx_linalg_follow_threads(const atomic_int *width, int most);
int lx_linalg_threads(void);
/* The most threads the calling thread's next products may use: `most`
 * while it follows a width, else lx_linalg_threads(). */
int lx_linalg_most_threads(void);
/* BLIS version, sub-configuration in use, and how it was chosen, e.g.
 * "BLIS 0.9.0, kernels zen3 (chosen by loxstream: BLIS does not know this CPU)". */
const char *lx_linalg_describe(void);
/* libFLAME version string. */
const char *lx_flame_version(void);

/* lx_sgemm_panel: the same, through BLIS's faster small-matrix ("sup")
 * kernels, for the three hot panel products only, in exactly these layouts:
 * Y = A_b V (A_b and V row-major, Y column-major), Z += A_b^T Y (A_b read
 * transposed, Y and Z column-major) and rows of (U S) V^T (V row-major read
 * transposed).  In those layouts the kernels of BLIS 0.9.0 read up to 64
 * bytes past the end of an operand (3000 random shapes, operands placed
 * before an unmapped page), so every operand (A, B and C) must live in
 * memory from lx_falloc, which adds LX_GEMM_PAD bytes.  In other layouts the
 * over-read is unbounded (a whole column of a column-major B), so
 * everything else goes through lx_sgemm's packed path. */
void lx_sgemm_panel(size_t m, size_t n, size_t k, float alpha, const float *A, ptrdiff_t rsa,
                    ptrdiff_t csa, const float *B, ptrdiff_t rsb, ptrdiff_t csb, float beta,
                    float *C, ptrdiff_t rsc, ptrdiff_t csc);
/* lx_sgemm_panel as one single-threaded BLIS call, uncut, in the layout
 * of Z += A^T Y only and for k <= LX_GEMM_SERIAL_MAX_K: for that product
 * made by one of a pass's threads (krylov.c), where cutting C into blocks
 * buys no parallelism and costs time (11008 x 16 x 16: 16 blocks ran at
 * 49 GFLOP/s, one call at 62).  The same bits as lx_sgemm_panel there:
 * every element of C comes from the same kernel's k-loop whichever rows a
 * call covers (2000 random shapes, tests/unit/test_rsvd.c).  Not beyond:
 * BLIS 0.9.0 gave other bits for some shapes with k > 100, and in the
 * other two layouts. */
#define LX_GEMM_SERIAL_MAX_K 64
void lx_sgemm_panel_serial(size_t m, size_t n, size_t k, float alpha, const float *A,
                           ptrdiff_t rsa, ptrdiff_t csa, const float *B, ptrdiff_t rsb,
                           ptrdiff_t csb, float beta, float *C, ptrdiff_t rsc, ptrdiff_t csc);
#define LX_GEMM_PAD 256
/* n zeroed floats, 64-byte aligned, plus LX_GEMM_PAD bytes; free() it. */
float *lx_falloc(size_t n);

/* C = alpha * A * B + beta * C, A m x k, B k x n, C m x n, general strides.
 * Deterministic: independent of the thread count (see lx_linalg_set_threads). */
void lx_sgemm(size_t m, size_t n, size_t k, float alpha,
              const float *A, ptrdiff_t rsa, ptrdiff_t csa,
              const float *B, ptrdiff_t rsb, ptrdiff_t csb, float beta,
              float *C, ptrdiff_t rsc, ptrdiff_t csc);

/* Orthonormalise the columns of the column-major m x n matrix A (lda >= m,
 * m >= n) in place: A <- Q of its thin QR (libFLAME sgeqrf/sorgqr). */
lx_status lx_qr_orthonormalize(float *A, size_t m, size_t n, size_t lda);

/* Thin SVD of the column-major m x n matrix A (destroyed): A = U diag(S) VT,
 * p = min(m, n); U m x p (ldu >= m), S p descending, VT p x n (ldvt >= p).
 * U or VT may be NULL when not wanted.  Through libFLAME's sgesvd. */
lx_status lx_svd_thin(float *A, size_t m, size_t n, size_t lda, float *U, size_t ldu,
                      float *S, float *VT, size_t ldvt);

/* The same in double (libFLAME's dgesvd): the dense factorisation of the
 * matrices rsvd_dense.c factors exactly. */
lx_status lx_dsvd_thin(double *A, size_t m, size_t n, size_t lda, double *U, size_t ldu,
                       double *S, double *VT, size_t ldvt);
/* The work array (doubles) lx_dsvd_thin allocates at m x n: what dgesvd
 * asks for in its workspace query, and the padding (lapack_flame.c). */
size_t lx_dsvd_work(size_t m, size_t n);

#endif

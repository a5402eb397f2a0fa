/* lapack_flame.c - QR and small SVDs through libFLAME's LAPACK interface.
 *
 * The only file that includes FLAME.h (it conflicts with blis.h).  The
 * LAPACK-compatible entry points (sgeqrf_, sorgqr_, sgesvd_) are declared by
 * FLAME.h; libFLAME 5.2 takes its own BLAS from BLIS (-lflame -lblis).
 * These run on small matrices only (n x l, m x l with l ~ 16), never on a
 * whole weight matrix except in exact mode (dgesvd, in double: the small
 * and capped matrices that rsvd_dense.c factors densely, and --exact).
 */
#include <limits.h>
#include <stdlib.h>

#include <FLAME.h>

#include "loxstream/linalg.h"

lx_status lx_flame_init(void);

/* libFLAME 5.2's LAPACK layer keeps netlib's first-call initialisations:
 * slamch/dlamch (SLAMC1..5) and the like compute their constants into
 * static variables on their first call, unguarded.  Two threads making
 * that first call at once (apply's lanes, lanes.h) raced: a wrong EMIN, a
 * Fortran warning printed on standard output, and factors whose bits
 * depended on the timing.  So every routine used here makes its first
 * call now, on one thread, on a small matrix. */
/* FLAME.h does not declare them (f2c: the value, and the hidden length of
 * the character argument, which they do not read beyond its first byte) */
double slamch_(const char *cmach, long len);
double dlamch_(const char *cmach, long len);

static void first_calls(void)
{
    char c[] = "ESBPNRMULO";
    for (int i = 0; c[i]; i++) {
        char ch[2] = {c[i], 0};
        (void)slamch_(ch, 1);
        (void)dlamch_(ch, 1);
    }
    float a[6 * 4], u[6 * 4], s[4], vt[4 * 4];
    double da[6 * 4], du[6 * 4], ds[4], dvt[4 * 4];
    for (int i = 0; i < 24; i++) {
        a[i] = (float)((i * 7) % 11) - 5.0f;
        da[i] = a[i];
    }
    (void)lx_svd_thin(a, 6, 4, 6, u, 6, s, vt, 4);
    (void)lx_dsvd_thin(da, 6, 4, 6, du, 6, ds, dvt, 4);
    for (int i = 0; i < 24; i++)
        a[i] = (float)((i * 5) % 7) - 3.0f;
    (void)lx_qr_orthonormalize(a, 6, 4, 6);
}

lx_status lx_flame_init(void)
{
    if (!FLA_Initialized()) {
        FLA_Init();
        first_calls();
    }
    return LX_OK;
}

const char *lx_flame_version(void)
{
    return "5.2 (LAPACK interface: sgeqrf, sorgqr, sgesvd, dgesvd)";
}

static int fits_int(size_t v)
{
    return v <= (size_t)INT_MAX;
}

lx_status lx_qr_orthonormalize(float *A, size_t m, size_t n, size_t lda)
{
    if (n == 0)
        return LX_OK;
    if (m < n || lda < m || !fits_int(m) || !fits_int(lda))
        return lx_fail(LX_EFAIL, "QR: invalid shape %zu x %zu (lda %zu)", m, n, lda);
    int im = (int)m, in = (int)n, ilda = (int)lda, info = 0, query = -1;
    float wq = 0;
    sgeqrf_(&im, &in, A, &ilda, NULL, &wq, &query, &info);
    int lwork = (int)wq;
    float wq2 = 0;
    sorgqr_(&im, &in, &in, A, &ilda, NULL, &wq2, &query, &info);
    if ((int)wq2 > lwork)
        lwork = (int)wq2;
    if (lwork < in)
        lwork = in;
    float *tau = malloc(n * sizeof *tau);
    float *work = malloc((size_t)lwork * sizeof *work);
    if (!tau || !work) {
        free(tau);
        free(work);
        return lx_fail(LX_EFAIL, "QR: out of memory");
    }
    sgeqrf_(&im, &in, A, &ilda, tau, work, &lwork, &info);
    if (info == 0)
        sorgqr_(&im, &in, &in, A, &ilda, tau, work, &lwork, &info);
    free(tau);
    free(work);
    if (info != 0)
        return lx_fail(LX_EFAIL, "QR of a %zu x %zu block failed (LAPACK info %d)", m, n, info);
    return LX_OK;
}

/* lx_svd_thin (float, sgesvd) and lx_dsvd_thin (double, dgesvd): one body,
 * the workspace query then the factorisation.  libflame's sgesvd reads past
 * the end of the workspace it asks for (a 250 x 64 matrix read 1 KiB beyond
 * it, a crash when that crossed the end of the heap): the buffer is padded,
 * lwork is not (the same computation). */
#define SVD_WORK_PAD 4096 /* elements */
#define SVD_THIN(NAME, T, GESVD)                                                            \
    lx_status NAME(T *A, size_t m, size_t n, size_t lda, T *U, size_t ldu, T *S, T *VT,     \
                   size_t ldvt)                                                             \
    {                                                                                       \
        size_t p = m < n ? m : n;                                                           \
        if (p == 0)                                                                         \
            return LX_OK;                                                                   \
        if (!fits_int(m) || !fits_int(n) || !fits_int(lda) || lda < m)                      \
            return lx_fail(LX_EFAIL, "SVD: invalid shape %zu x %zu (lda %zu)", m, n, lda);  \
        int im = (int)m, in = (int)n, ilda = (int)lda, info = 0, query = -1;                \
        int ildu = U ? (int)ldu : 1, ildvt = VT ? (int)ldvt : 1;                            \
        T dummy = 0, wq = 0;                                                                \
        char ju = U ? 'S' : 'N', jv = VT ? 'S' : 'N';                                       \
        GESVD(&ju, &jv, &im, &in, A, &ilda, S, U ? U : &dummy, &ildu, VT ? VT : &dummy,     \
              &ildvt, &wq, &query, &info);                                                  \
        int lwork = (int)wq;                                                                \
        if (lwork < 1)                                                                      \
            lwork = 1;                                                                      \
        T *work = malloc(((size_t)lwork + SVD_WORK_PAD) * sizeof *work);                   \
        if (!work)                                                                          \
            return lx_fail(LX_EFAIL, "SVD: out of memory for a %zu x %zu matrix", m, n);    \
        GESVD(&ju, &jv, &im, &in, A, &ilda, S, U ? U : &dummy, &ildu, VT ? VT : &dummy,     \
              &ildvt, work, &lwork, &info);                                                 \
        free(work);                                                                         \
        if (info != 0)                                                                      \
            return lx_fail(LX_EFAIL, "SVD of a %zu x %zu matrix did not converge (LAPACK "  \
                           "info %d)", m, n, info);                                         \
        return LX_OK;                                                                       \
    }

SVD_THIN(lx_svd_thin, float, sgesvd_)
SVD_THIN(lx_dsvd_thin, double, dgesvd_)

size_t lx_dsvd_work(size_t m, size_t n)
{
    if (m == 0 || n == 0 || !fits_int(m) || !fits_int(n))
        return 0;
    int im = (int)m, in = (int)n, p = im < in ? im : in, info = 0, query = -1;
    double dummy = 0, wq = 0;
    char ju = 'S', jv = 'S';
    dgesvd_(&ju, &jv, &im, &in, &dummy, &im, &dummy, &dummy, &im, &dummy, &p, &wq, &query, &info);
    return (info == 0 && wq >= 1 ? (size_t)wq : 1) + SVD_WORK_PAD;
}

/* pass_kernel.c - the two products of a randomized-SVD pass over one panel
 * of rows (krylov.c's stream_chunk), Y_b = A_b V and Z += A_b^T Y_b, in
 * AVX-512 registers (see pass_kernel.h).
 *
 * For a block width l <= 16 a row of Y and a row of Z are one zmm register
 * each.  A group of 16 (or 8) panel rows keeps its 16 rows of Y in
 * registers through a sweep over the columns k (one load of V's row k, a
 * broadcast multiply-add per panel row), then makes a second sweep in
 * which each row k of Z takes the group's 16 terms A[i,k] Y[i,:], four
 * rows of Z at a time so that four chains of multiply-adds are in flight.
 * The panel stays in the L2 cache between the two sweeps (krylov.c sizes
 * it so).  Nothing is packed: the panel, V and Z are read where they are.
 * BLIS's small-matrix kernels make the same two products at 60-67 GFLOP/s
 * on one Zen 4 core, this at 105-115 (bench/gemmrate).
 *
 * The sums run in a fixed order (k ascending within a row of Y; rows of
 * the panel ascending into Z), whatever the thread, so a pass gives the
 * same bits at any thread count, as krylov.c requires; other bits than
 * BLIS's, and the bits of a CPU without AVX-512, which uses BLIS.
 */
#include <stdlib.h>

#include "kernel_choice.h"
#include "pass_kernel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_KERNEL 1
#include <immintrin.h>
#endif

#ifdef HAVE_KERNEL

#define KERNEL __attribute__((target("avx512f")))

#define R8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define R16(X) R8(X) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

/* Declarations, the Y sweep and the Z sweep for a group of G rows (the
 * same text for G = 16 and 8, R the row macro).  lm masks the l columns. */
#define GROUP_DECL(i)                                                                              \
    __m512 y##i = _mm512_setzero_ps();                                                             \
    const float *p##i = P + (size_t)(i) * ldp;
#define GROUP_FY(i) y##i = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k]), v, y##i);
#define GROUP_STY(i) _mm512_mask_i32scatter_ps(Y + (i), lm, cols, y##i, 4);
#define GROUP_FZ(i)                                                                                \
    z0 = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k]), y##i, z0);                                       \
    z1 = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k + 1]), y##i, z1);                                   \
    z2 = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k + 2]), y##i, z2);                                   \
    z3 = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k + 3]), y##i, z3);
#define GROUP_FZ1(i) z0 = _mm512_fmadd_ps(_mm512_set1_ps(p##i[k]), y##i, z0);

#define GROUP_BODY(R)                                                                              \
    R(GROUP_DECL)                                                                                  \
    for (size_t k = 0; k < n; k++) {                                                               \
        __m512 v = _mm512_maskz_loadu_ps(lm, Vr + k * l);                                          \
        R(GROUP_FY)                                                                                \
    }                                                                                              \
    /* row i of Y to Y[i + j ldy], j < l (Y column-major) */                                       \
    R(GROUP_STY)                                                                                   \
    size_t k = 0;                                                                                  \
    for (; k + 4 <= n; k += 4) {                                                                   \
        float *z = Zr + k * l;                                                                     \
        __m512 z0 = acc ? _mm512_maskz_loadu_ps(lm, z) : _mm512_setzero_ps();                     \
        __m512 z1 = acc ? _mm512_maskz_loadu_ps(lm, z + l) : _mm512_setzero_ps();                 \
        __m512 z2 = acc ? _mm512_maskz_loadu_ps(lm, z + 2 * l) : _mm512_setzero_ps();             \
        __m512 z3 = acc ? _mm512_maskz_loadu_ps(lm, z + 3 * l) : _mm512_setzero_ps();             \
        R(GROUP_FZ)                                                                                \
        _mm512_mask_storeu_ps(z, lm, z0);                                                          \
        _mm512_mask_storeu_ps(z + l, lm, z1);                                                      \
        _mm512_mask_storeu_ps(z + 2 * l, lm, z2);                                                  \
        _mm512_mask_storeu_ps(z + 3 * l, lm, z3);                                                  \
    }                                                                                              \
    for (; k < n; k++) {                                                                           \
        float *z = Zr + k * l;                                                                     \
        __m512 z0 = acc ? _mm512_maskz_loadu_ps(lm, z) : _mm512_setzero_ps();                     \
        R(GROUP_FZ1)                                                                               \
        _mm512_mask_storeu_ps(z, lm, z0);                                                          \
    }

/* The scatter's indices: column j of Y at j * ldy. */
KERNEL static __m512i y_columns(size_t ldy)
{
    return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                              _mm512_set1_epi32((int)ldy));
}

/* The bodies, inlined into each entry below: with l a constant 16 the masks
 * fold away (masked loads and stores of a variable mask cost more). */
#define GROUP_FN(name, R)                                                                          \
    KERNEL static inline __attribute__((always_inline)) void name##_body(                          \
        const float *P, size_t ldp, size_t n, const float *Vr, size_t l, float *Y, size_t ldy,     \
        float *Zr, int acc)                                                                        \
    {                                                                                              \
        __mmask16 lm = (__mmask16)((1u << l) - 1);                                                 \
        __m512i cols = y_columns(ldy);                                                             \
        GROUP_BODY(R)                                                                              \
    }                                                                                              \
    KERNEL static void name(const float *P, size_t ldp, size_t n, const float *Vr, size_t l,       \
                            float *Y, size_t ldy, float *Zr, int acc)                              \
    {                                                                                              \
        if (l == 16)                                                                               \
            name##_body(P, ldp, n, Vr, 16, Y, ldy, Zr, acc);                                       \
        else                                                                                       \
            name##_body(P, ldp, n, Vr, l, Y, ldy, Zr, acc);                                        \
    }

#define R1(X) X(0)
GROUP_FN(group16, R16)
GROUP_FN(group8, R8)
/* one row: the last rows of a matrix whose height is not a multiple of 8 */
GROUP_FN(group1, R1)

static int cpu_has_kernel(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#endif /* HAVE_KERNEL */

int lx_pass_kernel_on(void)
{
#ifdef HAVE_KERNEL
    static int usable = -1;
    return lx_kernel_choice(&usable, "LOXSTREAM_PASS_KERNEL", "blis", cpu_has_kernel);
#else
    return 0;
#endif
}

int lx_pass_kernel_ok(size_t l, size_t ldy)
{
    return l >= 1 && l <= LX_PASS_KERNEL_MAX_L && ldy <= LX_PASS_KERNEL_MAX_LD && lx_pass_kernel_on();
}

void lx_pass_panel(const float *P, size_t ldp, size_t h, size_t n, const float *Vr, size_t l,
                   float *Y, size_t ldy, float *Zr, int acc)
{
#ifdef HAVE_KERNEL
    size_t i = 0;
    for (; i + 16 <= h; i += 16, acc = 1)
        group16(P + i * ldp, ldp, n, Vr, l, Y + i, ldy, Zr, acc);
    for (; i + 8 <= h; i += 8, acc = 1)
        group8(P + i * ldp, ldp, n, Vr, l, Y + i, ldy, Zr, acc);
    for (; i < h; i++, acc = 1)
        group1(P + i * ldp, ldp, n, Vr, l, Y + i, ldy, Zr, acc);
#else
    (void)P, (void)ldp, (void)h, (void)n, (void)Vr, (void)l, (void)Y, (void)ldy, (void)Zr, (void)acc;
    abort(); /* lx_pass_kernel_ok said no */
#endif
}

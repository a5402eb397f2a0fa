/* pass_kernel.h - private to src/numeric/: the products of one pass over a
 * panel of rows in AVX-512 registers (pass_kernel.c), which krylov.c uses
 * in place of two BLIS calls where lx_pass_kernel_ok says so. */
#ifndef LOXSTREAM_PASS_KERNEL_H
#define LOXSTREAM_PASS_KERNEL_H

#include <stddef.h>

/* Block widths (one zmm register per row) and strides of Y it serves. */
#define LX_PASS_KERNEL_MAX_L 16
#define LX_PASS_KERNEL_MAX_LD ((size_t)1 << 26)

/* The CPU has AVX-512F and LOXSTREAM_PASS_KERNEL is not "blis" (decided
 * once per process). */
int lx_pass_kernel_on(void);
/* lx_pass_kernel_on() and l, ldy within the limits above. */
int lx_pass_kernel_ok(size_t l, size_t ldy);

/* For the h x n row-major panel P (row stride ldp >= n) and V given
 * row-major (Vr, n x l, ld l): rows [0, h) of the column-major Y (ld ldy)
 * = P V, and the row-major Zr (n x l, ld l) = P^T Y, plus its old value
 * with acc.  Only where lx_pass_kernel_ok(l, ldy).  A stride that puts
 * rows 4 KiB apart halves the rate (cache sets): krylov.c pads it. */
void lx_pass_panel(const float *P, size_t ldp, size_t h, size_t n, const float *Vr, size_t l,
                   float *Y, size_t ldy, float *Zr, int acc);

#endif

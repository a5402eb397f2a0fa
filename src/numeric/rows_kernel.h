/* rows_kernel.h - private to src/numeric/: a block of a BF16 output row in
 * AVX-512 registers (rows_kernel.c), which factors.c's lx_factors_add_rows
 * uses in place of its portable loop where lx_rows_kernel_on() says so. */
#ifndef LOXSTREAM_ROWS_KERNEL_H
#define LOXSTREAM_ROWS_KERNEL_H

#include <stddef.h>

/* The CPU has AVX-512 F, BW, VL and DQ and LOXSTREAM_ROWS_KERNEL is not
 * "portable" (decided once per process). */
int lx_rows_kernel_on(void);

/* dst[j] = bf16(base[j] + sum_{t<tt} c[t] v[t*ldv + j]) for j < len, BF16
 * raw bytes, the sum from c[0] v[0] in order of t: the bits of factors.c's
 * out_block with no partial sum; nonzero when one rounded to an Inf or a
 * NaN.  dst may be base.  Only where lx_rows_kernel_on(). */
unsigned lx_rows_block_bf16(const float *c, int tt, const float *v, size_t ldv,
                            const unsigned char *base, unsigned char *dst, size_t len);

#endif

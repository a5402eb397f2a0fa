/* bf16_kernel.h - private to src/numeric/: the BF16 element loops in
 * AVX-512 registers (bf16_kernel.c), which factors.c's lx_factors_add_rows
 * and dtype.c's lx_sub_to_f32 use in place of their portable loops where
 * lx_bf16_kernel_on() says so.  Both give the portable loops' bits. */
#ifndef LOXSTREAM_BF16_KERNEL_H
#define LOXSTREAM_BF16_KERNEL_H

#include <stddef.h>

/* The CPU has AVX-512 F, BW, VL and DQ and LOXSTREAM_BF16_KERNEL is not
 * "portable" (decided once per process). */
int lx_bf16_kernel_on(void);

/* dst[j] = bf16(base[j] + sum_{t<tt} c[t] v[t*ldv + j]) for j < len, BF16
 * raw bytes, the sum from c[0] v[0] in order of t: the bits of factors.c's
 * out_block with no partial sum; nonzero when one rounded to an Inf or a
 * NaN.  dst may be base.  Only where lx_bf16_kernel_on(). */
unsigned lx_bf16_out_block(const float *c, int tt, const float *v, size_t ldv,
                           const unsigned char *base, unsigned char *dst, size_t len);

/* dst[j] = a[j] - b[j] in f32 for the n BF16 elements of the raw (possibly
 * unaligned) a and b: dtype.c's sub_block for BF16; nonzero when one is an
 * Inf or a NaN (the caller finds which).  Only where lx_bf16_kernel_on(). */
unsigned lx_bf16_sub(const void *a, const void *b, float *dst, size_t n);

#endif

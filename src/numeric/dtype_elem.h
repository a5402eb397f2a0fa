/* dtype_elem.h - the element conversions of dtype.c, for the kernels of
 * the numeric core that fuse a conversion into their own loop (dtype.c's
 * array API, factors.c's output rows): one copy of the rounding rules.
 *
 * Every helper is branch-free bit manipulation (every case is computed and
 * the result selected) and always inlined, so that the loops calling it
 * vectorise in each clone of the caller (simd.h).  Data pointers may be
 * unaligned for their element type: read and written through memcpy.
 */
#ifndef LOXSTREAM_DTYPE_ELEM_H
#define LOXSTREAM_DTYPE_ELEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "loxstream/simd.h"

static LX_ALWAYS_INLINE float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static LX_ALWAYS_INLINE uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Select without a branch.  A conditional expression whose arm holds
 * floating-point arithmetic is compiled as a branch (the arithmetic may trap,
 * so it is not speculated), and a branch stops vectorisation. */
static LX_ALWAYS_INLINE uint32_t select_u32(bool c, uint32_t yes, uint32_t no)
{
    uint32_t m = -(uint32_t)c;
    return (yes & m) | (no & ~m);
}

/* |x| of an f32 bit pattern as a signed integer: comparisons on it order
 * like the magnitudes and compile to the signed SIMD compares. */
static LX_ALWAYS_INLINE int32_t magnitude(uint32_t u)
{
    return (int32_t)(u & 0x7fffffffu);
}

static LX_ALWAYS_INLINE float bf16_decode(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    /* a signalling NaN comes out quiet, as from a hardware conversion */
    return f32_from_bits(u | select_u32(magnitude(u) > 0x7f800000, 0x00400000u, 0));
}

/* The encoders build every candidate result in the top half of a 32-bit word
 * and shift down once at the end: narrowing to 16 bits is costly in SIMD
 * (SSE2 has no unsigned pack), so it should happen once, not per candidate. */

static LX_ALWAYS_INLINE uint16_t bf16_encode(float f)
{
    uint32_t u = f32_bits(f);
    /* round to nearest even on the 16 dropped bits; a carry into the
     * exponent is the right answer, also when it reaches Inf */
    uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
    /* truncating a NaN could leave a zero mantissa (Inf): set the quiet bit */
    uint32_t nan = u | 0x00400000u;
    return (uint16_t)(select_u32(magnitude(u) > 0x7f800000, nan, rounded) >> 16);
}

static LX_ALWAYS_INLINE float f16_decode(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t o = (uint32_t)(h & 0x7fffu) << 13;
    uint32_t exp = o & 0x0f800000u;
    bool tiny = exp == 0, special = exp == 0x0f800000u;
    /* rebias the exponent by 127 - 15; Inf and NaN go to the top exponent */
    o += (112u << 23) + select_u32(special, 112u << 23, 0);
    o |= select_u32(magnitude(o) > 0x7f800000, 0x00400000u, 0);
    /* zero and subnormals: read the bits as 2^-14 * (1 + m/1024) and
     * subtract 2^-14, which is exact; everything else subtracts +0 */
    o += select_u32(tiny, 1u << 23, 0);
    float f = f32_from_bits(o) - f32_from_bits(select_u32(tiny, 113u << 23, 0));
    return f32_from_bits(f32_bits(f) | sign);
}

static LX_ALWAYS_INLINE uint16_t f16_encode(float f)
{
    uint32_t u = f32_bits(f);
    int32_t a = magnitude(u);
    /* normal result: rebias and round to nearest even on the 13 dropped bits;
     * a carry into the exponent is right, also from 65520 up to Inf */
    uint32_t normal = ((uint32_t)a - (112u << 23) + 0x0fffu + (((uint32_t)a >> 13) & 1u)) << 3;
    /* subnormal result (|f| < 2^-14): adding 0.5 makes the f32 ulp equal the
     * f16 subnormal step 2^-24, so the FPU (in its default rounding mode)
     * does the rounding to nearest even */
    uint32_t sub = (f32_bits(f32_from_bits((uint32_t)a) + 0.5f) - 0x3f000000u) << 16;
    uint32_t nan = 0x7e000000u | (((uint32_t)a << 3) & 0x03ff0000u);
    uint32_t r = select_u32(a < (113 << 23), sub, normal);
    r = select_u32(a >= (143 << 23), 0x7c000000u, r);   /* |f| >= 65536 */
    r = select_u32(a > 0x7f800000, nan, r);
    return (uint16_t)((r | (u & 0x80000000u)) >> 16);
}
/* Element i of raw (possibly unaligned) data. */
static LX_ALWAYS_INLINE float load_bf16(const unsigned char *p, size_t i)
{
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return bf16_decode(h);
}

static LX_ALWAYS_INLINE float load_f16(const unsigned char *p, size_t i)
{
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return f16_decode(h);
}

static LX_ALWAYS_INLINE float load_f32(const unsigned char *p, size_t i)
{
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

static LX_ALWAYS_INLINE double load_f64(const unsigned char *p, size_t i)
{
    double d;
    memcpy(&d, p + 8 * i, 8);
    return d;
}

static LX_ALWAYS_INLINE void store_bf16(unsigned char *p, size_t i, float f)
{
    uint16_t h = bf16_encode(f);
    memcpy(p + 2 * i, &h, 2);
}

static LX_ALWAYS_INLINE void store_f16(unsigned char *p, size_t i, float f)
{
    uint16_t h = f16_encode(f);
    memcpy(p + 2 * i, &h, 2);
}

static LX_ALWAYS_INLINE void store_f64(unsigned char *p, size_t i, double d)
{
    memcpy(p + 8 * i, &d, 8);
}

/* Nonzero when r is an Inf or a NaN (every exponent bit set). */
static LX_ALWAYS_INLINE unsigned f32_nonfinite(float r)
{
    return (f32_bits(r) & 0x7f800000u) == 0x7f800000u;
}

/* Nonzero when an encoded 16-bit float (mask: its exponent bits, 0x7c00 for
 * F16, 0x7f80 for BF16) is an Inf or a NaN. */
static LX_ALWAYS_INLINE unsigned half_nonfinite(uint16_t h, uint16_t mask)
{
    return (uint16_t)(h & mask) == mask;
}

/* Flags for the vector loops that OR without a compare: the top bit of the
 * result is set when the value is an Inf or a NaN, as an exponent of all
 * ones carries into it.  exp: the exponent bits of the 16-bit format
 * (0x7c00 F16, 0x7f80 BF16). */
static LX_ALWAYS_INLINE uint16_t half_nonfinite_bit(uint16_t h, uint16_t exp)
{
    return (uint16_t)((h & exp) + (exp & (uint16_t)-exp));
}

static LX_ALWAYS_INLINE uint32_t f32_nonfinite_bit(float r)
{
    return (f32_bits(r) & 0x7f800000u) + 0x00800000u;
}

/* (of the high word of d, which holds its exponent) */
static LX_ALWAYS_INLINE uint32_t f64_nonfinite_bit(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return ((uint32_t)(u >> 32) & 0x7ff00000u) + 0x00100000u;
}

#endif

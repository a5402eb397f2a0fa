/* dtype.c - safetensors element types and conversions to and from float32.
 *
 * The element conversions (dtype_elem.h, shared with the fused kernels of
 * factors.c) are branch-free bit manipulation (every case is computed and
 * the result selected) so that the array loops vectorise.  The scalar API
 * uses the same element helpers as the array loops.
 *
 * Array data points into mappings and may be unaligned for its element type,
 * so it is read and written through memcpy, which compiles to plain loads.
 * The loops work in fixed-size blocks: a constant trip count lets GCC -O2
 * (whose default cost model refuses loops that need a scalar epilogue or
 * runtime alias checks) vectorise them, and staging through a local block
 * makes lx_add_f32 safe when dst aliases base.  lx_sub_to_f32 of BF16
 * runs bf16_kernel.c's AVX-512 loop where the CPU has it (the same bits).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "loxstream/dtype.h"
#include "loxstream/simd.h"
#include "dtype_elem.h"
#include "bf16_kernel.h"

static const char *const dtype_names[LX_DT_COUNT] = {
    [LX_DT_BOOL] = "BOOL",
    [LX_DT_F4] = "F4",
    [LX_DT_F6_E2M3] = "F6_E2M3",
    [LX_DT_F6_E3M2] = "F6_E3M2",
    [LX_DT_U8] = "U8",
    [LX_DT_I8] = "I8",
    [LX_DT_F8_E5M2] = "F8_E5M2",
    [LX_DT_F8_E4M3] = "F8_E4M3",
    [LX_DT_F8_E8M0] = "F8_E8M0",
    [LX_DT_F8_E4M3FNUZ] = "F8_E4M3FNUZ",
    [LX_DT_F8_E5M2FNUZ] = "F8_E5M2FNUZ",
    [LX_DT_I16] = "I16",
    [LX_DT_U16] = "U16",
    [LX_DT_F16] = "F16",
    [LX_DT_BF16] = "BF16",
    [LX_DT_I32] = "I32",
    [LX_DT_U32] = "U32",
    [LX_DT_F32] = "F32",
    [LX_DT_C64] = "C64",
    [LX_DT_F64] = "F64",
    [LX_DT_I64] = "I64",
    [LX_DT_U64] = "U64",
};

static const unsigned char dtype_bits[LX_DT_COUNT] = {
    [LX_DT_BOOL] = 8,
    [LX_DT_F4] = 4,
    [LX_DT_F6_E2M3] = 6,
    [LX_DT_F6_E3M2] = 6,
    [LX_DT_U8] = 8,
    [LX_DT_I8] = 8,
    [LX_DT_F8_E5M2] = 8,
    [LX_DT_F8_E4M3] = 8,
    [LX_DT_F8_E8M0] = 8,
    [LX_DT_F8_E4M3FNUZ] = 8,
    [LX_DT_F8_E5M2FNUZ] = 8,
    [LX_DT_I16] = 16,
    [LX_DT_U16] = 16,
    [LX_DT_F16] = 16,
    [LX_DT_BF16] = 16,
    [LX_DT_I32] = 32,
    [LX_DT_U32] = 32,
    [LX_DT_F32] = 32,
    [LX_DT_C64] = 64,
    [LX_DT_F64] = 64,
    [LX_DT_I64] = 64,
    [LX_DT_U64] = 64,
};

const char *lx_dtype_name(lx_dtype dt)
{
    if ((unsigned)dt >= LX_DT_COUNT)
        return "?";
    return dtype_names[dt];
}

bool lx_dtype_from_name(const char *name, lx_dtype *out)
{
    if (!name)
        return false;
    for (unsigned i = 0; i < LX_DT_COUNT; i++) {
        if (strcmp(name, dtype_names[i]) == 0) {
            *out = (lx_dtype)i;
            return true;
        }
    }
    return false;
}

unsigned lx_dtype_bits(lx_dtype dt)
{
    if ((unsigned)dt >= LX_DT_COUNT)
        return 0;
    return dtype_bits[dt];
}

bool lx_dtype_is_transformable(lx_dtype dt)
{
    return dt == LX_DT_F16 || dt == LX_DT_BF16 || dt == LX_DT_F32 || dt == LX_DT_F64;
}

bool lx_dtype_is_index(lx_dtype dt)
{
    return dt == LX_DT_I16 || dt == LX_DT_U16 || dt == LX_DT_I32 || dt == LX_DT_U32 ||
           dt == LX_DT_I64 || dt == LX_DT_U64;
}

/* ---- element conversions: dtype_elem.h ---------------------------------- */

float lx_bf16_to_f32(uint16_t h)
{
    return bf16_decode(h);
}

uint16_t lx_f32_to_bf16(float f)
{
    return bf16_encode(f);
}

float lx_f16_to_f32(uint16_t h)
{
    return f16_decode(h);
}

uint16_t lx_f32_to_f16(float f)
{
    return f16_encode(f);
}

/* ---- block kernels -------------------------------------------------------
 * Every kernel works on exactly BLOCK elements: with a constant trip count
 * GCC -O2 vectorises the loops (its default cost model refuses loops that
 * need a scalar epilogue or runtime alias checks).  The last, partial block
 * of an array is staged through padded local buffers.  Each loop reads one
 * set of buffers and writes another, so restrict holds. */

enum { BLOCK = LX_DTYPE_BLOCK, MAX_ELEM_SIZE = 8 };

static LX_ALWAYS_INLINE void decode_block(lx_dtype dt, const unsigned char *restrict src, float *restrict dst)
{
    size_t i;
    switch (dt) {
    case LX_DT_BF16:
        for (i = 0; i < BLOCK; i++)
            dst[i] = load_bf16(src, i);
        break;
    case LX_DT_F16:
        for (i = 0; i < BLOCK; i++)
            dst[i] = load_f16(src, i);
        break;
    case LX_DT_F32:
        memcpy(dst, src, sizeof(float) * BLOCK);
        break;
    case LX_DT_F64:
        for (i = 0; i < BLOCK; i++)
            dst[i] = (float)load_f64(src, i);
        break;
    default:
        break;
    }
}

static LX_ALWAYS_INLINE void encode_block(lx_dtype dt, const float *restrict src, unsigned char *restrict dst)
{
    size_t i;
    switch (dt) {
    case LX_DT_BF16:
        for (i = 0; i < BLOCK; i++)
            store_bf16(dst, i, src[i]);
        break;
    case LX_DT_F16:
        for (i = 0; i < BLOCK; i++)
            store_f16(dst, i, src[i]);
        break;
    case LX_DT_F32:
        memcpy(dst, src, sizeof(float) * BLOCK);
        break;
    case LX_DT_F64:
        for (i = 0; i < BLOCK; i++)
            store_f64(dst, i, src[i]);
        break;
    default:
        break;
    }
}

/* dst = a - b over one block; nonzero when a difference is not finite (the
 * test folded into the same loop, on the value in a register). */
static LX_ALWAYS_INLINE unsigned sub_block(lx_dtype dt, const unsigned char *restrict a,
                                           const unsigned char *restrict b, float *restrict dst)
{
    unsigned bad = 0;
    size_t i;
    switch (dt) {
    case LX_DT_BF16:
        /* the bits shifted into place without bf16_decode's quieting of
         * signalling NaNs: a NaN in either input makes the difference NaN
         * whatever its payload, and that is an error (the caller names the
         * element from the inputs), so finite differences are the same */
        for (i = 0; i < BLOCK; i++) {
            uint16_t ha, hb;
            memcpy(&ha, a + 2 * i, 2);
            memcpy(&hb, b + 2 * i, 2);
            float r = f32_from_bits((uint32_t)ha << 16) - f32_from_bits((uint32_t)hb << 16);
            dst[i] = r;
            bad |= f32_nonfinite(r);
        }
        break;
    case LX_DT_F16:
        for (i = 0; i < BLOCK; i++) {
            float r = load_f16(a, i) - load_f16(b, i);
            dst[i] = r;
            bad |= f32_nonfinite(r);
        }
        break;
    case LX_DT_F32:
        for (i = 0; i < BLOCK; i++) {
            float r = load_f32(a, i) - load_f32(b, i);
            dst[i] = r;
            bad |= f32_nonfinite(r);
        }
        break;
    case LX_DT_F64:
        /* the difference is formed in double and rounded once */
        for (i = 0; i < BLOCK; i++) {
            float r = (float)(load_f64(a, i) - load_f64(b, i));
            dst[i] = r;
            bad |= f32_nonfinite(r);
        }
        break;
    default:
        break;
    }
    return bad;
}

/* The sum is staged in a local block, so dst may alias base. */
static LX_ALWAYS_INLINE void add_block(lx_dtype dt, const unsigned char *base, const float *restrict delta,
                      unsigned char *dst)
{
    float sum[BLOCK];
    size_t i;
    switch (dt) {
    case LX_DT_BF16:
        for (i = 0; i < BLOCK; i++)
            sum[i] = load_bf16(base, i) + delta[i];
        break;
    case LX_DT_F16:
        for (i = 0; i < BLOCK; i++)
            sum[i] = load_f16(base, i) + delta[i];
        break;
    case LX_DT_F32:
        for (i = 0; i < BLOCK; i++)
            sum[i] = load_f32(base, i) + delta[i];
        break;
    case LX_DT_F64: {
        double sum64[BLOCK];
        for (i = 0; i < BLOCK; i++)
            sum64[i] = load_f64(base, i) + (double)delta[i];
        memcpy(dst, sum64, sizeof sum64);
        return;
    }
    default:
        return;
    }
    encode_block(dt, sum, dst);
}

/* Nonzero when one of the BLOCK elements has every exponent bit set (Inf
 * or NaN): an OR over the block, no early exit, so that it vectorises. */
static LX_ALWAYS_INLINE unsigned nonfinite_block(lx_dtype dt, const unsigned char *restrict p)
{
    unsigned bad = 0;
    size_t i;
    switch (dt) {
    case LX_DT_BF16:
    case LX_DT_F16: {
        uint16_t mask = dt == LX_DT_F16 ? 0x7c00u : 0x7f80u;
        for (i = 0; i < BLOCK; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            bad |= half_nonfinite(h, mask);
        }
        break;
    }
    case LX_DT_F32:
        for (i = 0; i < BLOCK; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        break;
    case LX_DT_F64:
        for (i = 0; i < BLOCK; i++) {
            uint64_t u;
            memcpy(&u, p + 8 * i, 8);
            bad |= (u & 0x7ff0000000000000u) == 0x7ff0000000000000u;
        }
        break;
    default:
        break;
    }
    return bad;
}

/* ---- array API ----------------------------------------------------------
 * dt must be transformable; for any other dtype the calls do nothing.  Full
 * blocks run in place; the last partial block goes through local buffers. */

static size_t elem_size(lx_dtype dt)
{
    return lx_dtype_is_transformable(dt) ? lx_dtype_bits(dt) / 8 : 0;
}

/* Copy len bytes into a staging buffer of cap bytes and zero the padding, so
 * the kernel never reads indeterminate bytes. */
static void stage(void *buf, size_t cap, const void *src, size_t len)
{
    memcpy(buf, src, len);
    memset((unsigned char *)buf + len, 0, cap - len);
}

LX_VECTOR_CLONES
void lx_to_f32(lx_dtype dt, const void *src, float *dst, size_t n)
{
    const unsigned char *s = src;
    size_t size = elem_size(dt), i = 0;
    if (!size)
        return;
    for (; i + BLOCK <= n; i += BLOCK)
        decode_block(dt, s + size * i, dst + i);
    if (i < n) {
        unsigned char in[BLOCK * MAX_ELEM_SIZE];
        float out[BLOCK];
        stage(in, sizeof in, s + size * i, size * (n - i));
        decode_block(dt, in, out);
        memcpy(dst + i, out, sizeof(float) * (n - i));
    }
}

LX_VECTOR_CLONES
void lx_from_f32(lx_dtype dt, const float *src, void *dst, size_t n)
{
    unsigned char *d = dst;
    size_t size = elem_size(dt), i = 0;
    if (!size)
        return;
    for (; i + BLOCK <= n; i += BLOCK)
        encode_block(dt, src + i, d + size * i);
    if (i < n) {
        float in[BLOCK];
        unsigned char out[BLOCK * MAX_ELEM_SIZE];
        stage(in, sizeof in, src + i, sizeof(float) * (n - i));
        encode_block(dt, in, out);
        memcpy(d + size * i, out, size * (n - i));
    }
}

/* The first non-finite element of a block known to hold one. */
static size_t first_nonfinite(lx_dtype dt, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        double v = dt == LX_DT_BF16  ? load_bf16(p, i)
                   : dt == LX_DT_F16 ? load_f16(p, i)
                   : dt == LX_DT_F32 ? load_f32(p, i)
                                     : load_f64(p, i);
        if (!isfinite(v))
            return i;
    }
    return len;
}

LX_VECTOR_CLONES
size_t lx_sub_to_f32(lx_dtype dt, const void *a, const void *b, float *dst, size_t n)
{
    const unsigned char *pa = a, *pb = b;
    size_t size = elem_size(dt), i = 0, bad = n;
    if (!size)
        return n;
    if (dt == LX_DT_BF16 && lx_bf16_kernel_on())
        return lx_bf16_sub(a, b, dst, n) ? first_nonfinite(LX_DT_F32, (const unsigned char *)dst, n)
                                         : n;
    for (; i + BLOCK <= n; i += BLOCK) {
        if (sub_block(dt, pa + size * i, pb + size * i, dst + i) && bad == n)
            bad = i + first_nonfinite(LX_DT_F32, (const unsigned char *)(dst + i), BLOCK);
    }
    if (i < n) {
        unsigned char ina[BLOCK * MAX_ELEM_SIZE], inb[BLOCK * MAX_ELEM_SIZE];
        float out[BLOCK];
        stage(ina, sizeof ina, pa + size * i, size * (n - i));
        stage(inb, sizeof inb, pb + size * i, size * (n - i));
        /* the zero padding gives finite zeros */
        if (sub_block(dt, ina, inb, out) && bad == n)
            bad = i + first_nonfinite(LX_DT_F32, (const unsigned char *)out, n - i);
        memcpy(dst + i, out, sizeof(float) * (n - i));
    }
    return bad;
}

LX_VECTOR_CLONES
void lx_add_f32(lx_dtype dt, const void *base, const float *delta, void *dst, size_t n)
{
    const unsigned char *pb = base;
    unsigned char *pd = dst;
    size_t size = elem_size(dt), i = 0;
    if (!size)
        return;
    for (; i + BLOCK <= n; i += BLOCK)
        add_block(dt, pb + size * i, delta + i, pd + size * i);
    if (i < n) {
        unsigned char in[BLOCK * MAX_ELEM_SIZE], out[BLOCK * MAX_ELEM_SIZE];
        float d[BLOCK];
        stage(in, sizeof in, pb + size * i, size * (n - i));
        stage(d, sizeof d, delta + i, sizeof(float) * (n - i));
        add_block(dt, in, d, out);
        memcpy(pd + size * i, out, size * (n - i));
    }
}

LX_VECTOR_CLONES
size_t lx_find_nonfinite(lx_dtype dt, const void *src, size_t n)
{
    const unsigned char *s = src;
    size_t size = elem_size(dt), i = 0;
    if (!size)
        return n;
    for (; i + BLOCK <= n; i += BLOCK)
        if (nonfinite_block(dt, s + size * i))
            return i + first_nonfinite(dt, s + size * i, BLOCK);
    if (i < n) {
        unsigned char in[BLOCK * MAX_ELEM_SIZE]; /* zero padding: finite */
        stage(in, sizeof in, s + size * i, size * (n - i));
        if (nonfinite_block(dt, in))
            return i + first_nonfinite(dt, in, n - i);
    }
    return n;
}

double lx_dtype_max(lx_dtype dt)
{
    switch (dt) {
    case LX_DT_F16: return 65504.0;
    case LX_DT_BF16: return (double)lx_bf16_to_f32(0x7f7fu);
    case LX_DT_F32: return FLT_MAX;
    case LX_DT_F64: return DBL_MAX;
    default: return 0;
    }
}

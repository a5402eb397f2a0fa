/* dtype.h - safetensors element types and conversions to and from float32.
 *
 * Conversions are exact where the target can represent the value, and round
 * to nearest, ties to even, otherwise.  Inf and NaN are preserved (a NaN stays
 * a NaN, quieted); subnormals are handled in both directions.  The array
 * routines are plain loops over contiguous data that the compiler vectorises.
 */
#ifndef LOXSTREAM_DTYPE_H
#define LOXSTREAM_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every dtype of the reference safetensors reader, spelt as it spells them. */
typedef enum lx_dtype {
    LX_DT_BOOL, LX_DT_F4, LX_DT_F6_E2M3, LX_DT_F6_E3M2, LX_DT_U8, LX_DT_I8,
    LX_DT_F8_E5M2, LX_DT_F8_E4M3, LX_DT_F8_E8M0, LX_DT_F8_E4M3FNUZ,
    LX_DT_F8_E5M2FNUZ, LX_DT_I16, LX_DT_U16, LX_DT_F16, LX_DT_BF16, LX_DT_I32,
    LX_DT_U32, LX_DT_F32, LX_DT_C64, LX_DT_F64, LX_DT_I64, LX_DT_U64,
    LX_DT_COUNT
} lx_dtype;

/* "BF16", "F32", ... */
const char *lx_dtype_name(lx_dtype dt);
/* Parse a safetensors dtype name (exact, case-sensitive); false if unknown. */
bool lx_dtype_from_name(const char *name, lx_dtype *out);
/* Size of one element in bits (4 for F4, 6 for F6_*, 8 for U8, ...). */
unsigned lx_dtype_bits(lx_dtype dt);
/* True for the dtypes loxstream can transform: F16, BF16, F32, F64. */
bool lx_dtype_is_transformable(lx_dtype dt);
/* True for the integers of 16 bits or more (I16, U16, I32, U32, I64, U64):
 * what checkpoints hold as index buffers (position ids), not as weights.
 * Every other dtype that is not transformable (F8_*, F6_*, F4, I8, U8, BOOL,
 * C64) is a weight format loxstream cannot compute in. */
bool lx_dtype_is_index(lx_dtype dt);

/* Scalar conversions (bit patterns in uint16_t). */
float lx_bf16_to_f32(uint16_t h);
uint16_t lx_f32_to_bf16(float f);
float lx_f16_to_f32(uint16_t h);
uint16_t lx_f32_to_f16(float f);

/* Array conversions; dt must be transformable.  src/dst may be unaligned
 * with respect to their element type (they point into mappings): the
 * implementation uses memcpy-based loads where needed. */
void lx_to_f32(lx_dtype dt, const void *src, float *dst, size_t n);
void lx_from_f32(lx_dtype dt, const float *src, void *dst, size_t n);
/* dst[i] = a[i] - b[i], both of dtype dt, computed exactly in f32 (for F64 in
 * double, then rounded to f32).  Returns the index of the first element of
 * dst that is not finite (NaN or Inf: an input's, or an overflow of the
 * difference), or n when all are finite (for a dtype that is not
 * transformable: n, dst untouched). */
size_t lx_sub_to_f32(lx_dtype dt, const void *a, const void *b, float *dst, size_t n);
/* Elements per block of the array kernels: lx_add_f32 and lx_sub_to_f32
 * are fastest on lengths that are multiples of it. */
#define LX_DTYPE_BLOCK 512

/* dst[i] = round_dt(base[i] + delta[i]): base and dst of dtype dt (dst may
 * alias base), delta in f32.  The sum is formed in f32 (in double for F64)
 * and rounded once to dt. */
void lx_add_f32(lx_dtype dt, const void *base, const float *delta, void *dst, size_t n);

/* Index of the first element of src[0..n) (dtype dt, transformable; may be
 * unaligned) that is an Inf or a NaN, or n when every element is finite
 * (or dt is not transformable).  A vectorised scan of the exponent bits:
 * meant for every converted output row, as an overflow check. */
size_t lx_find_nonfinite(lx_dtype dt, const void *src, size_t n);
/* The largest finite value of a transformable dtype (65504 for F16,
 * 3.38953139e38 for BF16, FLT_MAX, DBL_MAX); 0 for any other dtype. */
double lx_dtype_max(lx_dtype dt);

#endif

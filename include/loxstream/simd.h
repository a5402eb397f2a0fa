/* simd.h - hot loops compiled for AVX2 as well as the x86-64 baseline.
 *
 * LX_VECTOR_CLONES on a function makes GCC or Clang compile it three
 * times, for AVX-512 (x86-64-v4: F, BW, CD, DQ, VL, as on Ice Lake and
 * Zen 4), for AVX2 and for the baseline (SSE2), and pick one when the
 * program loads (target_clones: an ifunc, resolved once).  The loops are
 * written so that the compiler vectorises them in each (see dtype.c).  All
 * versions give the same bits: x86-64-v4 has FMA, but the build passes
 * -ffp-contract=off (configure.ac: Clang would fuse a*b+c by default; GCC
 * does not in ISO C mode), so no multiply-add is fused ("avx2" has no FMA
 * at all), and the integer conversions are exact.  Define LX_NO_CLONES to
 * turn it off (e.g. for a toolchain without ifunc support).
 *
 * LX_ALWAYS_INLINE goes on the static helpers a cloned function calls, so
 * that each clone gets its own vectorised copy of them rather than a call
 * to the baseline one.
 */
#ifndef LOXSTREAM_SIMD_H
#define LOXSTREAM_SIMD_H

#if defined(__x86_64__) && defined(__has_attribute) && !defined(LX_NO_CLONES)
#if __has_attribute(target_clones)
#define LX_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#endif
#endif
#ifndef LX_VECTOR_CLONES
#define LX_VECTOR_CLONES
#endif

#if defined(__GNUC__)
#define LX_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define LX_ALWAYS_INLINE inline
#endif

#endif

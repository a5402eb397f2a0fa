/* prng.h - the private PRNG of the numeric tests (test_rsvd, test_calibrate):
 * splitmix64 and Box-Muller Gaussians, so that the test matrices do not
 * depend on the code under test nor on the C library's rand().
 * Header-only; each test program has its own state. */
#ifndef LOXSTREAM_TESTS_PRNG_H
#define LOXSTREAM_TESTS_PRNG_H

#include <math.h>
#include <stdint.h>

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_gauss(void)
{
    double u1 = ((double)(rng_next() >> 11) + 0.5) * 0x1p-53;
    double u2 = ((double)(rng_next() >> 11) + 0.5) * 0x1p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif

/* xxh.h - XXH3 for all of loxstream's hashing (inputs and outputs of a
 * run, the journal, verify): through libxxhash's runtime-dispatched entry
 * points (AVX2/AVX-512) when configure found them.  Same hash values
 * either way.  Every file of loxstream that hashes includes this,
 * not <xxhash.h>: the portable XXH3 of Debian's libxxhash 0.8.1 hashes
 * 5.3 GB/s here, the dispatched one 27-30 GB/s (AMD EPYC Zen 4). */
#ifndef LOXSTREAM_XXH_H
#define LOXSTREAM_XXH_H

#ifdef HAVE_CONFIG_H
#include "config.h" /* HAVE_XXH_X86DISPATCH_H, HAVE_XXH3_64BITS_UPDATE_DISPATCH */
#endif
#include <xxhash.h>
#if defined(HAVE_XXH_X86DISPATCH_H) && defined(HAVE_XXH3_64BITS_UPDATE_DISPATCH)
#include <xxh_x86dispatch.h>
#endif

#endif

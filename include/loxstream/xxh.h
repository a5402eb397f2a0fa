/* xxh.h - XXH3 for the bulk hashing of the journal and verify: through
 * libxxhash's runtime-dispatched entry points (AVX2/AVX-512, about twice as
 * fast as the portable ones here) when configure found them.  Same hash
 * values either way.  Include after config.h. */
#ifndef LOXSTREAM_XXH_H
#define LOXSTREAM_XXH_H

#include <xxhash.h>
#if defined(HAVE_XXH_X86DISPATCH_H) && defined(HAVE_XXH3_64BITS_UPDATE_DISPATCH)
#include <xxh_x86dispatch.h>
#endif

#endif

/* hash.h - the XXH3-64 of a whole file (src/base/hash.c): the checksums
 * of the journal, the checksum list and verify. */
#ifndef LOXSTREAM_HASH_H
#define LOXSTREAM_HASH_H

#include <stdint.h>

#include "loxstream/error.h"

/* XXH3-64 of a whole file (opened with lx_open_regular: anything but a
 * regular file is LX_EOUTPUT); with sync != 0 the file is also fsync'ed (it
 * was just written by us). */
lx_status lx_file_xxh3(const char *path, int sync, uint64_t *out);

#endif

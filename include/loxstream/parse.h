/* parse.h - numbers in and out of text (src/base/parse.c): the command
 * line's sizes and numbers, sizes for people, and the 16 hex digits of an
 * XXH3-64 as the durable files print it. */
#ifndef LOXSTREAM_PARSE_H
#define LOXSTREAM_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

/* Parse a size such as "4096", "512M", "1G", "1.5GiB", "64k" (binary units,
 * case-insensitive, optional "B"/"iB").  Rejects negatives, garbage and
 * overflow with LX_EUSAGE naming `what` (e.g. "--max-memory"). */
lx_status lx_parse_size(const char *s, const char *what, uint64_t *out);
/* Strict integer / double parsing with range checks, LX_EUSAGE on error. */
lx_status lx_parse_u64(const char *s, const char *what, uint64_t lo, uint64_t hi, uint64_t *out);
lx_status lx_parse_double(const char *s, const char *what, double lo, double hi, double *out);
/* The shortest decimal that reads back as the same double ("0.0003", not
 * "0.00029999999999999997") into buf. */
const char *lx_format_double(double x, char *buf, size_t len);
/* "1.50 GiB", "312 MiB", "12 B" into buf. */
const char *lx_format_size(uint64_t bytes, char *buf, size_t len);

/* "XXXXXXXXXXXXXXXX": 16 lower-case hex digits and a NUL. */
#define LX_HEX64 17
const char *lx_hex64(uint64_t v, char buf[LX_HEX64]);
/* Exactly 16 lower-case hex digits in s[0..len): LX_OK, else LX_EINPUT
 * (callers that read a file name the file and line in their own message). */
lx_status lx_parse_hex64(const char *s, size_t len, uint64_t *out);

#endif

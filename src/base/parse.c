/* parse.c - numbers in and out of text (see parse.h): sizes ("512M"),
 * integers and decimals with range checks for the command line, sizes for
 * people ("1.50 GiB"), and the 16 hex digits of an XXH3-64 in the durable
 * files. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/parse.h"

lx_status lx_parse_size(const char *s, const char *what, uint64_t *out)
{
    if (!s || !*s)
        return lx_fail(LX_EUSAGE, "%s: empty size", what);
    /* The number is plain decimal digits with an optional fraction: strtod
     * alone would also take leading blanks, signs, hex, exponents and "inf". */
    size_t span = strspn(s, "0123456789.");
    char *end;
    double v = strtod(s, &end);   /* too many digits give +Inf: "too large" below */
    if (span == 0 || end != s + span)
        return lx_fail(LX_EUSAGE, "%s: invalid size '%s' (expected e.g. 512M, 1G, 4096)", what, s);
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (*end == 'i' || *end == 'I'))
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return lx_fail(LX_EUSAGE, "%s: invalid size '%s' (expected e.g. 512M, 1G, 4096)", what, s);
    double bytes = floor(v * mult);
    if (bytes >= 18446744073709551616.0)
        return lx_fail(LX_EUSAGE, "%s: size '%s' is too large", what, s);
    *out = (uint64_t)bytes;
    return LX_OK;
}

lx_status lx_parse_u64(const char *s, const char *what, uint64_t lo, uint64_t hi, uint64_t *out)
{
    /* strtoull skips blanks and negates "-1" into 2^64 - 1: insist on a digit */
    if (!s || !isdigit((unsigned char)*s))
        return lx_fail(LX_EUSAGE, "%s: invalid number '%s'", what, s ? s : "");
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno)
        return lx_fail(LX_EUSAGE, "%s: invalid number '%s'", what, s);
    if (v < lo || v > hi)
        return lx_fail(LX_EUSAGE, "%s: %s is out of range [%" PRIu64 ", %" PRIu64 "]", what, s, lo, hi);
    *out = v;
    return LX_OK;
}

lx_status lx_parse_double(const char *s, const char *what, double lo, double hi, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s))
        return lx_fail(LX_EUSAGE, "%s: invalid number '%s'", what, s ? s : "");
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return lx_fail(LX_EUSAGE, "%s: invalid number '%s' (a finite decimal number is expected)", what, s);
    if (v < lo || v > hi)
        return lx_fail(LX_EUSAGE, "%s: %s is out of range [%g, %g]", what, s, lo, hi);
    *out = v;
    return LX_OK;
}

const char *lx_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    /* 1023.995 and up would print as "1024.00": take the next unit */
    while (v >= 1023.995 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, len, "%.2f %s", v, units[u]);
    return buf;
}

const char *lx_hex64(uint64_t v, char buf[LX_HEX64])
{
    snprintf(buf, LX_HEX64, "%016" PRIx64, v);
    return buf;
}

lx_status lx_parse_hex64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; len == 16 && i < len; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            break;
        v = v << 4 | (uint64_t)d;
    }
    if (len != 16 || i < len)
        return lx_fail(LX_EINPUT, "'%.*s' is not 16 lower-case hex digits",
                       (int)(len < 64 ? len : 64), s);
    *out = v;
    return LX_OK;
}

const char *lx_format_double(double x, char *buf, size_t len)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            break;
    }
    return buf;
}

/* util.c - sizes, numbers, paths and whole-file writes shared by the CLI and the jobs. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "loxstream/util.h"

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

char *lx_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a && dir[a - 1] != '/')
        p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

lx_status lx_write_all(int fd, const void *buf, size_t len, const char *path)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return lx_fail_errno(LX_EFAIL, errno, "%s: write failed", path);
        }
        p += w;
        len -= (size_t)w;
    }
    return LX_OK;
}

static lx_status fsync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return lx_fail(LX_EFAIL, "out of memory");
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (dfd < 0)
        return LX_OK; /* not fatal: the rename itself happened */
    fsync(dfd);
    close(dfd);
    return LX_OK;
}

lx_status lx_write_file_atomic(const char *path, const void *buf, size_t len)
{
    size_t n = strlen(path);
    char *tmp = malloc(n + 5);
    if (!tmp)
        return lx_fail(LX_EFAIL, "out of memory");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot create", tmp);
        free(tmp);
        return st;
    }
    lx_status st = lx_write_all(fd, buf, len, tmp);
    if (st == LX_OK && fsync(fd) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: fsync failed", tmp);
    if (close(fd) != 0 && st == LX_OK)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: close failed", tmp);
    if (st == LX_OK && rename(tmp, path) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot rename to %s", tmp, path);
    if (st != LX_OK)
        unlink(tmp);
    free(tmp);
    if (st == LX_OK)
        st = fsync_parent(path);
    return st;
}

lx_status lx_read_fd_text(int fd, size_t size, const char *path, char **out, size_t *len)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return lx_fail(LX_EFAIL, "out of memory reading %s", path);
    size_t have = 0;
    while (have < size) {
        ssize_t r = read(fd, buf + have, size - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: read failed", path);
            free(buf);
            return st;
        }
        if (r == 0)
            break; /* shrank meanwhile: take what is there */
        have += (size_t)r;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    return LX_OK;
}

lx_status lx_copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", src);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (out < 0) {
        lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot create", dst);
        close(in);
        return st;
    }
    char buf[1 << 16];
    lx_status st = LX_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            st = lx_fail_errno(LX_EFAIL, errno, "%s: read failed", src);
            break;
        }
        if (r == 0)
            break;
        if ((st = lx_write_all(out, buf, (size_t)r, dst)) != LX_OK)
            break;
    }
    close(in);
    if (close(out) != 0 && st == LX_OK)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: close failed", dst);
    return st;
}

lx_status lx_mkdir_p(const char *path)
{
    if (!*path)
        return lx_fail(LX_EFAIL, "cannot create a directory with an empty name");
    char *p = strdup(path);
    if (!p)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot create directory", p);
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    if (st == LX_OK) {
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = lx_fail(LX_EFAIL, "%s: exists and is not a directory", path);
    }
    free(p);
    return st;
}

double lx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int lx_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1 << 20 ? (int)n : 1;
}

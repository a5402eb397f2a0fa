/* util.h - small shared helpers of the command line and the jobs. */
#ifndef LOXSTREAM_UTIL_H
#define LOXSTREAM_UTIL_H

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
/* "1.50 GiB", "312 MiB", "12 B" into buf. */
const char *lx_format_size(uint64_t bytes, char *buf, size_t len);

/* Join dir and name with one '/'; malloc'd (NULL on OOM). */
char *lx_path_join(const char *dir, const char *name);
/* Write a whole buffer with write(2), retrying on EINTR/short writes. */
lx_status lx_write_all(int fd, const void *buf, size_t len, const char *path);
/* Write a whole file atomically: path.tmp, fsync, rename, fsync dir. */
lx_status lx_write_file_atomic(const char *path, const void *buf, size_t len);
/* Read up to size bytes of fd (fewer if the file shrank) into a malloc'd,
 * NUL-terminated buffer; path names the file in messages.  fd stays open. */
lx_status lx_read_fd_text(int fd, size_t size, const char *path, char **out, size_t *len);
/* Copy a regular file (for config/tokenizer files). */
lx_status lx_copy_file(const char *src, const char *dst);
/* mkdir -p for one directory level chain; mode 0777 & ~umask. */
lx_status lx_mkdir_p(const char *path);

/* Monotonic seconds. */
double lx_now(void);
/* Online CPUs (at least 1): the default thread count. */
int lx_online_cpus(void);

#endif

/* report_file.h - where a job's report (apply --report FILE, analyze's
 * standard output) may go: never onto an input file, a file inside the
 * inputs' directories or anything inside the output directory, whatever
 * path, symbolic link or hard link names it; opened without truncating a
 * file that is not a regular one (a FIFO, /dev/null, a terminal).
 */
#ifndef LOXSTREAM_REPORT_FILE_H
#define LOXSTREAM_REPORT_FILE_H

#include <stdio.h>

#include "loxstream/plan.h"

/* Refuse (LX_EUSAGE, naming `option`, the path and what it is) a report
 * path that resolves (after symbolic links) to an input shard, into an
 * input's directory or into the output directory `out` (NULL: none), or
 * that is by device and inode an input shard or a file of an input's or
 * the output's directory.  "-" (standard output) is not checked here. */
lx_status lx_report_check(const char *option, const char *path, const lx_inputs *in,
                          const char *out);
/* lx_report_check, then open path for writing ("-": stdout), the opened
 * file checked again by device and inode; a regular file is emptied, any
 * other kind written as it is. */
lx_status lx_report_open(const char *option, const char *path, const lx_inputs *in,
                         const char *out, FILE **f);
/* The same check on a descriptor that is open already (analyze's standard
 * output, `shown` in messages): LX_EUSAGE if it is one of those files. */
lx_status lx_report_check_fd(int fd, const char *shown, const lx_inputs *in, const char *out);
/* Refuse (LX_EUSAGE, naming both options and paths) two report paths that
 * are one file: the same device and inode if both exist, else the same
 * path after symbolic links.  A character device (/dev/null) may be both. */
lx_status lx_report_distinct(const char *opt_a, const char *a, const char *opt_b, const char *b);
/* The same between a descriptor open already (analyze's standard output,
 * `shown` in messages) and the report path of `option`. */
lx_status lx_report_distinct_fd(int fd, const char *shown, const char *option, const char *path);

#endif

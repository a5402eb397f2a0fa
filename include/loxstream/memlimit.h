/* memlimit.h - the memory limit of the process's own cgroup (src/base/memlimit.c).
 *
 * A cluster job (Slurm, a container) runs in a memory cgroup, where the page
 * cache of the files it reads and writes counts against the job's limit.
 * The limit is the smallest one on the way from the process's cgroup to the
 * root of its hierarchy: cgroup v2 memory.max ("max": none), cgroup v1
 * memory.limit_in_bytes (2^60 or more: none), both if both are mounted.  The
 * cgroup comes from /proc/self/cgroup, the mount points (and the part of the
 * hierarchy they show) from /proc/self/mountinfo.  A limit at or above the
 * machine's RAM is no limit.  Nothing found (no cgroup file system, no
 * permission): no limit.
 */
#ifndef LOXSTREAM_MEMLIMIT_H
#define LOXSTREAM_MEMLIMIT_H

#include <stdint.h>

typedef struct lx_memlimit {
    uint64_t bytes;                /* the limit; 0: none found */
    int version;                   /* cgroup version of the file that set it (1, 2) */
    char file[512];                /* that file */
} lx_memlimit;

/* The calling process's limit. */
void lx_memlimit_detect(lx_memlimit *ml);

/* The same from the given files in place of /proc/self/cgroup and
 * /proc/self/mountinfo, with ram bytes of RAM (0: unknown). */
void lx_memlimit_find(const char *cgroup_file, const char *mountinfo_file, uint64_t ram,
                      lx_memlimit *ml);

#endif

/* sigbus.h - a clear error, not a crash, when a mapped input shrinks.
 *
 * Reading a mapped file past its end raises SIGBUS: that happens when a shard
 * is truncated or replaced while loxstream reads it (a download still
 * running, a copy over the same path, a full disk on a network file system).
 * The mappings of input files are registered here; a SIGBUS inside one of
 * them prints
 *
 *   loxstream: <path>: input file changed or was truncated while being read
 *   (SIGBUS at offset N); the output is incomplete and is not marked complete
 *
 * on stderr (one line) and ends the process with _exit(1) (LX_EFAIL): no
 * output is marked complete, so a later run resumes or redoes it.  A SIGBUS
 * anywhere else gets the action that was in place before lx_sigbus_install.
 *
 * The registry is a fixed table read by the handler without locks; register
 * and unregister may be called from any thread.
 */
#ifndef LOXSTREAM_SIGBUS_H
#define LOXSTREAM_SIGBUS_H

#include <stddef.h>

#include "loxstream/error.h"

#define LX_SIGBUS_SLOTS 1024       /* mappings registered at once */

/* Install the SIGBUS handler (once per process; later calls do nothing).
 * A process-wide policy: the command calls it, library code does not. */
lx_status lx_sigbus_install(void);

/* Register the read-only mapping [addr, addr+len) of the file at path, mapped
 * from file offset 0 (offsets in the message are addr-relative).  path is
 * copied.  Returns 0, or -1 if the table is full or out of memory: the
 * mapping then simply stays unprotected (a SIGBUS in it kills the process). */
int lx_sigbus_register(const void *addr, size_t len, const char *path);

/* Read one byte every stride bytes of [addr, addr+len) on this thread,
 * where a SIGBUS (a mapped file truncated meanwhile) does not end the
 * process: returns 0, or -1 at the first SIGBUS, or at once if the handler
 * is not installed (then nothing is read).  For the prefetcher
 * (prefetch.h), which reads ahead of the computation: the computation
 * reports such a file itself when it gets there. */
int lx_sigbus_probe(const void *addr, size_t len, size_t stride);

/* Forget the mapping that starts at addr (a no-op if none does).  Call it
 * before munmap, and not while another thread still reads the mapping. */
void lx_sigbus_unregister(const void *addr);

#endif

/* fs.h - file-system primitives shared by every layer (src/base/fs.c):
 * whole writes and reads, atomic replacement, copies, directories and
 * their durability, removal.  Every function names the path in its
 * message. */
#ifndef LOXSTREAM_FS_H
#define LOXSTREAM_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "loxstream/error.h"

/* Join dir and name with one '/'; malloc'd (NULL on OOM). */
char *lx_path_join(const char *dir, const char *name);
/* Write a whole buffer with write(2), retrying on EINTR/short writes. */
lx_status lx_write_all(int fd, const void *buf, size_t len, const char *path);
/* Write a whole file atomically: path.tmp, fsync, rename, lx_sync_parent. */
lx_status lx_write_file_atomic(const char *path, const void *buf, size_t len);
/* Read up to size bytes of fd (fewer if the file shrank) into a malloc'd,
 * NUL-terminated buffer; path names the file in messages.  fd stays open. */
lx_status lx_read_fd_text(int fd, size_t size, const char *path, char **out, size_t *len);
/* Copy a regular file (for config/tokenizer files); both are opened with
 * lx_open_regular (a source that is not a regular file is LX_EINPUT, a
 * destination that is not one LX_EOUTPUT). */
lx_status lx_copy_file(const char *src, const char *dst);
/* mkdir -p for one directory level chain; mode 0777 & ~umask. */
lx_status lx_mkdir_p(const char *path);

/* fsync a directory after creating, renaming or removing entries in it,
 * so that the change survives a crash.  A failure is an error (LX_EFAIL
 * naming the directory), except on a file system that cannot fsync a
 * directory at all (EINVAL, ENOTSUP: see fs.c). */
lx_status lx_sync_dir(const char *dir);
/* lx_sync_dir of the directory that holds path. */
lx_status lx_sync_parent(const char *path);

/* Open path as a new file for writing (flags: O_WRONLY or O_RDWR, with
 * O_CLOEXEC added): a regular file or symbolic link that has the name
 * already (a link to another file) is unlinked first, never written
 * through; anything else there (a device, a FIFO, a directory) is left
 * alone and refused with EEXIST; then O_CREAT | O_EXCL | O_NOFOLLOW.
 * Only for names loxstream owns (in its output directory).  -1 with errno
 * on failure. */
int lx_create_fresh(const char *path, int flags);
/* The error of a failed lx_create_fresh (errno err): `refused` naming what
 * is at path if it is not a regular file or link (EEXIST), else LX_EFAIL. */
lx_status lx_fail_create(const char *path, int err, lx_status refused);
/* A file loxstream opened in its output directory to write into must be
 * its own: a regular file with one link (no other name, an input's for
 * one), on the device `dev` of that directory (a mount on the name is
 * not).  LX_OK, or `refuse` naming path and what it is instead. */
lx_status lx_fd_own_file(int fd, const char *path, uint64_t dev, lx_status refuse);

/* The one file to remove if the process is interrupted (a job's
 * unfinished output: lora's .partial); NULL: none.  lx_interrupt_cleanup
 * removes it and is async-signal-safe: the command line's signal handler
 * calls it. */
void lx_remove_on_interrupt(const char *path);
void lx_interrupt_cleanup(void);
/* Open a file loxstream reads or writes where anything may have been put in
 * its place (the output directory above all): open(2) with O_NONBLOCK,
 * O_NOFOLLOW, O_NOCTTY and O_CLOEXEC added to flags (mode 0666 when
 * creating), so that a FIFO or a device never blocks and a symbolic link
 * is never followed, then fstat(2): anything but a regular file is closed
 * and refused with status `refused` and a message naming the path and what
 * it is ("a FIFO").  O_NONBLOCK is cleared again on success.  A missing
 * file (ENOENT) is LX_OK with *fd = -1; any other failure of open(2) is
 * LX_EFAIL.  sb (may be NULL) gets the fstat. */
lx_status lx_open_regular(const char *path, int flags, lx_status refused, int *fd,
                          struct stat *sb);
/* lx_open_regular for an input's file, which may be reached through a
 * symbolic link (a Hugging Face cache snapshot links every file into its
 * blobs): the link is followed, what it leads to must be a regular file. */
lx_status lx_open_input_regular(const char *path, int flags, lx_status refused, int *fd,
                                struct stat *sb);
/* "a FIFO", "a directory", ... for the file type of mode. */
const char *lx_file_kind(mode_t mode);

/* unlink(2) that is content if there is nothing to remove. */
lx_status lx_unlink_if(const char *path);

#endif

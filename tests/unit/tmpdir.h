/* tmpdir.h - the unit tests' one temporary directory: created with mkdtemp
 * under $TMPDIR (default /tmp), removed with everything in it at the end.
 *
 * Use tmpdir_setup / tmpdir_teardown as the cmocka group fixtures, or call
 * tmpdir_make / tmpdir_remove from a test's own fixtures.  One directory per
 * process; its name holds the program's name ("lxunit-test_util.XXXXXX").
 */
#ifndef LX_TESTS_TMPDIR_H
#define LX_TESTS_TMPDIR_H

#include <stddef.h>

/* Create the directory under parent (NULL: $TMPDIR, else /tmp); 0 on
 * success, -1 (with a message on stderr) otherwise. */
int tmpdir_make(const char *parent);
/* Remove it recursively (without following links); 0 on success.  Nothing
 * to do if there is none. */
int tmpdir_remove(void);
/* Its path ("" before tmpdir_make). */
const char *tmpdir_root(void);
/* root/name, in one of 16 static buffers used in turn. */
const char *tmpdir_file(const char *name);

/* Create the directories leading to root/rel (mkdir -p of its parent);
 * 0 on success. */
int tmpdir_mkparent(const char *rel);
/* Write n bytes as root/rel, creating its parent directories; 0 on success. */
int tmpdir_put(const char *rel, const void *bytes, size_t n);

/* cmocka group fixtures: tmpdir_make(NULL) and tmpdir_remove(). */
int tmpdir_setup(void **state);
int tmpdir_teardown(void **state);

#endif

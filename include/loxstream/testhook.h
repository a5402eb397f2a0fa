/* testhook.h - the test-only hooks (src/base/testhook.c): environment
 * variables that the shell tests set to reach states a healthy machine does
 * not produce.  Not a user interface and not documented for users; each
 * variable is read once per process, and without them a hook costs a load
 * and a branch.
 *
 *   LOXSTREAM_TEST_KILL_AT=N | KIND | KIND:N
 *       at the N-th durability point (lx_test_point), or the (N-th) one of
 *       that kind, the process kills itself with SIGKILL (crash tests)
 *   LOXSTREAM_TEST_KILL_SIGNAL=STOP
 *       ... or stops itself there with SIGSTOP (a job cancelled midway)
 *   LOXSTREAM_TEST_TRACE=1
 *       print each durability point on stderr ("loxstream: test: point N
 *       KIND") and each directory sync ("loxstream: test: dirsync N DIR")
 *   LOXSTREAM_TEST_AVAIL=BYTES
 *       the free space apply's check believes the output file system has
 *   LOXSTREAM_TEST_DIRSYNC_EIO=N
 *       the N-th directory sync of the process (lx_sync_dir) fails with EIO
 *   LOXSTREAM_TEST_PAUSE_AT=KIND | KIND:N
 *       at the (N-th) pause point of that kind (lx_test_pause), the process
 *       prints "loxstream: test: paused at KIND N (DETAIL)" on stderr and
 *       stops itself with SIGSTOP until the test sends SIGCONT (a race made
 *       deterministic: the test changes a file between two passes)
 *   LOXSTREAM_TEST_RAM=BYTES
 *       the RAM the engine's memory check believes the machine has (its
 *       choice to drop each tensor's pages when the data exceed it)
 *   LOXSTREAM_TEST_BAR=N
 *       a progress bar is drawn at every update, not every 0.2 s; after the
 *       N-th (N > 0) the process stops itself with SIGSTOP (terminal tests
 *       resize the terminal meanwhile)
 */
#ifndef LOXSTREAM_TESTHOOK_H
#define LOXSTREAM_TESTHOOK_H

#include <stdint.h>

/* A durability point of kind `kind` ("data", "record", "rename", "marker",
 * ...): see LOXSTREAM_TEST_KILL_AT and LOXSTREAM_TEST_TRACE. */
void lx_test_point(const char *kind);
/* A pause point between two reads of the same data ("factored": between
 * the SVD's passes and the output pass); detail names what is being read.
 * Not a durability point: the kill counts do not include it. */
void lx_test_pause(const char *kind, const char *detail);
/* True when a kill or trace hook is active (writes are then split to
 * expose tears). */
int lx_test_hooks(void);
/* With LOXSTREAM_TEST_AVAIL set, *avail becomes its value. */
void lx_test_avail(uint64_t *avail);
/* With LOXSTREAM_TEST_RAM set, *ram becomes its value. */
void lx_test_ram(uint64_t *ram);
/* Called by lx_sync_dir for each directory it syncs: the errno to fail that
 * sync with (EIO for the N-th of LOXSTREAM_TEST_DIRSYNC_EIO), else 0. */
int lx_test_dirsync_error(const char *dir);
/* LOXSTREAM_TEST_BAR: true if set; lx_test_bar_drawn after each bar. */
int lx_test_bar_every(void);
void lx_test_bar_drawn(void);

#endif

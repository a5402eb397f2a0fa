/* hash.c - the XXH3-64 of a whole file (see hash.h), through xxh.h's
 * fastest entry points. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "loxstream/xxh.h"

#include "loxstream/fs.h"
#include "loxstream/hash.h"

#define READ_CHUNK (1u << 20)

lx_status lx_file_xxh3(const char *path, int sync, uint64_t *out)
{
    int fd;
    lx_status st = lx_open_regular(path, O_RDONLY, LX_EOUTPUT, &fd, NULL);
    if (st == LX_OK && fd < 0)
        st = lx_fail_errno(LX_EFAIL, ENOENT, "%s: cannot open", path);
    if (st != LX_OK)
        return st;
    XXH3_state_t *s = XXH3_createState();
    char *buf = malloc(READ_CHUNK);
    if (!s || !buf) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        XXH3_64bits_reset(s);
        for (;;) {
            ssize_t r = read(fd, buf, READ_CHUNK);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                st = lx_fail_errno(LX_EFAIL, errno, "%s: read failed", path);
                break;
            }
            if (r == 0)
                break;
            XXH3_64bits_update(s, buf, (size_t)r);
        }
        if (st == LX_OK && sync && fsync(fd) != 0)
            st = lx_fail_errno(LX_EFAIL, errno, "%s: fsync failed", path);
        if (st == LX_OK)
            *out = XXH3_64bits_digest(s);
    }
    free(buf);
    XXH3_freeState(s);
    close(fd);
    return st;
}

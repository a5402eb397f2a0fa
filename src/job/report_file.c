/* report_file.c - the refusal of a report path that would overwrite an
 * input or the output, and the opening of the report (see report_file.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/outdir.h"
#include "loxstream/report_file.h"

/* Is (dev, ino) a regular file directly in dir (or in its state directory
 * .loxstream, for an output)?  Its name into hit. */
static int in_dir(const char *dir, dev_t dev, ino_t ino, char *hit, size_t len)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        struct stat sb;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (fstatat(dirfd(d), de->d_name, &sb, 0) != 0)
            continue;
        if (S_ISREG(sb.st_mode) && sb.st_dev == dev && sb.st_ino == ino) {
            found = 1;
            snprintf(hit, len, "%s/%s", dir, de->d_name);
        }
    }
    closedir(d);
    return found;
}

/* The file (dev, ino) is an input shard, a file of an input's directory
 * or of the output's: LX_EUSAGE naming it. */
static lx_status check_inode(const char *what, dev_t dev, ino_t ino, const lx_inputs *in,
                             const char *out)
{
    const lx_checkpoint *cks[2] = {in->base, in->aligned};
    char hit[PATH_MAX + 256];
    for (int c = 0; c < 2; c++) {
        if (!cks[c])
            continue;
        const lx_shard *s = lx_checkpoint_find_inode(cks[c], (uint64_t)dev, (uint64_t)ino);
        if (s)
            return lx_fail(LX_EUSAGE, "%s: is the input file %s: it would be overwritten",
                           what, s->path);
        if (in_dir(cks[c]->dir, dev, ino, hit, sizeof hit))
            return lx_fail(LX_EUSAGE, "%s: is the input file %s: it would be overwritten", what,
                           hit);
    }
    if (out) {
        char state[PATH_MAX];
        snprintf(state, sizeof state, "%s/.loxstream", out);
        if (in_dir(out, dev, ino, hit, sizeof hit) || in_dir(state, dev, ino, hit, sizeof hit))
            return lx_fail(LX_EUSAGE, "%s: is %s, in the output directory: choose a path "
                           "outside it", what, hit);
    }
    return LX_OK;
}

lx_status lx_report_check(const char *option, const char *path, const lx_inputs *in,
                          const char *out)
{
    if (!*path)
        return lx_fail(LX_EUSAGE, "%s: the path is empty", option);
    char r[PATH_MAX], d[PATH_MAX];
    size_t existing;
    if (lx_outdir_resolve(path, r, &existing) != LX_OK)
        return lx_fail_ctx(LX_EUSAGE, "%s", option);
    const lx_checkpoint *cks[2] = {in->base, in->aligned};
    for (int c = 0; c < 2; c++) {
        if (!cks[c])
            continue;
        for (size_t i = 0; i < cks[c]->nshards; i++)
            if (realpath(cks[c]->shards[i].path, d) && !strcmp(r, d))
                return lx_fail(LX_EUSAGE, "%s %s: is the input file %s: it would be overwritten",
                               option, path, cks[c]->shards[i].path);
        if (realpath(cks[c]->dir, d) && lx_path_within(r, d))
            return lx_fail(LX_EUSAGE, "%s %s: is inside the input directory %s: choose a path "
                           "outside the inputs", option, path, cks[c]->dir);
    }
    size_t oe;
    if (out && lx_outdir_resolve(out, d, &oe) == LX_OK && lx_path_within(r, d))
        return lx_fail(LX_EUSAGE, "%s %s: is inside the output directory %s: choose a path "
                       "outside it", option, path, out);
    struct stat sb;
    char what[PATH_MAX + 64];
    snprintf(what, sizeof what, "%s %s", option, path);
    if (stat(path, &sb) == 0)
        return check_inode(what, sb.st_dev, sb.st_ino, in, out);
    return LX_OK;
}

lx_status lx_report_check_fd(int fd, const char *shown, const lx_inputs *in, const char *out)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        return LX_OK; /* a pipe, a terminal, a device: nothing to overwrite */
    return check_inode(shown, sb.st_dev, sb.st_ino, in, out);
}

/* The file at path by device and inode, 0 if it does not exist or is a
 * character device (/dev/null, a terminal: writing both there is harmless). */
static int file_id(const char *path, struct stat *sb)
{
    return stat(path, sb) == 0 && !S_ISCHR(sb->st_mode);
}

/* The absolute form of a path that does not exist yet, through a dangling
 * symbolic link to where the file would be created (0: cannot say). */
static int new_path(const char *path, char r[PATH_MAX])
{
    char cur[PATH_MAX], target[PATH_MAX], next[2 * PATH_MAX];
    snprintf(cur, sizeof cur, "%s", path);
    struct stat sb;
    for (int hops = 0; lstat(cur, &sb) == 0 && S_ISLNK(sb.st_mode); hops++) {
        ssize_t n = readlink(cur, target, sizeof target - 1);
        if (hops == 40 || n < 0)
            return 0;
        target[n] = '\0';
        char *slash = strrchr(cur, '/');
        if (target[0] == '/' || !slash)
            snprintf(next, sizeof next, "%s", target);
        else
            snprintf(next, sizeof next, "%.*s/%s", (int)(slash - cur), cur, target);
        if (strlen(next) >= sizeof cur)
            return 0;
        memcpy(cur, next, strlen(next) + 1);
    }
    size_t existing;
    return lx_outdir_resolve(cur, r, &existing) == LX_OK;
}

lx_status lx_report_distinct(const char *opt_a, const char *a, const char *opt_b, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0, same = 0;
    if (ea && eb)
        same = file_id(a, &sa) && file_id(b, &sb) && sa.st_dev == sb.st_dev &&
               sa.st_ino == sb.st_ino;
    else if (!ea && !eb) {
        char ra[PATH_MAX], rb[PATH_MAX];
        same = new_path(a, ra) && new_path(b, rb) && !strcmp(ra, rb);
    }
    if (same)
        return lx_fail(LX_EUSAGE, "%s %s and %s %s: are the same file: one would overwrite "
                       "the other; name two files", opt_a, a, opt_b, b);
    return LX_OK;
}

lx_status lx_report_distinct_fd(int fd, const char *shown, const char *option, const char *path)
{
    struct stat sf, sp;
    if (fstat(fd, &sf) == 0 && !S_ISCHR(sf.st_mode) && file_id(path, &sp) &&
        sf.st_dev == sp.st_dev && sf.st_ino == sp.st_ino)
        return lx_fail(LX_EUSAGE, "%s %s: is the file of %s: one would overwrite the other; "
                       "name another file", option, path, shown);
    return LX_OK;
}

lx_status lx_report_open(const char *option, const char *path, const lx_inputs *in,
                         const char *out, FILE **f)
{
    *f = NULL;
    if (!strcmp(path, "-")) {
        *f = stdout;
        return LX_OK;
    }
    lx_status st = lx_report_check(option, path, in, out);
    if (st != LX_OK)
        return st;
    /* no O_TRUNC: the file is checked first; a FIFO or device is not emptied */
    int fd = open(path, O_WRONLY | O_CREAT | O_NOCTTY | O_CLOEXEC, 0666);
    if (fd < 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot create report", path);
    struct stat sb;
    char what[PATH_MAX + 64];
    snprintf(what, sizeof what, "%s %s", option, path);
    if (fstat(fd, &sb) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    else
        st = check_inode(what, sb.st_dev, sb.st_ino, in, out);
    if (st == LX_OK && S_ISREG(sb.st_mode) && ftruncate(fd, 0) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot empty the report", path);
    if (st == LX_OK && !(*f = fdopen(fd, "w")))
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot open report", path);
    if (st != LX_OK)
        close(fd);
    return st;
}

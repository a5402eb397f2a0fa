/* tmpdir.c - the unit tests' temporary directory (see tmpdir.h). */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tmpdir.h"

static char root[PATH_MAX];

int tmpdir_make(const char *parent)
{
    if (!parent || !*parent)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    int n = snprintf(root, sizeof root, "%s/lxunit-%s.XXXXXX", parent,
                     program_invocation_short_name);
    if (n < 0 || (size_t)n >= sizeof root) {
        fprintf(stderr, "tmpdir: %s: name too long\n", parent);
        root[0] = '\0';
        return -1;
    }
    if (!mkdtemp(root)) {
        fprintf(stderr, "tmpdir: cannot create a directory in %s: %s\n", parent, strerror(errno));
        root[0] = '\0';
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) {
        fprintf(stderr, "tmpdir: cannot remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int tmpdir_remove(void)
{
    if (!root[0])
        return 0;
    int r = nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    root[0] = '\0';
    return r == 0 ? 0 : -1;
}

const char *tmpdir_root(void)
{
    return root;
}

const char *tmpdir_file(const char *name)
{
    static char buf[16][PATH_MAX];
    static unsigned k;
    char *p = buf[k++ % 16];
    int n = snprintf(p, PATH_MAX, "%s/%s", root, name);
    if (n < 0 || n >= PATH_MAX) {
        fprintf(stderr, "tmpdir: %s/%s: name too long\n", root, name);
        abort();
    }
    return p;
}

int tmpdir_mkparent(const char *rel)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", tmpdir_file(rel));
    for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return 0;
}

int tmpdir_put(const char *rel, const void *bytes, size_t n)
{
    if (tmpdir_mkparent(rel) != 0)
        return -1;
    FILE *f = fopen(tmpdir_file(rel), "wb");
    if (!f)
        return -1;
    size_t w = fwrite(bytes, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

int tmpdir_setup(void **state)
{
    (void)state;
    return tmpdir_make(NULL);
}

int tmpdir_teardown(void **state)
{
    (void)state;
    return tmpdir_remove();
}

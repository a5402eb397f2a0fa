/* outdir.c - the output directory before a byte is written (see
 * outdir.h): its resolved path and the inside-an-input refusal, what it
 * holds and the free-space check.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "loxstream/fs.h"
#include "loxstream/journal.h"
#include "loxstream/outdir.h"
#include "loxstream/parse.h"
#include "loxstream/testhook.h"

int lx_path_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);
    return !strncmp(inner, outer, n) && (inner[n] == '/' || inner[n] == '\0' ||
                                         (n > 0 && outer[n - 1] == '/'));
}


lx_status lx_output_outside(const char *out, const lx_checkpoint *const *ins, size_t n,
                            char resolved[PATH_MAX], size_t *existing)
{
    char ri[PATH_MAX];
    lx_status st = lx_outdir_resolve(out, resolved, existing);
    if (st != LX_OK)
        return st;
    for (size_t i = 0; i < n; i++)
        if (ins[i] && realpath(ins[i]->dir, ri) && lx_path_within(resolved, ri))
            return lx_fail(LX_EOUTPUT, "%s: output directory is %s the input %s", out,
                           strcmp(resolved, ri) ? "inside" : "the directory of", ins[i]->dir);
    return LX_OK;
}

/* See outdir.h. */
lx_status lx_outdir_resolve(const char *path, char out[PATH_MAX], size_t *existing)
{
    char head[PATH_MAX], rest[PATH_MAX] = "";
    if (snprintf(head, sizeof head, "%s", path) >= (int)sizeof head)
        return lx_fail(LX_EOUTPUT, "%s: path too long", path);
    for (;;) {
        if (realpath(*head ? head : ".", out))
            break;
        if (errno != ENOENT || !*head)
            return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot resolve", *head ? head : ".");
        size_t n = strlen(head);
        while (n > 1 && head[n - 1] == '/')
            head[--n] = '\0';
        char *slash = strrchr(head, '/');
        const char *last = slash ? slash + 1 : head;
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof tmp, "%s%s%s", last, *rest ? "/" : "", rest);
        snprintf(rest, sizeof rest, "%s", tmp);
        if (slash)
            slash[slash == head ? 1 : 0] = '\0';
        else
            head[0] = '\0';
    }
    *existing = strlen(out);
    /* append the components that do not exist yet; ".." pops lexically */
    for (char *save, *c = strtok_r(rest, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        size_t n = strlen(out);
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            char *slash = strrchr(out, '/');
            if (slash)
                slash[slash == out ? 1 : 0] = '\0';
            if (strlen(out) < *existing)
                *existing = strlen(out);
            continue;
        }
        if (n + 1 + strlen(c) >= PATH_MAX)
            return lx_fail(LX_EOUTPUT, "%s: path too long", path);
        snprintf(out + n, PATH_MAX - n, "%s%s", n > 1 ? "/" : "", c);
    }
    return LX_OK;
}

static lx_status classify_output(const char *out, lx_out_state *state)
{
    struct stat sb;
    if (stat(out, &sb) != 0) {
        if (errno == ENOENT) {
            *state = LX_OUT_NEW;
            return LX_OK;
        }
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot access the output directory", out);
    }
    if (!S_ISDIR(sb.st_mode))
        return lx_fail(LX_EOUTPUT, "%s: output exists and is not a directory", out);
    char *id = lx_path_join(out, LX_IDENTITY_PATH);
    if (!id)
        return lx_fail(LX_EFAIL, "out of memory");
    int ours = lstat(id, &sb) == 0;
    free(id);
    if (ours) {
        *state = LX_OUT_OURS;
        return LX_OK;
    }
    DIR *d = opendir(out);
    if (!d)
        return lx_fail_errno(LX_EOUTPUT, errno, "%s: cannot open output directory", out);
    int others = 0, state_dir = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strcmp(de->d_name, LX_STATE_DIR))
            state_dir = 1;
        else
            others = 1;
    }
    closedir(d);
    *state = !others && (!state_dir || lx_state_is_bare(out)) ? LX_OUT_EMPTY : LX_OUT_FOREIGN;
    /* a part that started meanwhile writes the identity before any other file */
    if (!(id = lx_path_join(out, LX_IDENTITY_PATH)))
        return lx_fail(LX_EFAIL, "out of memory");
    if (lstat(id, &sb) == 0)
        *state = LX_OUT_OURS;
    free(id);
    return LX_OK;
}

lx_status lx_outdir_classify(const char *out, lx_out_state *state)
{
    lx_status st = classify_output(out, state);
    if (st == LX_OK && *state == LX_OUT_FOREIGN)
        st = lx_fail(LX_EOUTPUT, "%s: not empty and not a loxstream output; loxstream does not "
                     "overwrite files: choose a new or empty directory", out);
    return st;
}

lx_status lx_unlink_in(const char *dir, const char *name, const char *suffix)
{
    char *p = NULL;
    if (asprintf(&p, "%s%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name, suffix) < 0)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_unlink_if(p);
    free(p);
    return st;
}

lx_status lx_outdir_check_space(const char *out, const char *resolved, size_t existing,
                                uint64_t need, uint64_t total)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%.*s", (int)existing, resolved);
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot query free space", dir);
    uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
    lx_test_avail(&avail); /* test-only: pretend the file system has this much */
    if (need > avail) {
        char a[32], b[32], c[32];
        return lx_fail(LX_EFAIL, "%s: not enough free space: the output needs %s more (%s in "
                       "all), the file system has %s available (%" PRIu64 " bytes needed, %"
                       PRIu64 " available)", out, lx_format_size(need, a, sizeof a),
                       lx_format_size(total, b, sizeof b), lx_format_size(avail, c, sizeof c),
                       need, avail);
    }
    return LX_OK;
}

/* cli_input.c - the checkpoint an option names (--base, --aligned,
 * --finetuned, inspect's CKPT): a local path as it is, else a model ID from
 * the Hugging Face cache (hfcache.h); errors that name the option, and the
 * inputs that are not safetensors recognised up front (sniff.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "loxstream/hfcache.h"
#include "loxstream/sniff.h"

/* The models found in the cache: alive until the process exits, as the
 * paths the jobs are given point into them. */
static lx_hf_model models[4];
static size_t nmodels;

static int missing_errno(int e)
{
    return e == ENOENT || e == ENOTDIR || e == ELOOP || e == ENAMETOOLONG;
}

/* What exists at arg: refuse what is not a safetensors checkpoint. */
static lx_status check_local(const char *option, const char *arg)
{
    struct stat sb;
    if (stat(arg, &sb) != 0) {
        int e = errno;
        char target[PATH_MAX];
        ssize_t n = readlink(arg, target, sizeof target - 1);
        if (n >= 0) {
            target[n] = '\0';
            return lx_fail(missing_errno(e) ? LX_EINPUT : LX_EFAIL,
                           "%s: '%s': symbolic link to '%s': %s", option, arg, target,
                           strerror(e));
        }
        return lx_fail_errno(missing_errno(e) ? LX_EINPUT : LX_EFAIL, e, "%s: '%s'", option, arg);
    }
    lx_status st = S_ISREG(sb.st_mode) ? lx_sniff_file(arg)
                   : S_ISDIR(sb.st_mode) ? lx_sniff_dir(arg) : LX_OK;
    return st == LX_OK ? st : lx_fail_ctx(st, "%s", option);
}

lx_status cli_input(const char *option, const char *arg, const char *revision, int quiet,
                    const char **path, const lx_hf_model **model)
{
    *path = arg;
    if (model)
        *model = NULL;
    if (!*arg)
        return lx_fail(LX_EUSAGE, "%s: the checkpoint path is empty", option);
    struct stat sb;
    if (lstat(arg, &sb) == 0)
        return check_local(option, arg); /* an existing path always wins */
    int e = errno;
    if (!missing_errno(e))
        return lx_fail_errno(LX_EFAIL, e, "%s: '%s'", option, arg);
    if (!lx_hf_is_model_id(arg))
        return lx_fail_errno(LX_EINPUT, e, "%s: '%s'", option, arg);
    if (nmodels == sizeof models / sizeof models[0])
        return lx_fail(LX_EFAIL, "%s: too many model IDs", option);
    char *cache = lx_hf_cache_dir();
    lx_hf_model *m = &models[nmodels];
    lx_status st = lx_hf_resolve(cache, arg, revision, m);
    free(cache);
    if (st == LX_EINPUT)
        return lx_fail_ctx(st, "%s: '%s': %s; as a model ID", option, arg, strerror(e));
    if (st != LX_OK)
        return lx_fail_ctx(st, "%s", option);
    nmodels++;
    if (!quiet)
        fprintf(stderr, "loxstream: %s: %s, revision %s%s%s: %s\n", option, m->id, m->revision,
                strcmp(m->revision, m->commit) ? " = " : "",
                strcmp(m->revision, m->commit) ? m->commit : "", m->path);
    *path = m->path;
    if (model)
        *model = m;
    return check_local(option, m->path);
}

lx_status cli_revision_used(const char *revision, const char *cmd)
{
    if (revision && nmodels == 0)
        return lx_fail(LX_EUSAGE, "%s: --revision '%s': no input is a model ID (a local path is "
                       "used as it is)", cmd, revision);
    return LX_OK;
}

/* hfcache.c - model IDs resolved in the local Hugging Face cache: the
 * cache's location, its directory names and the ref and snapshot lookup
 * (see hfcache.h).  Only reads; never touches the network. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/fs.h"
#include "loxstream/hfcache.h"

#define ID_PART_MAX 96
#define REF_MAX_BYTES 4096 /* a ref file holds one commit hash */

static int id_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

/* One part of an ID: s[0..n). */
static int id_part(const char *s, size_t n)
{
    if (n == 0 || n > ID_PART_MAX)
        return 0;
    if (s[0] == '.' || s[0] == '-' || s[n - 1] == '.' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!id_char(s[i]))
            return 0;
        if (i > 0 && (s[i] == '-' || s[i] == '.') && s[i - 1] == s[i])
            return 0; /* "--" would be ambiguous in models--ORG--NAME; ".." is refused */
    }
    return 1;
}

int lx_hf_is_model_id(const char *s)
{
    if (!s)
        return 0;
    const char *slash = strchr(s, '/');
    if (!slash)
        return id_part(s, strlen(s));
    return id_part(s, (size_t)(slash - s)) && id_part(slash + 1, strlen(slash + 1));
}

char *lx_hf_cache_dir(void)
{
    const char *v = getenv("HF_HUB_CACHE");
    if (v && *v)
        return strdup(v);
    if ((v = getenv("HF_HOME")) && *v)
        return lx_path_join(v, "hub");
    if ((v = getenv("HOME")) && *v)
        return lx_path_join(v, ".cache/huggingface/hub");
    return NULL;
}

/* A revision names a file under refs/ (it may hold '/', as "refs/pr/1")
 * or a snapshot: no empty, "." or ".." component, no leading '/'. */
static int plain_revision(const char *rev)
{
    if (!*rev || *rev == '/')
        return 0;
    for (const char *p = rev; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
                return 0;
        p += n;
        if (*p == '/')
            p++;
        if (!*p && p[-1] == '/')
            return 0;
    }
    return 1;
}

/* CACHE/models--ORG--NAME (malloc'd). */
static char *repo_dir(const char *cache, const char *id)
{
    size_t n = strlen(id);
    char *name = malloc(sizeof "models--" + n + 1);
    if (!name)
        return NULL;
    char *w = name + sprintf(name, "models--");
    for (const char *p = id; *p; p++) {
        if (*p == '/') {
            *w++ = '-';
            *w++ = '-';
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    char *dir = lx_path_join(cache, name);
    free(name);
    return dir;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The commit named by the ref file at path: its first line, trimmed.
 * *commit stays NULL if the file does not exist. */
static lx_status read_ref(const char *path, char **commit)
{
    *commit = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return LX_OK;
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot open", path);
    }
    struct stat sb;
    char *text = NULL;
    size_t len = 0;
    lx_status st = LX_OK;
    if (fstat(fd, &sb) != 0)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
    else if (!S_ISREG(sb.st_mode) || sb.st_size > REF_MAX_BYTES)
        st = lx_fail(LX_EINPUT, "%s: not a Hugging Face ref file (a regular file of one line)",
                     path);
    else
        st = lx_read_fd_text(fd, (size_t)sb.st_size, path, &text, &len);
    close(fd);
    if (st != LX_OK)
        return st;
    text[strcspn(text, "\r\n")] = '\0';
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == ' ' || text[n - 1] == '\t'))
        text[--n] = '\0';
    if (n == 0 || strchr(text, '/') || !strcmp(text, ".") || !strcmp(text, "..")) {
        st = lx_fail(LX_EINPUT, "%s: '%s' is not a commit (a ref file holds one commit hash)",
                     path, text);
        free(text);
        return st;
    }
    *commit = text;
    return LX_OK;
}

void lx_hf_model_free(lx_hf_model *m)
{
    if (!m)
        return;
    free(m->id);
    free(m->revision);
    free(m->commit);
    free(m->path);
    memset(m, 0, sizeof *m);
}

/* " --revision REV" for the fetch command, "" for the default. */
static const char *rev_arg(const char *rev, char *buf, size_t len)
{
    if (!strcmp(rev, LX_HF_DEFAULT_REVISION))
        return "";
    snprintf(buf, len, " --revision %s", rev);
    return buf;
}

/* Find the snapshot of rev in repo (the model's directory): refs/REV, else
 * snapshots/REV.  *commit malloc'd. */
static lx_status find_snapshot(const char *repo, const char *id, const char *rev, char **commit)
{
    char fetch[512];
    char *refs = lx_path_join(repo, "refs"), *ref = refs ? lx_path_join(refs, rev) : NULL;
    free(refs);
    if (!ref)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = read_ref(ref, commit);
    free(ref);
    if (st != LX_OK || *commit)
        return st;
    /* not a ref: a commit, if its snapshot is there */
    if (!strchr(rev, '/')) {
        char *snaps = lx_path_join(repo, "snapshots"), *snap = snaps ? lx_path_join(snaps, rev) : NULL;
        free(snaps);
        if (!snap)
            return lx_fail(LX_EFAIL, "out of memory");
        int there = is_dir(snap);
        free(snap);
        if (there)
            return (*commit = strdup(rev)) ? LX_OK : lx_fail(LX_EFAIL, "out of memory");
    }
    return lx_fail(LX_EINPUT,
                   "model '%s': revision '%s' is not in the Hugging Face cache (no %s/refs/%s "
                   "or %s/snapshots/%s); to fetch it: huggingface-cli download %s%s",
                   id, rev, repo, rev, repo, rev, id, rev_arg(rev, fetch, sizeof fetch));
}

lx_status lx_hf_resolve(const char *cache, const char *id, const char *revision,
                        lx_hf_model *out)
{
    memset(out, 0, sizeof *out);
    const char *rev = revision ? revision : LX_HF_DEFAULT_REVISION;
    if (!lx_hf_is_model_id(id))
        return lx_fail(LX_EUSAGE, "'%s' is not a model ID (ORG/NAME or NAME)", id);
    if (!plain_revision(rev))
        return lx_fail(LX_EUSAGE, "--revision: '%s' is not a ref or commit name", rev);
    if (!cache)
        return lx_fail(LX_EINPUT, "model '%s': no Hugging Face cache to look in (HF_HUB_CACHE, "
                       "HF_HOME and HOME are all unset)", id);
    char fetch[512];
    char *repo = repo_dir(cache, id);
    if (!repo)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    char *commit = NULL, *snaps = NULL, *path = NULL;
    if (!is_dir(repo)) {
        st = lx_fail(LX_EINPUT,
                     "model '%s' is not in the Hugging Face cache (no directory %s); "
                     "loxstream does not download: fetch it with "
                     "huggingface-cli download %s%s",
                     id, repo, id, rev_arg(rev, fetch, sizeof fetch));
    } else if ((st = find_snapshot(repo, id, rev, &commit)) == LX_OK) {
        if (!(snaps = lx_path_join(repo, "snapshots")) || !(path = lx_path_join(snaps, commit)))
            st = lx_fail(LX_EFAIL, "out of memory");
        else if (!is_dir(path))
            st = lx_fail(LX_EINPUT,
                         "model '%s': %s/refs/%s names commit %s, but there is no %s "
                         "(an interrupted download?); to fetch it: huggingface-cli download %s%s",
                         id, repo, rev, commit, path, id, rev_arg(rev, fetch, sizeof fetch));
    }
    free(repo);
    free(snaps);
    if (st == LX_OK) {
        out->id = strdup(id);
        out->revision = strdup(rev);
        out->commit = commit;
        out->path = path;
        if (!out->id || !out->revision) {
            lx_hf_model_free(out);
            return lx_fail(LX_EFAIL, "out of memory");
        }
        return LX_OK;
    }
    free(commit);
    free(path);
    return st;
}

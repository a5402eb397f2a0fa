/* checkpoint.c - open a checkpoint (file, sharded directory, single or loose
 * files), map and validate every shard, cross-check the index, and build the
 * tensor table with its O(1) name lookup.
 */
#ifdef HAVE_CONFIG_H /* not in the fuzz build (tests/fuzz/build.sh) */
#include "config.h"
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/xxh.h"

#include "loxstream/checkpoint.h"
#include "loxstream/sigbus.h"
#include "loxstream/fs.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"
#define SUFFIX ".safetensors"
/* An index is small (about 100 bytes a tensor); refuse absurd ones before
 * allocating for them. */
#define INDEX_MAX_BYTES (1u << 30)

/* Open addressing with linear probing, at most half full.  A slot holds the
 * tensor index + 1 (0: empty) and the hash's high bits, so that a probe
 * compares strings only on a likely match. */
struct lx_index_table {
    size_t mask;
    uint32_t *slot;
    uint32_t *tag;
};

static uint64_t name_hash(const char *name)
{
    return XXH3_64bits(name, strlen(name));
}

static void table_free(lx_index_table *t)
{
    if (!t)
        return;
    free(t->slot);
    free(t->tag);
    free(t);
}

/* Build the lookup over ck->tensors; a name seen twice is an error (the same
 * name in two shards: each shard alone was checked by lx_st_parse). */
static lx_status table_build(lx_checkpoint *ck)
{
    size_t cap = 16;
    while (cap < 2 * ck->ntensors)
        cap *= 2;
    lx_index_table *t = calloc(1, sizeof *t);
    if (!t || !(t->slot = calloc(cap, sizeof *t->slot)) || !(t->tag = calloc(cap, sizeof *t->tag))) {
        table_free(t);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    t->mask = cap - 1;
    ck->lookup = t;
    for (size_t i = 0; i < ck->ntensors; i++) {
        const char *name = ck->tensors[i].name;
        uint64_t h = name_hash(name);
        uint32_t tag = (uint32_t)(h >> 32);
        size_t at = (size_t)h & t->mask;
        for (;; at = (at + 1) & t->mask) {
            if (!t->slot[at]) {
                t->slot[at] = (uint32_t)i + 1;
                t->tag[at] = tag;
                break;
            }
            const lx_tensor *o = &ck->tensors[t->slot[at] - 1];
            if (t->tag[at] == tag && strcmp(o->name, name) == 0) {
                char q[LX_NAME_QUOTE];
                return lx_fail(LX_EINPUT, "%s: tensor '%s' is in two shards: %s and %s",
                               ck->path, lx_st_escape_name(name, q, sizeof q),
                               ck->shards[o->shard].path, ck->shards[ck->tensors[i].shard].path);
            }
        }
    }
    return LX_OK;
}

lx_status lx_shard_unchanged(const lx_shard *s)
{
    struct stat sb;
    if (stat(s->path, &sb) != 0)
        return lx_fail_errno(LX_EINPUT, errno, "%s: changed while loxstream read it (it is gone)",
                             s->path);
    const char *what = NULL;
    if ((uint64_t)sb.st_dev != s->dev || (uint64_t)sb.st_ino != s->ino)
        what = "replaced by another file";
    else if ((uint64_t)sb.st_size != s->size)
        what = "its size changed";
    else if ((int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec != s->mtime_ns ||
             (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec != s->ctime_ns)
        what = "written to";
    if (!what)
        return LX_OK;
    return lx_fail(LX_EINPUT, "%s: changed while loxstream read it (%s)", s->path, what);
}

lx_status lx_checkpoint_unchanged(const lx_checkpoint *ck)
{
    lx_status st = LX_OK;
    for (size_t i = 0; ck && i < ck->nshards && st == LX_OK; i++)
        st = lx_shard_unchanged(&ck->shards[i]);
    return st;
}

const lx_shard *lx_checkpoint_find_inode(const lx_checkpoint *ck, uint64_t dev, uint64_t ino)
{
    for (size_t i = 0; ck && i < ck->nshards; i++)
        if (ck->shards[i].dev == dev && ck->shards[i].ino == ino)
            return &ck->shards[i];
    return NULL;
}

const lx_tensor *lx_checkpoint_find(const lx_checkpoint *ck, const char *name)
{
    if (!ck || !ck->lookup || !name)
        return NULL;
    const lx_index_table *t = ck->lookup;
    uint64_t h = name_hash(name);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t at = (size_t)h & t->mask; t->slot[at]; at = (at + 1) & t->mask) {
        const lx_tensor *o = &ck->tensors[t->slot[at] - 1];
        if (t->tag[at] == tag && strcmp(o->name, name) == 0)
            return o;
    }
    return NULL;
}

/* "a directory", "a FIFO"...: what a file is, for "not a regular file" messages. */
static const char *file_kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

/* The message of an input file that cannot be opened: `what` is the
 * context ("cannot open", or which index entry named the file).  A file
 * that is missing (also behind a dangling link) gives `missing`; other
 * errors (permissions, I/O) are runtime failures. */
static lx_status open_failed(const char *path, const char *what, lx_status missing, int err)
{
    lx_status st = (err == ENOENT || err == ENOTDIR || err == ELOOP || err == ENAMETOOLONG)
                       ? missing : LX_EFAIL;
    struct stat lsb;
    char target[PATH_MAX], q[LX_NAME_QUOTE];
    ssize_t n;
    if (err == ENOENT && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode) &&
        (n = readlink(path, target, sizeof target - 1)) >= 0) {
        target[n] = '\0';
        return lx_fail(st, "%s: %s: symbolic link to '%s', which does not exist", path, what,
                       lx_st_escape_name(target, q, sizeof q));
    }
    return lx_fail_errno(st, err, "%s: %s", path, what);
}

/* Open an input file under the symlink policy (see loxstream(1)): symbolic
 * links are followed wherever they point, as the Hugging Face cache links
 * snapshots/<rev>/<file> to ../../blobs/<hash>, but what they reach must be a
 * regular file.  The type is checked before open(2), so a FIFO or a device is
 * never opened, and again on the descriptor; the open does not block even if
 * a FIFO is swapped in between.  Returns the descriptor in *fd, size in *sb. */
static lx_status open_regular(const char *path, const char *what, lx_status missing, int *fd,
                              struct stat *sb)
{
    *fd = -1;
    if (stat(path, sb) != 0)
        return open_failed(path, what, missing, errno);
    if (!S_ISREG(sb->st_mode))
        return lx_fail(LX_EINPUT, "%s: not a regular file (%s)", path, file_kind(sb->st_mode));
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (f < 0)
        return open_failed(path, what, missing, errno);
    if (fstat(f, sb) != 0) {
        lx_status st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", path);
        close(f);
        return st;
    }
    if (!S_ISREG(sb->st_mode)) {
        close(f);
        return lx_fail(LX_EINPUT, "%s: not a regular file (%s)", path, file_kind(sb->st_mode));
    }
    *fd = f;
    return LX_OK;
}

/* Map and validate one shard.  `listed_for` names the index entry that
 * brought us here (NULL without an index), for the message of a missing file. */
static lx_status shard_open(lx_shard *s, const char *listed_for)
{
    char q[LX_NAME_QUOTE], qs[LX_NAME_QUOTE], what[3 * LX_NAME_QUOTE];
    if (listed_for)
        snprintf(what, sizeof what, "shard '%s' (listed for tensor '%s')",
                 lx_st_escape_name(s->name, qs, sizeof qs),
                 lx_st_escape_name(listed_for, q, sizeof q));
    else
        snprintf(what, sizeof what, "cannot open");
    /* a shard that the directory or the index names but that is missing
     * makes the checkpoint invalid; so does a dangling link to one */
    struct stat sb;
    int fd;
    lx_status st = open_regular(s->path, what, LX_EINPUT, &fd, &sb);
    if (st != LX_OK)
        return st;
    s->dev = (uint64_t)sb.st_dev;
    s->ino = (uint64_t)sb.st_ino;
    s->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    s->ctime_ns = (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec;
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = lx_fail(LX_EFAIL, "%s: too large to map on this system", s->path);
    } else {
        s->size = (uint64_t)sb.st_size;
        if (s->size > 0) {
            void *m = mmap(NULL, (size_t)s->size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (m == MAP_FAILED) {
                st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot map", s->path);
            } else {
                s->map = m;
                /* a file truncated under us becomes a clear error, not a crash */
                lx_sigbus_register(m, (size_t)s->size, s->path);
            }
        }
    }
    if (st != LX_OK) {
        close(fd);
        return st;
    }
    s->fd = fd; /* the mapping would stay valid without it: kept for lx_tensor_release */
    /* size 0: no mapping, and the parser rejects it as too short */
    if ((st = lx_st_parse(s->map, s->size, s->path, &s->header)) != LX_OK)
        return st;
    s->header_xxh3 = XXH3_64bits(s->map, (size_t)s->header.data_start);
    return LX_OK;
}

/* A shard file to open; listed_for is a tensor the index maps to it (NULL
 * without an index), named if the file is missing. */
struct shard_ref {
    const char *name;
    const char *listed_for;
};

/* By name; among index entries of one shard, by tensor, so that the message
 * for a missing shard is the same on every run. */
static int cmp_ref(const void *pa, const void *pb)
{
    const struct shard_ref *a = pa, *b = pb;
    int c = strcmp(a->name, b->name);
    if (c || !a->listed_for || !b->listed_for)
        return c;
    return strcmp(a->listed_for, b->listed_for);
}

/* Set up ck->shards from the refs (sorted here, made unique) and open them;
 * each file once, however many index entries name it. */
static lx_status open_shards(lx_checkpoint *ck, struct shard_ref *refs, size_t n)
{
    qsort(refs, n, sizeof *refs, cmp_ref);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || strcmp(refs[u - 1].name, refs[i].name) != 0)
            refs[u++] = refs[i];
    ck->shards = calloc(u ? u : 1, sizeof *ck->shards);
    if (!ck->shards)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; i < u; i++) {
        lx_shard *s = &ck->shards[ck->nshards++];
        s->fd = -1;
        s->name = strdup(refs[i].name);
        s->path = lx_path_join(ck->dir, refs[i].name);
        if (!s->name || !s->path)
            return lx_fail(LX_EFAIL, "out of memory");
        lx_status st = shard_open(s, refs[i].listed_for);
        if (st != LX_OK)
            return st;
    }
    return LX_OK;
}

/* The table is in shard order, then file order (each header is sorted). */
static lx_status build_tensors(lx_checkpoint *ck)
{
    size_t n = 0;
    for (size_t i = 0; i < ck->nshards; i++)
        n += ck->shards[i].header.ntensors;
    if (n >= UINT32_MAX)
        return lx_fail(LX_EINPUT, "%s: too many tensors (%zu)", ck->path, n);
    ck->tensors = calloc(n ? n : 1, sizeof *ck->tensors);
    if (!ck->tensors)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; i < ck->nshards; i++) {
        const lx_shard *s = &ck->shards[i];
        for (size_t k = 0; k < s->header.ntensors; k++) {
            const lx_st_tensor *h = &s->header.tensors[k];
            lx_tensor *t = &ck->tensors[ck->ntensors++];
            t->name = h->name;
            t->dtype = h->dtype;
            t->ndim = h->ndim;
            t->shape = h->shape;
            t->nelem = h->nelem;
            t->nbytes = h->end - h->begin;
            t->offset = s->header.data_start + h->begin;
            t->shard = (uint32_t)i;
            t->data = t->nbytes ? s->map + t->offset : NULL;
            t->file = s;
            ck->total_bytes += t->nbytes;
            ck->total_params += t->nelem;
        }
    }
    return LX_OK;
}

static lx_status read_small_file(const char *path, char **out, size_t *len)
{
    struct stat sb;
    int fd;
    lx_status st = open_regular(path, "cannot open", LX_EINPUT, &fd, &sb);
    if (st != LX_OK)
        return st;
    if ((uint64_t)sb.st_size > INDEX_MAX_BYTES)
        st = lx_fail(LX_EINPUT, "%s: %" PRIu64 " bytes, more than an index can need (%u)", path,
                     (uint64_t)sb.st_size, INDEX_MAX_BYTES);
    else
        st = lx_read_fd_text(fd, (size_t)sb.st_size, path, out, len);
    close(fd);
    return st;
}

/* Every index entry names the shard that holds the tensor, and every tensor
 * of a shard is listed. */
static lx_status cross_check(const lx_checkpoint *ck, const lx_index *ix, const char *ixpath)
{
    char q[LX_NAME_QUOTE], qs[LX_NAME_QUOTE], qo[LX_NAME_QUOTE];
    for (size_t i = 0; i < ix->n; i++) {
        const lx_tensor *t = lx_checkpoint_find(ck, ix->tensor_names[i]);
        if (t && strcmp(ck->shards[t->shard].name, ix->shard_names[i]) == 0)
            continue;
        lx_st_escape_name(ix->tensor_names[i], q, sizeof q);
        lx_st_escape_name(ix->shard_names[i], qs, sizeof qs);
        if (!t)
            return lx_fail(LX_EINPUT, "%s: tensor '%s': listed in shard '%s', which does not hold it",
                           ixpath, q, qs);
        return lx_fail(LX_EINPUT,
                       "%s: tensor '%s': listed in shard '%s', which does not hold it (it is in '%s')",
                       ixpath, q, qs, lx_st_escape_name(ck->shards[t->shard].name, qo, sizeof qo));
    }
    /* the index names are unique (duplicates are refused when parsing) and
     * each was found above, so equal counts mean every tensor is listed */
    if (ix->n == ck->ntensors)
        return LX_OK;
    unsigned char *listed = calloc(ck->ntensors, 1);
    if (!listed)
        return lx_fail(LX_EFAIL, "out of memory");
    for (size_t i = 0; i < ix->n; i++)
        listed[lx_checkpoint_find(ck, ix->tensor_names[i]) - ck->tensors] = 1;
    lx_status st = LX_OK;
    for (size_t i = 0; i < ck->ntensors; i++) {
        if (!listed[i]) {
            const lx_tensor *t = &ck->tensors[i];
            st = lx_fail(LX_EINPUT, "%s: tensor '%s': not listed in the index %s",
                         ck->shards[t->shard].path, lx_st_escape_name(t->name, q, sizeof q),
                         ixpath);
            break;
        }
    }
    free(listed);
    return st;
}

static lx_status open_indexed(lx_checkpoint *ck, const char *ixpath)
{
    char *json = NULL;
    size_t len = 0;
    lx_status st = read_small_file(ixpath, &json, &len);
    if (st != LX_OK)
        return st;
    lx_index ix;
    st = lx_index_parse(json, len, ixpath, &ix);
    free(json);
    if (st != LX_OK)
        return st;
    struct shard_ref *refs = NULL;
    if (ix.n == 0) {
        st = lx_fail(LX_EINPUT, "%s: weight_map lists no tensors", ixpath);
    } else if (!(refs = malloc(ix.n * sizeof *refs))) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        for (size_t i = 0; i < ix.n && st == LX_OK; i++) {
            refs[i].name = ix.shard_names[i];
            refs[i].listed_for = ix.tensor_names[i];
            /* a plain name, but not a shard: say so rather than parse JSON
             * text as a safetensors header */
            if (strcmp(refs[i].name, INDEX_NAME) == 0) {
                char q[LX_NAME_QUOTE];
                st = lx_fail(LX_EINPUT,
                             "%s: weight_map: tensor '%s': shard name '%s' is the index itself",
                             ixpath, lx_st_escape_name(refs[i].listed_for, q, sizeof q),
                             INDEX_NAME);
            }
        }
        if (st == LX_OK)
            st = open_shards(ck, refs, ix.n);
    }
    free(refs);
    if (st == LX_OK)
        st = build_tensors(ck);
    if (st == LX_OK)
        st = table_build(ck);
    if (st == LX_OK)
        st = cross_check(ck, &ix, ixpath);
    lx_index_free(&ix);
    return st;
}

/* An apply output before completion: its shards still have temporary
 * names (see journal.h: .loxstream/identity, no .loxstream/complete). */
static int is_unfinished_output(const char *dir)
{
    char *id = lx_path_join(dir, ".loxstream/identity");
    char *done = lx_path_join(dir, ".loxstream/complete");
    struct stat sb;
    int yes = id && done && stat(id, &sb) == 0 && stat(done, &sb) != 0;
    free(id);
    free(done);
    return yes;
}

/* Loose *.safetensors files.  Dot files are skipped: "._x.safetensors" is
 * macOS metadata, not a shard. */
static lx_status open_loose(lx_checkpoint *ck)
{
    DIR *d = opendir(ck->dir);
    if (!d)
        return lx_fail_errno(LX_EFAIL, errno, "%s: cannot list directory", ck->dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    lx_status st = LX_OK;
    const size_t sl = strlen(SUFFIX);
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot list directory", ck->dir);
            break;
        }
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l <= sl || strcmp(e->d_name + l - sl, SUFFIX) != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **p = realloc(names, nc * sizeof *names);
            if (!p) {
                st = lx_fail(LX_EFAIL, "out of memory");
                break;
            }
            names = p;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = lx_fail(LX_EFAIL, "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (st == LX_OK && n == 0 && is_unfinished_output(ck->dir))
        st = lx_fail(LX_EINPUT, "%s: incomplete loxstream output (run apply again to resume)",
                     ck->dir);
    else if (st == LX_OK && n == 0)
        st = lx_fail(LX_EINPUT, "%s: no " INDEX_NAME ", " SINGLE_NAME " or *" SUFFIX
                     " file in this directory", ck->dir);
    struct shard_ref *refs = NULL;
    if (st == LX_OK && !(refs = malloc(n * sizeof *refs)))
        st = lx_fail(LX_EFAIL, "out of memory");
    if (st == LX_OK) {
        for (size_t i = 0; i < n; i++) {
            refs[i].name = names[i];
            refs[i].listed_for = NULL;
        }
        st = open_shards(ck, refs, n);
    }
    free(refs);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}

static lx_status open_single(lx_checkpoint *ck, const char *name)
{
    struct shard_ref ref = {name, NULL};
    return open_shards(ck, &ref, 1);
}

/* A file given by the user: its directory is the checkpoint's, and messages
 * use the path as the user spelt it. */
static lx_status open_file(lx_checkpoint *ck, const char *path)
{
    char *a = strdup(path), *b = strdup(path);
    lx_status st = LX_OK;
    lx_shard *s;
    if (!a || !b || !(ck->dir = strdup(dirname(a))) ||
        !(ck->shards = calloc(1, sizeof *ck->shards))) {
        st = lx_fail(LX_EFAIL, "out of memory");
    } else {
        s = &ck->shards[ck->nshards++];
        s->fd = -1;
        if (!(s->name = strdup(basename(b))) || !(s->path = strdup(path)))
            st = lx_fail(LX_EFAIL, "out of memory");
        else
            st = shard_open(s, NULL);
    }
    free(a);
    free(b);
    return st;
}

/* Does dir/name exist (as anything)?  Other errors than ENOENT are reported.
 * A dangling link counts: an index whose blob is missing (an interrupted
 * download into the HF cache) must be an error, not a silent switch to
 * opening the *.safetensors files without it. */
static lx_status exists(const char *dir, const char *name, int *yes)
{
    char *p = lx_path_join(dir, name);
    if (!p)
        return lx_fail(LX_EFAIL, "out of memory");
    struct stat sb;
    lx_status st = LX_OK;
    *yes = 0;
    if (lstat(p, &sb) == 0)
        *yes = 1;
    else if (errno != ENOENT && errno != ENOTDIR)
        st = lx_fail_errno(LX_EFAIL, errno, "%s: cannot stat", p);
    free(p);
    return st;
}

static lx_status open_path(lx_checkpoint *ck, const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return open_failed(path, "cannot open", LX_EFAIL, errno);
    if (S_ISREG(sb.st_mode))
        return open_file(ck, path);
    if (!S_ISDIR(sb.st_mode))
        return lx_fail(LX_EINPUT, "%s: not a safetensors file or a directory (%s)", path,
                       file_kind(sb.st_mode));
    if (!(ck->dir = strdup(path)))
        return lx_fail(LX_EFAIL, "out of memory");
    int yes;
    lx_status st = exists(path, INDEX_NAME, &yes);
    if (st != LX_OK)
        return st;
    if (yes) {
        char *ixpath = lx_path_join(path, INDEX_NAME);
        if (!ixpath)
            return lx_fail(LX_EFAIL, "out of memory");
        ck->has_index = 1;
        st = open_indexed(ck, ixpath);
        free(ixpath);
        return st;
    }
    if ((st = exists(path, SINGLE_NAME, &yes)) != LX_OK)
        return st;
    return yes ? open_single(ck, SINGLE_NAME) : open_loose(ck);
}

lx_status lx_checkpoint_open(const char *path, lx_checkpoint **out)
{
    *out = NULL;
    if (!*path)
        return lx_fail(LX_EUSAGE, "the checkpoint path is empty");
    lx_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck || !(ck->path = strdup(path))) {
        free(ck);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    lx_status st = open_path(ck, path);
    /* with an index these ran already (the cross-check needs them) */
    if (st == LX_OK && !ck->has_index)
        st = build_tensors(ck);
    if (st == LX_OK && !ck->has_index)
        st = table_build(ck);
    if (st != LX_OK) {
        lx_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return LX_OK;
}

void lx_tensor_release(const lx_tensor *t, int evict)
{
    if (!t->data || !t->nbytes)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data & ~(page - 1);
    uintptr_t e = ((uintptr_t)t->data + t->nbytes + page - 1) & ~(page - 1);
    madvise((void *)a, e - a, MADV_DONTNEED);
    /* only pages no longer mapped leave the cache; the kernel keeps the
     * partial pages at either end, which neighbours may share */
    if (evict && t->file && t->file->fd >= 0)
        posix_fadvise(t->file->fd, (off_t)t->offset, (off_t)t->nbytes, POSIX_FADV_DONTNEED);
}

void lx_checkpoint_close(lx_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->nshards; i++) {
        lx_shard *s = &ck->shards[i];
        if (s->map) {
            lx_sigbus_unregister(s->map);
            munmap((void *)s->map, (size_t)s->size);
        }
        if (s->fd >= 0)
            close(s->fd);
        lx_st_header_free(&s->header);
        free(s->name);
        free(s->path);
    }
    free(ck->shards);
    free(ck->tensors);
    table_free(ck->lookup);
    free(ck->path);
    free(ck->dir);
    free(ck);
}

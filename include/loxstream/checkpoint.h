/* checkpoint.h - a model checkpoint opened for reading: one .safetensors
 * file, or a directory holding model.safetensors.index.json and its shards,
 * a single model.safetensors, or loose *.safetensors files.
 *
 * Every shard is memory-mapped read-only and validated (lx_st_parse); the
 * index is parsed with jansson and cross-checked against the shards: every
 * index entry names an existing shard that holds the tensor, every tensor of
 * a shard is listed, no name appears twice, shard names are plain file names
 * (no '/', no "..").  Violations: lx_fail(LX_EINPUT, ...) naming the file,
 * tensor and value.
 *
 * Symbolic links are followed wherever they point (the Hugging Face cache
 * links snapshots/<rev>/<file> to ../../blobs/<hash>), but every file read
 * must be a regular file: a directory, FIFO, device or socket is refused
 * (LX_EINPUT) before it is opened, as are dangling and looping links; a file
 * that exists but cannot be read (permissions, I/O) is LX_EFAIL.
 */
#ifndef LOXSTREAM_CHECKPOINT_H
#define LOXSTREAM_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/safetensors.h"

typedef struct lx_shard {
    char *name;                    /* file name within the checkpoint directory */
    char *path;                    /* path as opened */
    const unsigned char *map;      /* read-only mapping of the whole file (NULL if size 0) */
    uint64_t size;                 /* file size */
    lx_st_header header;           /* parsed header */
    uint64_t header_xxh3;          /* XXH3-64 of the first 8 + N bytes (identity) */
    /* the file as opened (fstat): a change to any of these while a job
     * reads it is a change of the input (lx_shard_unchanged) */
    uint64_t dev, ino;
    int64_t mtime_ns, ctime_ns;
    int fd;                        /* kept open for lx_tensor_release (-1: none) */
} lx_shard;

typedef struct lx_tensor {
    const char *name;              /* points into the shard's header */
    lx_dtype dtype;
    int ndim;
    const uint64_t *shape;         /* ndim entries */
    uint64_t nelem;
    uint64_t nbytes;
    uint64_t offset;               /* absolute file offset within the shard */
    uint32_t shard;                /* index into lx_checkpoint.shards */
    const unsigned char *data;     /* map + offset (NULL when nbytes == 0) */
    const lx_shard *file;          /* its shard (NULL: not from a checkpoint) */
} lx_tensor;

typedef struct lx_index_table lx_index_table; /* private hash table */

typedef struct lx_checkpoint {
    char *path;                    /* as given by the user */
    char *dir;                     /* directory of the shards */
    int has_index;                 /* opened through model.safetensors.index.json */
    size_t nshards;
    lx_shard *shards;              /* index order: sorted by file name */
    size_t ntensors;
    lx_tensor *tensors;            /* by shard, then by offset (file order) */
    uint64_t total_bytes;          /* sum of tensor bytes */
    uint64_t total_params;         /* sum of nelem */
    lx_index_table *lookup;
} lx_checkpoint;

/* Open and validate.  On failure nothing stays mapped or open. */
lx_status lx_checkpoint_open(const char *path, lx_checkpoint **out);
void lx_checkpoint_close(lx_checkpoint *ck);
/* LX_OK if the file at s->path is still the one opened, unmodified: same
 * device, inode, size, mtime and ctime (a write in place, a truncation, a
 * replacement all change one of them).  Else LX_EINPUT naming the file and
 * what changed, "while loxstream read it". */
lx_status lx_shard_unchanged(const lx_shard *s);
/* lx_shard_unchanged for every shard of ck. */
lx_status lx_checkpoint_unchanged(const lx_checkpoint *ck);
/* The shard of ck that is the file (dev, ino), or NULL. */
const lx_shard *lx_checkpoint_find_inode(const lx_checkpoint *ck, uint64_t dev, uint64_t ino);

/* O(1) lookup by exact name; NULL if absent. */
const lx_tensor *lx_checkpoint_find(const lx_checkpoint *ck, const char *name);

/* Done with the tensor's bytes: unmap its pages from this process
 * (MADV_DONTNEED) and, with evict, drop them from the page cache too
 * (POSIX_FADV_DONTNEED on the whole pages of its file range), as a job in a
 * memory cgroup does, where the cache counts against its limit. */
void lx_tensor_release(const lx_tensor *t, int evict);

/* The index file of the HF layout, parsed on its own (fuzzable).
 * weight_map entries are kept in file order. */
typedef struct lx_index {
    int has_total_size;
    uint64_t total_size;
    size_t n;
    char **tensor_names;
    char **shard_names;            /* validated: plain file names */
} lx_index;

lx_status lx_index_parse(const char *json, size_t len, const char *fname, lx_index *out);
void lx_index_free(lx_index *ix);

/* Write model.safetensors.index.json at path atomically (lx_write_file_atomic):
 * {"metadata": {"total_size": T}, "weight_map": {tensor: shard, ...}} with
 * weight_map keys sorted, two-space indented as transformers writes it. */
lx_status lx_index_write(const char *path, uint64_t total_size, size_t n,
                         const char *const *tensor_names, const char *const *shard_names);

/* True if name is a safe plain file name: non-empty, no '/', no NUL, not "."
 * or "..", no ".." component. */
int lx_is_plain_filename(const char *name);

#endif

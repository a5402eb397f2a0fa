/* safetensors.h - one safetensors file: parse and validate a header, plan and
 * write a new file.
 *
 * The parser works on bytes in memory (a mapping, or a fuzzer's buffer) and
 * never reads outside [buf, buf+size).  It applies every rejection rule of the
 * reference reader (see FORMATS.md) plus duplicate names, and reports the
 * first violation through lx_fail(LX_EINPUT, ...) with the file name, the
 * tensor name if any, and the value found.
 */
#ifndef LOXSTREAM_SAFETENSORS_H
#define LOXSTREAM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/direct.h"
#include "loxstream/dtype.h"
#include "loxstream/error.h"

#define LX_MAX_NDIM 16             /* more dimensions are rejected */
#define LX_ST_MAX_HEADER 100000000 /* the reference reader's limit on N */

typedef struct lx_st_tensor {
    char *name;                    /* UTF-8, NUL-terminated (a NUL inside is rejected) */
    lx_dtype dtype;
    int ndim;                      /* 0 for a scalar */
    uint64_t shape[LX_MAX_NDIM];
    uint64_t nelem;                /* product of shape (1 for a scalar) */
    uint64_t begin, end;           /* data_offsets, relative to the data buffer */
} lx_st_tensor;

typedef struct lx_st_header {
    uint64_t header_len;           /* N, the JSON length */
    uint64_t data_start;           /* 8 + N: file offset of the data buffer */
    size_t ntensors;
    lx_st_tensor *tensors;         /* sorted by begin (file order) */
    size_t nmeta;
    char **meta_keys, **meta_values; /* __metadata__, in file order */
} lx_st_header;

/* Parse and validate the file image buf[0..size).  On success *out owns
 * its strings; free with lx_st_header_free.  fname is used in messages only. */
lx_status lx_st_parse(const unsigned char *buf, uint64_t size, const char *fname,
                      lx_st_header *out);
/* The same from the file's first len bytes only (at least the 8 + N of the
 * header), for a file of size bytes whose data is not at hand. */
lx_status lx_st_parse_header(const unsigned char *buf, uint64_t len, uint64_t size,
                             const char *fname, lx_st_header *out);
void lx_st_header_free(lx_st_header *h);

/* Escape an untrusted name (tensor, shard) for one line of text: '\\', tab,
 * newline, CR and other control bytes become \\, \t, \n, \r, \xNN.  Like
 * snprintf, writes at most len bytes including the NUL; a cut name ends in
 * "...".  4 * strlen(name) + 1 bytes always suffice.  Returns buf. */
const char *lx_st_escape_name(const char *name, char *buf, size_t len);
/* The same, whole, in a malloc'd string (NULL when out of memory). */
char *lx_st_escape_dup(const char *name);
#define LX_NAME_QUOTE 256          /* buffer for a name in an error message */

/* ---- writing ---------------------------------------------------------- */

/* One tensor of a file to be written; offsets are filled by lx_st_layout_build. */
typedef struct lx_st_entry {
    const char *name;              /* not copied: must outlive the layout */
    lx_dtype dtype;
    int ndim;
    uint64_t shape[LX_MAX_NDIM];
    uint64_t nbytes;               /* filled: shape product x dtype size */
    uint64_t begin;                /* filled: offset relative to the data buffer */
} lx_st_entry;

typedef struct lx_st_layout {
    size_t n;
    lx_st_entry *entries;          /* borrowed from the caller, in data order */
    char *header;                  /* 8-byte length + JSON padded with spaces */
    uint64_t header_size;          /* bytes of `header`: 8 + N, a multiple of 8 */
    uint64_t file_size;            /* header_size + sum of nbytes */
} lx_st_layout;

/* Compute offsets (contiguous, in the given order) and the header: JSON with
 * "__metadata__" first (when nmeta > 0) then the tensors in the given order,
 * padded with spaces so that the data buffer starts 8-aligned.  Names must be
 * unique.  The caller owns `entries`; free the rest with lx_st_layout_free. */
lx_status lx_st_layout_build(lx_st_layout *L, lx_st_entry *entries, size_t n,
                             const char *const *meta_keys,
                             const char *const *meta_values, size_t nmeta);
void lx_st_layout_free(lx_st_layout *L);

/* An output file being filled.  Created at full size (sparse) with its header
 * written; tensor bytes are then written at their offsets in any order. */
typedef struct lx_st_out {
    int fd;
    lx_dio dio; /* its large writes' whole blocks, past the page cache (direct.h) */
    char *path;
    const lx_st_layout *layout;
} lx_st_out;

/* Create (or, with reuse != 0, open an existing file of the right size and
 * header without truncating it) the file at path. */
lx_status lx_st_out_open(lx_st_out *o, const char *path, const lx_st_layout *L, int reuse);
/* For several processes filling one file: open the file at path if it is
 * there (right size and header, else LX_EOUTPUT), else create it complete
 * (header, full size) as a temporary file in tmpdir, which must be on the
 * same file system, and link it into place, so that the name never shows a
 * half-made file and nothing is ever truncated.  Of processes racing to
 * create it, one creates it (*created = 1) and all end up writing into it. */
lx_status lx_st_out_open_shared(lx_st_out *o, const char *path, const char *tmpdir,
                                const lx_st_layout *L, int *created);
/* Write len bytes at byte offset `off` within tensor `idx` (bounds checked). */
lx_status lx_st_out_write(lx_st_out *o, size_t idx, uint64_t off, const void *buf, size_t len);
/* Start writing bytes [off, off+len) of tensor idx back to disk without
 * waiting for them (Linux sync_file_range; nothing elsewhere), so that the
 * disk works while the next bytes are computed and the final sync has
 * little left.  Bounds checked as lx_st_out_write. */
lx_status lx_st_out_writeback(lx_st_out *o, size_t idx, uint64_t off, uint64_t len);
/* Drop bytes [off, off+len) of tensor idx from the page cache: with wait,
 * write them back and wait for that first (sync_file_range; no fdatasync:
 * the file's metadata are not made durable), else they must be clean
 * already (synced).  Bounds checked as lx_st_out_write. */
lx_status lx_st_out_release(lx_st_out *o, size_t idx, uint64_t off, uint64_t len, int wait);
/* fdatasync the file. */
lx_status lx_st_out_sync(lx_st_out *o);
/* Close (no sync); returns the status of close(2). */
lx_status lx_st_out_close(lx_st_out *o);

#endif

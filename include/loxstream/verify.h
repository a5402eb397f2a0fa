/* verify.h - check an apply output directory against its own records:
 * every file against the checksum list (loxstream.xxh3), every tensor
 * against its journal record, every byte of every shard covered by a
 * record, and whether the run was completed.  Read only.
 */
#ifndef LOXSTREAM_VERIFY_H
#define LOXSTREAM_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

typedef struct lx_verify_result {
    int complete;                  /* completion marker present */
    size_t files, bad_files;       /* files checked against the list, mismatching */
    size_t tensors, done;          /* tensors the run writes, with a record */
    size_t bad_tensors;            /* records whose bytes do not match */
    uint64_t bytes;                /* bytes read */
    size_t journal_lines;          /* journal lines ignored (damaged, forged, torn) */
} lx_verify_result;

/* Called once per problem found, e.g. "model-00001-of-00002.safetensors:
 * tensor 'lm_head.weight' (bytes 4096..8192): XXH3 1f.., the journal
 * records 2e..", and once per journal line that gives no record, naming
 * the journal and the line, torn (an unfinished last line) or damaged or
 * forged (a complete one): such a line is ignored (journal.h), so it does
 * not by itself fail the verification.  ctx is passed through. */
typedef void (*lx_verify_report)(void *ctx, const char *problem);

/* LX_OK only for a complete and intact output; LX_EVERIFY (with a summary
 * message) for an incomplete, damaged or foreign one; LX_EFAIL when out of
 * memory.  The files are read once each, sequentially. */
lx_status lx_verify_output(const char *dir, lx_verify_report report, void *ctx,
                           lx_verify_result *res);

#endif

/* journal.h - the durable state of an apply run inside its output directory,
 * which makes a run resumable after a crash and its result verifiable.
 *
 *   OUTDIR/.loxstream/identity     what the output is a function of: the
 *                                  options that change its bytes, the
 *                                  loxstream version, each input shard's
 *                                  size and header XXH3; plus (not compared)
 *                                  the files the run writes
 *   OUTDIR/.loxstream/journal.part-IIII-of-NNNN
 *                                  one per part of the run (apply --part
 *                                  I/N; 0001-of-0001 without --part): a
 *                                  header line, then one record per
 *                                  finished tensor, appended only after the
 *                                  tensor's bytes are durable
 *   OUTDIR/.loxstream/lock         the output lock: flock(2)ed exclusively
 *                                  by a run without --part, shared by each
 *                                  part while it runs
 *   OUTDIR/.loxstream/lock.part-IIII-of-NNNN
 *                                  a part's own lock, exclusive: one process
 *                                  per part
 *   OUTDIR/.loxstream/complete.lock
 *                                  the completion lock, exclusive and waited
 *                                  for: held while a process prepares the
 *                                  output (identity, marker, journals) and
 *                                  while it completes it
 *   OUTDIR/loxstream.xxh3          the checksum list, in the BSD-tag form
 *                                  that `xxhsum -c` reads: XXH3 (FILE) = HEX
 *   OUTDIR/.loxstream/complete     the completion marker, written last
 *
 * Every line of a journal ends with the XXH3-64 (16 hex digits) of the bytes
 * before it on that line, so a record torn by a crash, or damaged later, is
 * recognised and ignored.  Parts never share a mutable file: several
 * processes can fill disjoint sets of tensors of one output, each with its
 * own journal, and the step that completes the output reads them all.
 * Checksums are XXH3-64 printed as xxhsum prints them (big-endian hex).
 *
 * Parts (apply.c): all parts hold the same identity (the part number is not
 * in it) and share the NAME.partial shards, which a part creates complete
 * and links into place if absent (lx_st_out_open_shared), never truncating
 * one.  Locks are taken in the order part lock, completion lock, output
 * lock, all but the completion lock without waiting (refused: exit status
 * 5).  A part that has made its tensors durable takes the completion lock,
 * then tries to turn its shared output lock into an exclusive one: only if
 * that succeeds (no other process is past its preparation) and the records
 * of all journals of the identity cover every tensor does it complete the
 * output; else it reports the parts still missing and leaves the completion
 * to the last part to finish.  As preparation happens under the completion
 * lock too, a part never starts while another completes, and an output is
 * never completed while another part can still write into it.  Without
 * --part a run takes the output lock exclusively and keeps every part's
 * records that check out, as its own.
 */
#ifndef LOXSTREAM_JOURNAL_H
#define LOXSTREAM_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

#define LX_STATE_DIR ".loxstream"
#define LX_IDENTITY_PATH ".loxstream/identity"
#define LX_COMPLETE_PATH ".loxstream/complete"
#define LX_LOCK_PATH ".loxstream/lock"
#define LX_COMPLETE_LOCK_PATH ".loxstream/complete.lock"
#define LX_PART_LOCK_PREFIX "lock.part-"    /* + "IIII-of-NNNN", in .loxstream */
#define LX_JOURNAL_PREFIX "journal.part-"   /* + "IIII-of-NNNN", in .loxstream */
#define LX_LIST_NAME "loxstream.xxh3"
#define LX_PARTIAL_SUFFIX ".partial"

/* Inverse of lx_st_escape_name on s[0..len): malloc'd, NULL if s is not
 * such an escaped name (or out of memory). */
char *lx_unescape_name(const char *s, size_t len);

/* ---- identity ----------------------------------------------------------- */

/* Ordered "key<TAB>value" lines.  Keys and values are single lines without
 * tabs (escape names with lx_st_escape_name).  Keys "option NAME",
 * "version" and "input ROLE/SHARD" are compared when a run resumes; keys
 * starting with "output " describe the files the run writes and are not. */
typedef struct lx_identity {
    size_t n, cap;
    char **keys, **values;
} lx_identity;

void lx_identity_init(lx_identity *id);
void lx_identity_free(lx_identity *id);
lx_status lx_identity_add(lx_identity *id, const char *key, const char *value);
/* NULL if the key is absent. */
const char *lx_identity_get(const lx_identity *id, const char *key);
/* XXH3-64 of the compared entries: what each journal's header names. */
uint64_t lx_identity_hash(const lx_identity *id);
/* Write OUTDIR/.loxstream/identity atomically. */
lx_status lx_identity_write(const lx_identity *id, const char *outdir);
/* Read it; *exists = 0 (and LX_OK) if there is none.  A malformed file is
 * LX_EOUTPUT naming it. */
lx_status lx_identity_read(const char *outdir, lx_identity *id, int *exists);
/* LX_OK if the compared entries agree, else LX_EOUTPUT with a message that
 * lists what differs ("option rank: journal 6, now 8; input aligned/X:
 * header checksum changed"), prefixed with `context`. */
lx_status lx_identity_compare(const lx_identity *journal, const lx_identity *now,
                              const char *context);

/* ---- journal ------------------------------------------------------------ */

typedef struct lx_journal_record {
    char *tensor, *shard;          /* unescaped */
    uint64_t offset, length;       /* absolute byte range in the shard file; a
                                    * loaded one ends at or before INT64_MAX */
    uint64_t out_xxh3;             /* of those output bytes */
    uint64_t aligned_xxh3;         /* of the aligned input tensor's bytes */
    int has_base;                  /* 0 for a copied tensor */
    uint64_t base_xxh3;            /* of the base input tensor's bytes */
} lx_journal_record;

typedef struct lx_journal {
    int fd;                        /* open for appending, or -1 */
    char *path;
    size_t n, cap;
    lx_journal_record *records;    /* valid records as loaded, in file order */
    size_t damaged;                /* complete lines that failed their checksum */
    int torn;                      /* an unfinished last line was found */
    int foreign;                   /* header missing or of another identity */
} lx_journal;

/* "journal.part-0001-of-0001" into buf (at least 32 bytes). */
const char *lx_journal_name(unsigned part, unsigned nparts, char *buf, size_t len);

/* Read the journal at path for the identity hash: a missing file gives no
 * records; a header of another identity sets foreign and gives none. */
lx_status lx_journal_load(lx_journal *j, const char *path, uint64_t identity);
/* Load, then open for appending: a torn last line is cut off, a foreign or
 * headerless file is started afresh; a new file gets its header and is
 * made durable (file and directory). */
lx_status lx_journal_open(lx_journal *j, const char *path, unsigned part, unsigned nparts,
                          uint64_t identity);
/* Append one record and fdatasync.  The caller has made the tensor's bytes
 * durable first. */
lx_status lx_journal_append(lx_journal *j, const lx_journal_record *r);
void lx_journal_close(lx_journal *j);

/* ---- checksum list and completion marker ------------------------------ */

typedef struct lx_listed_file {
    char *name;                    /* plain file name in OUTDIR */
    uint64_t xxh3;
} lx_listed_file;

/* Write OUTDIR/loxstream.xxh3 atomically; *list_xxh3 = XXH3 of its bytes.
 * Names with a line break cannot be listed (LX_EFAIL). */
lx_status lx_list_write(const char *outdir, const lx_listed_file *files, size_t n,
                        uint64_t *list_xxh3);
/* Parse it (the lines lx_list_write writes); LX_EVERIFY naming the line on
 * a malformed one, LX_EFAIL if unreadable. */
lx_status lx_list_read(const char *outdir, lx_listed_file **files, size_t *n,
                       uint64_t *list_xxh3);
void lx_list_free(lx_listed_file *files, size_t n);

/* OUTDIR/.loxstream/complete: identity hash and checksum-list hash. */
lx_status lx_marker_write(const char *outdir, uint64_t identity, uint64_t list_xxh3);
/* *exists = 0 if absent; LX_EVERIFY if malformed. */
lx_status lx_marker_read(const char *outdir, int *exists, uint64_t *identity,
                         uint64_t *list_xxh3);

#endif

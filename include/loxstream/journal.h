/* journal.h - the durable state of an apply run inside its output directory,
 * which makes a run resumable after a crash and its result verifiable.
 * This module owns these formats: the file names, the scan of the state
 * directory, the identity and its entries, the journals and the rule that
 * picks each tensor's record, the locks, the checksum list and the marker
 * (journal.c, journal_identity.c, journal_state.c); apply and verify call
 * it and never parse these files themselves.
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
 * In OUTDIR/.loxstream, one rule (lx_state_classify): a name ending in
 * ".tmp" is a temporary file, whatever it starts with (a journal's, the
 * identity's, a shard being created by a part: "shard-*.tmp"), never a
 * journal; a journal is a name starting with "journal.part-" otherwise.
 *
 * Records: over the journals in order (apply: the other journals in name
 * order, then its own; verify: all in name order), the last record of a
 * tensor wins, and a record naming a tensor the run does not write is
 * ignored (lx_journal_latest).
 *
 * Parts (apply): all parts hold the same identity (the part number is not
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

/* The entries that say what a run reads and writes (key and value formats
 * of this module): "input ROLE/SHARD" (role "base" or "aligned", the
 * shard's size and header XXH3) and "output NAME" (a shard with its size
 * and tensor count, the index, a side file).  A name with a line break
 * cannot be an output (it goes on a line of the checksum list): LX_EINPUT. */
lx_status lx_identity_add_input(lx_identity *id, const char *role, const char *shard,
                                uint64_t size, uint64_t header_xxh3);
/* header_xxh3: of the shard's header bytes as the run writes them (8-byte
 * length and JSON), which fix every tensor's name, dtype, shape and offsets */
lx_status lx_identity_add_output_shard(lx_identity *id, const char *name, uint64_t size,
                                       size_t ntensors, uint64_t header_xxh3);
/* kind: "index" or "side" */
lx_status lx_identity_add_output(lx_identity *id, const char *name, const char *kind);

typedef struct lx_identity_output {
    const char *key;               /* the entry's key, as in the file */
    char *name;                    /* unescaped; NULL for a malformed entry */
    int shard;                     /* a shard: size and tensors set */
    uint64_t size;
    size_t tensors;
    int has_header;                /* header_xxh3 set (identities of older versions lack it) */
    uint64_t header_xxh3;          /* of the header the run writes */
} lx_identity_output;

/* The "output" entries, in file order. */
lx_status lx_identity_outputs(const lx_identity *id, lx_identity_output **out, size_t *n);
void lx_identity_outputs_free(lx_identity_output *out, size_t n);

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

/* A complete line of a journal that gives no record. */
typedef enum lx_bad_line_kind {
    LX_LINE_CHECKSUM,              /* its checksum does not match its bytes: damaged */
    LX_LINE_INVALID                /* its checksum matches but it is no valid record:
                                    * forged, or written by another program */
} lx_bad_line_kind;

typedef struct lx_bad_line {
    size_t line;                   /* 1-based line number */
    lx_bad_line_kind kind;
} lx_bad_line;
#define LX_BAD_LINES_KEPT 1000     /* the first ones kept in lx_journal.bad */

typedef struct lx_journal {
    int fd;                        /* open for appending, or -1 */
    char *path;
    size_t n, cap;
    lx_journal_record *records;    /* valid records as loaded, in file order */
    size_t damaged;                /* complete lines that give no record */
    lx_bad_line *bad;              /* the first LX_BAD_LINES_KEPT of them, in order */
    size_t nbad;
    int torn;                      /* an unfinished last line was found */
    size_t torn_line;              /* its line number (when torn) */
    int foreign;                   /* header missing or of another identity */
} lx_journal;

/* "journal.part-0001-of-0001" into buf (at least 32 bytes). */
const char *lx_journal_name(unsigned part, unsigned nparts, char *buf, size_t len);
/* OUTDIR/.loxstream/journal.part-IIII-of-NNNN, malloc'd (NULL: out of memory). */
char *lx_journal_path(const char *outdir, unsigned part, unsigned nparts);

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

/* Load every journal of OUTDIR/.loxstream but the one at path skip (NULL:
 * all), sorted by name; those of another identity give no records (foreign
 * set).  A state directory that cannot be listed is LX_EFAIL, or, with
 * unlisted not NULL, LX_OK with no journals and *unlisted = the errno. */
lx_status lx_journal_load_all(const char *outdir, uint64_t identity, const char *skip,
                              lx_journal **js, size_t *n, int *unlisted);
void lx_journals_free(lx_journal *js, size_t n);
/* 1 if OUTDIR/.loxstream holds the journal of a part of a split into
 * another number of parts than nparts (N > 1 in journal.part-IIII-of-NNNN;
 * a whole run's journal, 0001-of-0001, does not count); its name into
 * found. */
int lx_journal_other_split(const char *outdir, unsigned nparts, char *found, size_t len);

/* The index in the run's tensors of the tensor named, or -1 if the run does
 * not write it. */
typedef long (*lx_tensor_index)(void *ctx, const char *tensor);

/* The one rule for records: over js[0..nj) in order, then `last` (NULL:
 * none), the last record of each tensor wins; a record whose tensor the run
 * does not write is ignored.  latest[0..ntensors) gets each tensor's record
 * or NULL; returns the number of tensors with one. */
size_t lx_journal_latest(const lx_journal *js, size_t nj, const lx_journal *last,
                         lx_tensor_index index, void *ctx, const lx_journal_record **latest,
                         size_t ntensors);

/* ---- the state directory -------------------------------------------------- */

typedef enum lx_state_kind {
    LX_STATE_OTHER,                /* identity, marker, anything else */
    LX_STATE_JOURNAL,              /* journal.part-* */
    LX_STATE_LOCK,                 /* lock, complete.lock, lock.part-* */
    LX_STATE_TEMP,                 /* *.tmp */
    LX_STATE_SHARD_TEMP            /* shard-*.tmp: a shard a part was creating */
} lx_state_kind;

/* What a name in OUTDIR/.loxstream is, by the one rule above. */
lx_state_kind lx_state_classify(const char *name);
/* 1 if OUTDIR/.loxstream exists and holds only locks and temporary files:
 * loxstream's leftovers of a run stopped before its identity was written. */
int lx_state_is_bare(const char *outdir);
/* Unlink, in OUTDIR/.loxstream, every name of one of the kinds (a mask of
 * 1 << lx_state_kind). */
lx_status lx_state_remove(const char *outdir, unsigned kinds);

/* ---- the locks ------------------------------------------------------------ */

/* The locks above, flock(2)s that the kernel releases when the process
 * ends, however it ends (descriptors, -1 when not held). */
typedef struct lx_locks {
    int lock_fd;                   /* the output lock */
    int complete_fd;               /* the completion lock */
    int part_lock_fd;              /* the part's own lock (--part only) */
} lx_locks;

void lx_locks_init(lx_locks *l);
/* Take them in the order above: the part's own lock (nparts > 1), the
 * completion lock (waited for), the output lock (exclusive without --part,
 * shared by parts); OUTDIR/.loxstream is created first.  Refused:
 * LX_EOUTPUT naming the lock held by another process. */
lx_status lx_locks_take(lx_locks *l, const char *outdir, unsigned part, unsigned nparts);
/* Let the completion lock go (at the end of the preparation) and wait for it
 * again (before completing). */
void lx_locks_release_completion(lx_locks *l);
lx_status lx_locks_wait_completion(lx_locks *l, const char *outdir);
/* Turn the shared output lock into an exclusive one, without waiting: 1 if
 * no other process writes the output.  (On Linux a refused conversion drops
 * the shared lock.) */
int lx_locks_alone(lx_locks *l);
void lx_locks_close(lx_locks *l);

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

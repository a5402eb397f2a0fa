/* hfcache.h - model IDs ("meta-llama/Llama-2-7b-hf") resolved in the local
 * Hugging Face cache, without network (src/io/hfcache.c).
 *
 * The layout huggingface_hub writes (and every tool that shares its cache):
 *
 *   CACHE/models--ORG--NAME/refs/REV          one line: the commit of ref REV
 *   CACHE/models--ORG--NAME/snapshots/COMMIT/ the files of that commit, as
 *                                             links to ../../blobs/HASH
 *
 * CACHE is $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
 * A revision is a ref (refs/REV: "main", a branch, a tag, "refs/pr/1") or a
 * commit (snapshots/REV), looked up in that order, as huggingface_hub does.
 * loxstream never downloads: a model that is not there is an error that
 * names the directory looked in and the command that would fetch it.
 */
#ifndef LOXSTREAM_HFCACHE_H
#define LOXSTREAM_HFCACHE_H

#include "loxstream/error.h"

#define LX_HF_DEFAULT_REVISION "main"

/* A model found in the cache; every string malloc'd. */
typedef struct lx_hf_model {
    char *id;                      /* "ORG/NAME" or "NAME", as given */
    char *revision;                /* as asked ("main" by default) */
    char *commit;                  /* the snapshot's directory name */
    char *path;                    /* CACHE/models--ORG--NAME/snapshots/COMMIT */
} lx_hf_model;

/* True if s is a model ID: NAME or ORG/NAME, each 1-96 characters of
 * [A-Za-z0-9._-], not starting or ending with '.' or '-', without "--" or
 * ".." (the Hub's rules). */
int lx_hf_is_model_id(const char *s);

/* The cache directory from the environment (malloc'd; NULL on OOM or when
 * neither HF_HUB_CACHE, HF_HOME nor HOME is set). */
char *lx_hf_cache_dir(void);

/* Resolve id at revision (NULL: "main") in cache.  A model, ref or
 * snapshot that is missing is LX_EINPUT, with the path looked at and the
 * huggingface-cli command that would fetch it; a revision that is not a
 * plain ref ("..", leading '/') is LX_EUSAGE.  On failure *out is zeroed. */
lx_status lx_hf_resolve(const char *cache, const char *id, const char *revision,
                        lx_hf_model *out);
void lx_hf_model_free(lx_hf_model *m);

#endif

/* journal_identity.c - the identity file of an output directory (see
 * journal.h): its entries, their hash, its reading, writing and comparison,
 * and the meaning of its "input" and "output" entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "loxstream/xxh.h"

#include "loxstream/fs.h"
#include "loxstream/journal.h"
#include "loxstream/parse.h"
#include "loxstream/safetensors.h"
#include "loxstream/testhook.h"
#include "journal_int.h"

/* ---- identity ------------------------------------------------------------ */

void lx_identity_init(lx_identity *id)
{
    memset(id, 0, sizeof *id);
}

void lx_identity_free(lx_identity *id)
{
    for (size_t i = 0; i < id->n; i++) {
        free(id->keys[i]);
        free(id->values[i]);
    }
    free(id->keys);
    free(id->values);
    memset(id, 0, sizeof *id);
}

lx_status lx_identity_add(lx_identity *id, const char *key, const char *value)
{
    if (!*key || strpbrk(key, "\t\n\r") || strpbrk(value, "\t\n\r"))
        return lx_fail(LX_EFAIL, "identity entry '%s' holds a tab or a line break", key);
    if (id->n == id->cap) {
        size_t cap = id->cap ? 2 * id->cap : 32;
        char **k = realloc(id->keys, cap * sizeof *k);
        if (!k)
            return lx_fail(LX_EFAIL, "out of memory");
        id->keys = k;
        char **v = realloc(id->values, cap * sizeof *v);
        if (!v)
            return lx_fail(LX_EFAIL, "out of memory");
        id->values = v;
        id->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return lx_fail(LX_EFAIL, "out of memory");
    }
    id->keys[id->n] = k;
    id->values[id->n++] = v;
    return LX_OK;
}

const char *lx_identity_get(const lx_identity *id, const char *key)
{
    for (size_t i = 0; i < id->n; i++)
        if (!strcmp(id->keys[i], key))
            return id->values[i];
    return NULL;
}

static int compared_key(const char *key)
{
    return strncmp(key, "output ", 7) != 0;
}

static int cmp_entry(const void *a, const void *b, void *ctx)
{
    const lx_identity *id = ctx;
    return strcmp(id->keys[*(const size_t *)a], id->keys[*(const size_t *)b]);
}

uint64_t lx_identity_hash(const lx_identity *id)
{
    /* in key order, so that the hash does not depend on the order of lines */
    size_t *order = malloc((id->n ? id->n : 1) * sizeof *order);
    XXH3_state_t *s = XXH3_createState();
    uint64_t h = 0;
    if (order && s) {
        for (size_t i = 0; i < id->n; i++)
            order[i] = i;
        qsort_r(order, id->n, sizeof *order, cmp_entry, (void *)id);
        XXH3_64bits_reset(s);
        for (size_t i = 0; i < id->n; i++) {
            size_t e = order[i];
            if (!compared_key(id->keys[e]))
                continue;
            XXH3_64bits_update(s, id->keys[e], strlen(id->keys[e]));
            XXH3_64bits_update(s, "\t", 1);
            XXH3_64bits_update(s, id->values[e], strlen(id->values[e]));
            XXH3_64bits_update(s, "\n", 1);
        }
        h = XXH3_64bits_digest(s);
    }
    free(order);
    XXH3_freeState(s);
    return h;
}

lx_status lx_identity_write(const lx_identity *id, const char *outdir)
{
    text t = {0};
    lx_jr_text_puts(&t, IDENTITY_MAGIC "\n");
    for (size_t i = 0; i < id->n; i++) {
        lx_jr_text_puts(&t, id->keys[i]);
        lx_jr_text_puts(&t, "\t");
        lx_jr_text_puts(&t, id->values[i]);
        lx_jr_text_puts(&t, "\n");
    }
    lx_status st = t.oom ? lx_fail(LX_EFAIL, "out of memory")
                         : lx_jr_write_state_file(outdir, LX_IDENTITY_PATH, t.s, t.len);
    free(t.s);
    return st;
}

lx_status lx_identity_read(const char *outdir, lx_identity *id, int *exists)
{
    lx_identity_init(id);
    char *path = lx_path_join(outdir, LX_IDENTITY_PATH), *buf = NULL;
    size_t len;
    if (!path)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = lx_jr_read_text(path, &buf, &len, exists);
    if (st == LX_OK && *exists) {
        char *line = buf, *nl;
        size_t lineno = 0;
        while (st == LX_OK && *line && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            lineno++;
            char *tab = strchr(line, '\t');
            if (lineno == 1) {
                if (strcmp(line, IDENTITY_MAGIC))
                    st = lx_fail(LX_EOUTPUT, "%s: not a loxstream identity file (first line)", path);
            } else if (!tab || strchr(tab + 1, '\t')) {
                st = lx_fail(LX_EOUTPUT, "%s: line %zu is malformed", path, lineno);
            } else {
                *tab = '\0';
                st = lx_identity_add(id, line, tab + 1);
            }
            line = nl + 1;
        }
        if (st == LX_OK && (*line || lineno == 0))
            st = lx_fail(LX_EOUTPUT, "%s: truncated (no line break at the end)", path);
    }
    free(buf);
    free(path);
    if (st != LX_OK)
        lx_identity_free(id);
    return st;
}

/* "size N header H" -> N and H as strings (for the message). */
static void split_input(const char *v, uint64_t *size, char *header, size_t hlen)
{
    *size = 0;
    header[0] = '\0';
    char h[64];
    if (sscanf(v, "size %" SCNu64 " header %63s", size, h) == 2)
        snprintf(header, hlen, "%s", h);
}

static void describe_difference(text *t, const char *key, const char *was, const char *now)
{
    if (t->len)
        lx_jr_text_puts(t, "; ");
    char line[1024];
    if (!strncmp(key, "input ", 6)) {
        uint64_t s0, s1;
        char h0[64], h1[64];
        if (!was)
            snprintf(line, sizeof line, "%s: a new input shard, not in the journal", key);
        else if (!now)
            snprintf(line, sizeof line, "%s: in the journal, no longer among the inputs", key);
        else {
            split_input(was, &s0, h0, sizeof h0);
            split_input(now, &s1, h1, sizeof h1);
            if (s0 != s1)
                snprintf(line, sizeof line, "%s: size changed (journal %" PRIu64 " bytes, now %"
                         PRIu64 ")", key, s0, s1);
            else
                snprintf(line, sizeof line, "%s: header checksum changed", key);
        }
    } else {
        const char *name = !strncmp(key, "option ", 7) ? key + 7 : key;
        snprintf(line, sizeof line, "%s: journal %s, now %s", name, was ? was : "(none)",
                 now ? now : "(none)");
    }
    lx_jr_text_puts(t, line);
}

#define MAX_DIFFERENCES 8 /* named in the message; the others are counted */

lx_status lx_identity_compare(const lx_identity *journal, const lx_identity *now,
                              const char *context)
{
    text t = {0};
    size_t n = 0;
    for (size_t i = 0; i < journal->n; i++) {
        const char *k = journal->keys[i];
        if (!compared_key(k))
            continue;
        const char *v = lx_identity_get(now, k);
        if ((!v || strcmp(v, journal->values[i])) && n++ < MAX_DIFFERENCES)
            describe_difference(&t, k, journal->values[i], v);
    }
    for (size_t i = 0; i < now->n; i++) {
        const char *k = now->keys[i];
        if (compared_key(k) && !lx_identity_get(journal, k) && n++ < MAX_DIFFERENCES)
            describe_difference(&t, k, NULL, now->values[i]);
    }
    if (n > MAX_DIFFERENCES) {
        char more[64];
        snprintf(more, sizeof more, "; and %zu more differences", n - MAX_DIFFERENCES);
        lx_jr_text_puts(&t, more);
    }
    lx_status st = LX_OK;
    if (t.oom)
        st = lx_fail(LX_EFAIL, "out of memory");
    else if (t.len)
        st = lx_fail(LX_EOUTPUT, "%s: %s", context, t.s);
    free(t.s);
    return st;
}


/* ---- what a run reads and writes ----------------------------------------- */

#define INPUT_PREFIX "input "
#define OUTPUT_PREFIX "output "
#define SHARD_VALUE "shard size %" PRIu64 " tensors %zu header %s"

/* prefix + the escaped name as the key */
static lx_status add_named(lx_identity *id, const char *prefix, const char *name, const char *value)
{
    /* an output's name goes on a line of loxstream.xxh3: refuse it before any work */
    if (!strcmp(prefix, OUTPUT_PREFIX) && strpbrk(name, "\n\r")) {
        char q[LX_NAME_QUOTE];
        return lx_fail(LX_EINPUT, "file name '%s' holds a line break, which the checksum list "
                       "%s cannot hold", lx_st_escape_name(name, q, sizeof q), LX_LIST_NAME);
    }
    size_t cap = strlen(prefix) + 4 * strlen(name) + 1;
    char *key = malloc(cap);
    if (!key)
        return lx_fail(LX_EFAIL, "out of memory");
    size_t pl = strlen(prefix);
    memcpy(key, prefix, pl);
    lx_st_escape_name(name, key + pl, cap - pl);
    lx_status st = lx_identity_add(id, key, value);
    free(key);
    return st;
}

lx_status lx_identity_add_input(lx_identity *id, const char *role, const char *shard,
                                uint64_t size, uint64_t header_xxh3)
{
    char prefix[64], v[128], hex[LX_HEX64];
    snprintf(prefix, sizeof prefix, INPUT_PREFIX "%s/", role);
    snprintf(v, sizeof v, "size %" PRIu64 " header %s", size, lx_hex64(header_xxh3, hex));
    return add_named(id, prefix, shard, v);
}

lx_status lx_identity_add_output_shard(lx_identity *id, const char *name, uint64_t size,
                                       size_t ntensors, uint64_t header_xxh3)
{
    char v[128], hex[LX_HEX64];
    snprintf(v, sizeof v, SHARD_VALUE, size, ntensors, lx_hex64(header_xxh3, hex));
    return add_named(id, OUTPUT_PREFIX, name, v);
}

lx_status lx_identity_add_output(lx_identity *id, const char *name, const char *kind)
{
    return add_named(id, OUTPUT_PREFIX, name, kind);
}

lx_status lx_identity_outputs(const lx_identity *id, lx_identity_output **out, size_t *n)
{
    *n = 0;
    if (!(*out = calloc(id->n ? id->n : 1, sizeof **out)))
        return lx_fail(LX_EFAIL, "out of memory");
    size_t pl = strlen(OUTPUT_PREFIX);
    for (size_t i = 0; i < id->n; i++) {
        const char *k = id->keys[i];
        if (strncmp(k, OUTPUT_PREFIX, pl))
            continue;
        lx_identity_output *f = &(*out)[(*n)++];
        f->key = k;
        f->name = lx_unescape_name(k + pl, strlen(k + pl));
        uint64_t tensors;
        int end = 0;
        const char *v = id->values[i];
        if (sscanf(v, "shard size %" SCNu64 " tensors %" SCNu64 "%n", &f->size, &tensors,
                   &end) == 2) {
            f->shard = 1;
            f->tensors = (size_t)tensors;
            /* " header HEX": an identity written before it was added has none */
            size_t rest = strlen(v + end);
            f->has_header = rest == 8 + 16 && !strncmp(v + end, " header ", 8) &&
                            lx_parse_hex64(v + end + 8, 16, &f->header_xxh3) == 0;
        }
    }
    return LX_OK;
}

void lx_identity_outputs_free(lx_identity_output *out, size_t n)
{
    for (size_t i = 0; i < n && out; i++)
        free(out[i].name);
    free(out);
}

/* index.c - model.safetensors.index.json, the map from tensor to shard of
 * the Hugging Face sharded layout: parse (untrusted) and write.
 *
 * The shard names come from the input: only plain file names are accepted,
 * so that no entry can make us open a file outside the checkpoint directory.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "loxstream/checkpoint.h"
#include "loxstream/fs.h"

int lx_is_plain_filename(const char *name)
{
    if (!name || !*name)
        return 0;
    if (strchr(name, '/'))
        return 0;
    /* without '/' the name is its only component */
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* total_size: a non-negative integer.  An integral real (13476839424.0) is
 * taken too: some writers emit one and transformers ignores the field. */
static int get_total_size(const json_t *v, uint64_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d < 18446744073709551616.0 && d == floor(d)) {
            *out = (uint64_t)d;
            return 1;
        }
    }
    return 0;
}

static lx_status parse_weight_map(const json_t *map, const char *fname, lx_index *ix)
{
    char q[LX_NAME_QUOTE], q2[LX_NAME_QUOTE];
    size_t n = json_object_size(map);
    ix->tensor_names = calloc(n ? n : 1, sizeof *ix->tensor_names);
    ix->shard_names = calloc(n ? n : 1, sizeof *ix->shard_names);
    if (!ix->tensor_names || !ix->shard_names)
        return lx_fail(LX_EFAIL, "out of memory");
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)map, key, klen, v) {
        lx_st_escape_name(key, q, sizeof q);
        if (strlen(key) != klen)
            return lx_fail(LX_EINPUT, "%s: weight_map: tensor '%s': name contains a NUL byte",
                           fname, q);
        if (!json_is_string(v)) {
            char *found = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            lx_st_escape_name(found ? found : "?", q2, sizeof q2);
            free(found);
            return lx_fail(LX_EINPUT, "%s: weight_map: tensor '%s': shard is %s, expected a string",
                           fname, q, q2);
        }
        const char *shard = json_string_value(v);
        lx_st_escape_name(shard, q2, sizeof q2);
        if (strlen(shard) != json_string_length(v))
            return lx_fail(LX_EINPUT,
                           "%s: weight_map: tensor '%s': shard name '%s' contains a NUL byte",
                           fname, q, q2);
        if (!lx_is_plain_filename(shard))
            return lx_fail(LX_EINPUT,
                           "%s: weight_map: tensor '%s': shard name '%s' is not a plain file name "
                           "(no '/', not '.' or '..')",
                           fname, q, q2);
        ix->tensor_names[ix->n] = strdup(key);
        ix->shard_names[ix->n] = strdup(shard);
        ix->n++;
        if (!ix->tensor_names[ix->n - 1] || !ix->shard_names[ix->n - 1])
            return lx_fail(LX_EFAIL, "out of memory");
    }
    return LX_OK;
}

lx_status lx_index_parse(const char *json, size_t len, const char *fname, lx_index *out)
{
    memset(out, 0, sizeof *out);
    json_error_t err;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
                              &err);
    if (!root) {
        char et[sizeof err.text * 4];
        lx_st_escape_name(err.text, et, sizeof et);
        if (json_error_code(&err) == json_error_duplicate_key)
            return lx_fail(LX_EINPUT, "%s: duplicate name (a tensor listed twice?): %s, at byte %d",
                           fname, et, err.position);
        return lx_fail(LX_EINPUT, "%s: not valid JSON: %s (line %d, column %d)", fname, et,
                       err.line, err.column);
    }
    lx_status st = LX_OK;
    const json_t *meta, *map, *total;
    if (!json_is_object(root)) {
        st = lx_fail(LX_EINPUT, "%s: expected a JSON object", fname);
    } else if (!(map = json_object_get(root, "weight_map"))) {
        st = lx_fail(LX_EINPUT, "%s: no \"weight_map\"", fname);
    } else if (!json_is_object(map)) {
        st = lx_fail(LX_EINPUT, "%s: weight_map is not an object", fname);
    } else if ((meta = json_object_get(root, "metadata")) && !json_is_object(meta)) {
        st = lx_fail(LX_EINPUT, "%s: metadata is not an object", fname);
    } else {
        if (meta && (total = json_object_get(meta, "total_size"))) {
            if (!get_total_size(total, &out->total_size)) {
                char *found = json_dumps(total, JSON_ENCODE_ANY | JSON_COMPACT);
                char q[LX_NAME_QUOTE];
                st = lx_fail(LX_EINPUT,
                             "%s: metadata.total_size is %s, expected a non-negative integer",
                             fname, lx_st_escape_name(found ? found : "?", q, sizeof q));
                free(found);
            }
            out->has_total_size = 1;
        }
        if (st == LX_OK)
            st = parse_weight_map(map, fname, out);
    }
    json_decref(root);
    if (st != LX_OK)
        lx_index_free(out);
    return st;
}

void lx_index_free(lx_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->tensor_names[i]);
        free(ix->shard_names[i]);
    }
    free(ix->tensor_names);
    free(ix->shard_names);
    memset(ix, 0, sizeof *ix);
}

lx_status lx_index_write(const char *path, uint64_t total_size, size_t n,
                         const char *const *tensor_names, const char *const *shard_names)
{
    if (total_size > (uint64_t)LLONG_MAX)
        return lx_fail(LX_EFAIL, "%s: total_size %" PRIu64 " is too large for JSON", path,
                       total_size);
    lx_status st = LX_OK;
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    if (!root || !meta || !map || json_object_set(root, "metadata", meta) != 0 ||
        json_object_set(root, "weight_map", map) != 0 ||
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total_size)) != 0) {
        st = lx_fail(LX_EFAIL, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char q[LX_NAME_QUOTE];
        if (json_object_get(map, tensor_names[i])) {
            st = lx_fail(LX_EFAIL, "%s: tensor '%s' listed twice", path,
                         lx_st_escape_name(tensor_names[i], q, sizeof q));
            goto out;
        }
        json_t *s = json_string(shard_names[i]);
        if (!s || json_object_set_new(map, tensor_names[i], s) != 0) {
            st = lx_fail(LX_EFAIL, "%s: tensor '%s': cannot encode (not UTF-8?)", path,
                         lx_st_escape_name(tensor_names[i], q, sizeof q));
            goto out;
        }
    }
    /* as transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n" */
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    if (!text) {
        st = lx_fail(LX_EFAIL, "%s: out of memory", path);
        goto out;
    }
    size_t len = strlen(text);
    char *buf = realloc(text, len + 2);
    if (!buf) {
        free(text);
        st = lx_fail(LX_EFAIL, "%s: out of memory", path);
        goto out;
    }
    buf[len] = '\n';
    buf[len + 1] = '\0';
    st = lx_write_file_atomic(path, buf, len + 1);
    free(buf);
out:
    json_decref(meta);
    json_decref(map);
    json_decref(root);
    return st;
}

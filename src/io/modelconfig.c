/* modelconfig.c - the architecture fields of two config.json files
 * compared (see modelconfig.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/fs.h"
#include "loxstream/modelconfig.h"

static const char *const fields[] = {
    "model_type", "architectures", "hidden_size", "num_hidden_layers", "vocab_size",
    "intermediate_size", "num_attention_heads", "num_key_value_heads",
};

static json_t *load(const char *dir)
{
    char *p = lx_path_join(dir, "config.json");
    json_t *j = p ? json_load_file(p, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free(p);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* v as compact JSON ("absent" when NULL), cut to fit out. */
static void show(const json_t *v, char *out, size_t len)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    snprintf(out, len, "%s", v ? (s ? s : "?") : "absent");
    free(s);
}

size_t lx_config_differences(const char *dir_a, const char *name_a, const char *dir_b,
                             const char *name_b, char *buf, size_t len)
{
    buf[0] = '\0';
    json_t *a = dir_a ? load(dir_a) : NULL, *b = dir_b ? load(dir_b) : NULL;
    size_t n = 0, at = 0;
    for (size_t i = 0; a && b && i < sizeof fields / sizeof *fields; i++) {
        json_t *va = json_object_get(a, fields[i]), *vb = json_object_get(b, fields[i]);
        if ((!va && !vb) || (va && vb && json_equal(va, vb)))
            continue;
        char sa[96], sb[96];
        show(va, sa, sizeof sa);
        show(vb, sb, sizeof sb);
        if (at < len) {
            int w = snprintf(buf + at, len - at, "%s%s %s in %s, %s in %s", n ? "; " : "",
                             fields[i], sa, name_a, sb, name_b);
            at += w > 0 ? (size_t)w : 0;
        }
        n++;
    }
    json_decref(a);
    json_decref(b);
    return n;
}

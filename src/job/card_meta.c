/* card_meta.c - the aligned model's card front matter (see card_meta.h):
 * read in a YAML subset, and the keys an output keeps written again;
 * apply's model card and lora's adapter card both use it.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loxstream/card_meta.h"
#include "loxstream/fs.h"

#define CARD_MAX (1u << 20)         /* bytes of the aligned card read at most */

static const char *const kept_keys[LX_CARD_KEYS] = {"license", "license_name", "license_link",
                                                    "language"};

/* ---- the aligned card's front matter ------------------------------------ */

void lx_card_meta_free(lx_card_meta *m)
{
    for (int k = 0; k < LX_CARD_KEYS; k++) {
        free(m->value[k]);
        for (size_t i = 0; i < m->nlist[k]; i++)
            free(m->list[k][i]);
        free(m->list[k]);
    }
    memset(m, 0, sizeof *m);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* One scalar of the subset, s[0..len) trimmed: plain (to a " #" comment),
 * 'single' ('' for a quote) or "double" (\\ \" \n \t escapes).  NULL when
 * it is outside the subset (or out of memory: *oom). */
static char *scalar(const char *s, size_t len, int *oom)
{
    char *out = malloc(len + 1), *o = out;
    if (!out) {
        *oom = 1;
        return NULL;
    }
    const char *e = s + len;
    if (len && (*s == '\'' || *s == '"')) {
        char q = *s++;
        for (; s < e && !(*s == q && !(q == '\'' && s + 1 < e && s[1] == '\'')); s++) {
            if (q == '\'' && *s == '\'') {
                *o++ = *s++; /* '' */
            } else if (q == '"' && *s == '\\' && s + 1 < e) {
                s++;
                char c = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
                if (!strchr("\\\"nt", *s))
                    goto bad;
                *o++ = c;
            } else {
                *o++ = *s;
            }
        }
        if (s >= e)
            goto bad;          /* unterminated */
        for (s++; s < e && (*s == ' ' || *s == '\t'); s++)
            ;
        if (s < e && *s != '#')
            goto bad;          /* something after the closing quote */
    } else {
        for (; s < e && !(*s == '#' && o > out && (o[-1] == ' ' || o[-1] == '\t')); s++)
            *o++ = *s;
        while (o > out && (o[-1] == ' ' || o[-1] == '\t'))
            o--;
        if (o > out && strchr("[]{}&*!|>%@`", out[0]))
            goto bad;          /* flow, anchors, tags, block scalars: not in the subset */
    }
    *o = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int push(char ***list, size_t *n, char *v)
{
    char **p = realloc(*list, (*n + 1) * sizeof *p);
    if (!p)
        return 0;
    *list = p;
    p[(*n)++] = v;
    return 1;
}

/* "[a, b]" into a list (items without commas or brackets inside quotes). */
static int flow_list(const char *v, char ***list, size_t *n, int *oom)
{
    size_t len = strlen(v);
    if (len < 2 || v[len - 1] != ']')
        return 0;
    char *body = strndup(v + 1, len - 2);
    if (!body) {
        *oom = 1;
        return 0;
    }
    int ok = 1;
    char *save = NULL;
    for (char *tok = strtok_r(body, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        char *item = *t ? scalar(t, strlen(t), oom) : NULL;
        ok = item && push(list, n, item);
        if (!ok && item)
            *oom = 1, free(item);
    }
    free(body);
    return ok;
}

lx_status lx_card_parse(const char *text, lx_card_meta *m)
{
    memset(m, 0, sizeof *m);
    if (strncmp(text, "---\n", 4) && strncmp(text, "---\r\n", 5))
        return LX_OK;
    char *buf = strdup(text + (text[3] == '\r' ? 5 : 4));
    if (!buf)
        return lx_fail(LX_EFAIL, "out of memory");
    lx_status st = LX_OK;
    int oom = 0, closed = 0, cur = -1; /* cur: the kept key whose "- item" lines follow */
    size_t lineno = 1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && st == LX_OK;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *t = trim(line);
        if (!strcmp(t, "---") || !strcmp(t, "...")) {
            closed = 1;
            break;
        }
        if (!*t || *t == '#')
            continue;
        if (line[0] == ' ' || line[0] == '\t' || line[0] == '-') {
            /* inside the block of the key before: its list, or skipped */
            if (cur < 0)
                continue;
            if (t[0] != '-' || (t[1] != ' ' && t[1] != '\0') || m->value[cur]) {
                st = lx_fail(LX_EINPUT, "line %zu: '%s' takes a scalar or a list of them",
                             lineno, kept_keys[cur]);
                break;
            }
            char *v = trim(t + 1), *item = scalar(v, strlen(v), &oom);
            if (!item || !push(&m->list[cur], &m->nlist[cur], item)) {
                oom |= item != NULL;
                free(item);
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: a list item of '%s' "
                                              "outside the subset read", lineno, kept_keys[cur]);
            }
            continue;
        }
        char *colon = strstr(t, ": ");
        if (!colon && t[strlen(t) - 1] == ':')
            colon = t + strlen(t) - 1;
        if (!colon || colon == t) {
            st = lx_fail(LX_EINPUT, "line %zu: not a 'key: value' line", lineno);
            break;
        }
        *colon = '\0';
        char *key = trim(t), *v = trim(colon + 1);
        cur = -1;
        for (int k = 0; k < LX_CARD_KEYS; k++)
            if (!strcmp(key, kept_keys[k]))
                cur = k;
        if (cur < 0)
            continue;
        if (m->value[cur] || m->list[cur]) {
            st = lx_fail(LX_EINPUT, "line %zu: '%s' given twice", lineno, key);
        } else if (*v == '[') {
            if (!flow_list(v, &m->list[cur], &m->nlist[cur], &oom))
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: the list of '%s' outside "
                                              "the subset read", lineno, key);
        } else if (*v) {
            if (!(m->value[cur] = scalar(v, strlen(v), &oom)))
                st = oom ? LX_EFAIL : lx_fail(LX_EINPUT, "line %zu: the value of '%s' outside "
                                              "the subset read", lineno, key);
        }
    }
    if (st == LX_OK && !closed)
        st = lx_fail(LX_EINPUT, "the front matter has no closing '---'");
    if (oom)
        st = lx_fail(LX_EFAIL, "out of memory");
    free(buf);
    if (st != LX_OK)
        lx_card_meta_free(m);
    return st;
}

void lx_card_read(const lx_checkpoint *aligned, lx_card_meta *m)
{
    memset(m, 0, sizeof *m);
    char *path = lx_path_join(aligned->dir, LX_CARD_META_NAME);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        if (path && errno != ENOENT)
            lx_warn("%s: cannot read (%s): the card keeps none of its licence and language",
                    path, strerror(errno));
        free(path);
        return;
    }
    char *text = malloc(CARD_MAX + 1);
    size_t n = text ? fread(text, 1, CARD_MAX, f) : 0;
    fclose(f);
    if (text) {
        text[n] = '\0';
        if (strlen(text) != n)
            lx_warn("%s: holds a NUL byte: the card keeps none of its licence and language",
                    path);
        else if (lx_card_parse(text, m) != LX_OK)
            lx_warn("%s: front matter not read (%s): the card keeps none of its licence and "
                    "language", path, lx_errmsg());
    }
    free(text);
    free(path);
}

/* ---- written again ---------------------------------------------------------- */

void lx_yaml_str(FILE *f, const char *s)
{
    json_t *j = json_string(s);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(d ? d : "\"\"", f);
    free(d);
    json_decref(j);
}

void lx_card_write_kept(FILE *f, const lx_card_meta *m)
{
    for (int k = 0; k < LX_CARD_KEYS; k++) {
        if (m->value[k]) {
            fprintf(f, "%s: ", kept_keys[k]);
            lx_yaml_str(f, m->value[k]);
            fputc('\n', f);
        } else if (m->list[k]) {
            fprintf(f, "%s:\n", kept_keys[k]);
            for (size_t i = 0; i < m->nlist[k]; i++) {
                fputs("- ", f);
                lx_yaml_str(f, m->list[k][i]);
                fputc('\n', f);
            }
        }
    }
}

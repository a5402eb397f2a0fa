/* memlimit.c - the memory limit of the process's own cgroup (see
 * memlimit.h): /proc/self/cgroup names the cgroup, /proc/self/mountinfo
 * where its hierarchy is mounted; the limit files are read from the cgroup
 * up to the mount point. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loxstream/memlimit.h"

#define V1_UNLIMITED ((uint64_t)1 << 60) /* v1 writes PAGE_COUNTER_MAX pages: ~2^63 */

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
    char *d = s;
    for (; *s; s++) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *d++ = *s;
        }
    }
    *d = 0;
}

/* Is word one of the comma-separated items of list? */
static int has_item(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, word, n) && (p[n] == ',' || p[n] == 0 || p[n] == '\n'))
            return 1;
    return 0;
}

/* Call fn on each line of file (newline cut) until it returns 1; returns
 * that 1, or 0 (also when the file cannot be read). */
static int scan_lines(const char *file, int (*fn)(char *line, void *ctx), void *ctx)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        found = fn(line, ctx);
    }
    fclose(f);
    return found;
}

/* What the scans look for, and where the answer goes. */
struct want {
    int version;                   /* 2: the v2 hierarchy; 1: v1 with "memory" */
    char *path, *mnt, *root;       /* size bytes each */
    size_t size;
};

/* A line of /proc/self/cgroup: "ID:CONTROLLERS:PATH" ("0::PATH" for v2). */
static int cgroup_line(char *line, void *ctx)
{
    struct want *w = ctx;
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
        return 0;
    *c1 = *c2 = 0;
    int match = w->version == 2 ? !strcmp(line, "0") && c2 == c1 + 1 : has_item(c1 + 1, "memory");
    if (!match || c2[1] != '/' || strlen(c2 + 1) >= w->size)
        return 0;
    strcpy(w->path, c2 + 1);
    return 1;
}

/* A line of /proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
 * [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS. */
static int mount_line(char *line, void *ctx)
{
    struct want *w = ctx;
    char *field[6] = {0}, *save = NULL, *tok = strtok_r(line, " ", &save);
    for (int i = 0; tok && i < 6; i++, tok = i < 6 ? strtok_r(NULL, " ", &save) : tok)
        field[i] = tok;
    if (!field[4])
        return 0;
    char *t = field[5];
    while (t && strcmp(t, "-"))
        t = strtok_r(NULL, " ", &save);
    char *fstype = t ? strtok_r(NULL, " ", &save) : NULL;
    char *source = fstype ? strtok_r(NULL, " ", &save) : NULL;
    char *opts = source ? strtok_r(NULL, " ", &save) : NULL;
    if (!fstype)
        return 0;
    int match = w->version == 2 ? !strcmp(fstype, "cgroup2")
                                : !strcmp(fstype, "cgroup") && opts && has_item(opts, "memory");
    if (!match || strlen(field[3]) >= w->size || strlen(field[4]) >= w->size)
        return 0;
    strcpy(w->root, field[3]);
    strcpy(w->mnt, field[4]);
    unescape(w->root);
    unescape(w->mnt);
    return 1;
}

/* The limit in file: 0 if absent, unreadable or none. */
static uint64_t read_limit(const char *file, int version)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return 0;
    char buf[64] = "";
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || (version == 2 && !strncmp(buf, "max", 3)))
        return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf || (version == 1 && v >= V1_UNLIMITED))
        return 0;
    return (uint64_t)v;
}

/* The smallest limit from the cgroup's directory up to the mount point. */
static void walk(const char *cgroup_file, const char *mountinfo_file, int version,
                 lx_memlimit *ml)
{
    char path[1024], mnt[1024], root[1024];
    struct want w = {version, path, mnt, root, sizeof path};
    if (!scan_lines(cgroup_file, cgroup_line, &w) || !scan_lines(mountinfo_file, mount_line, &w))
        return;
    /* the part of the path below what the mount shows */
    const char *rel = path;
    size_t rl = strlen(root);
    if (strcmp(root, "/")) {
        if (!strncmp(path, root, rl) && (path[rl] == '/' || path[rl] == 0))
            rel = path + rl;
        else
            rel = ""; /* outside the mounted part: its top is all we see */
    }
    char dir[sizeof mnt + sizeof path];
    snprintf(dir, sizeof dir, "%s%s", mnt, strcmp(rel, "/") ? rel : "");
    size_t top = strlen(mnt);
    const char *name = version == 2 ? "memory.max" : "memory.limit_in_bytes";
    for (;;) {
        char file[sizeof dir + 32];
        snprintf(file, sizeof file, "%s/%s", dir, name);
        uint64_t v = read_limit(file, version);
        if (v && (!ml->bytes || v < ml->bytes) && strlen(file) < sizeof ml->file) {
            ml->bytes = v;
            ml->version = version;
            strcpy(ml->file, file);
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= top || !slash || (size_t)(slash - dir) < top)
            break;
        *slash = 0;
    }
}

void lx_memlimit_find(const char *cgroup_file, const char *mountinfo_file, uint64_t ram,
                      lx_memlimit *ml)
{
    memset(ml, 0, sizeof *ml);
    walk(cgroup_file, mountinfo_file, 2, ml);
    walk(cgroup_file, mountinfo_file, 1, ml);
    if (ram && ml->bytes >= ram)
        memset(ml, 0, sizeof *ml);
}

void lx_memlimit_detect(lx_memlimit *ml)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    lx_memlimit_find("/proc/self/cgroup", "/proc/self/mountinfo", ram, ml);
}

/* test_memlimit.c - the cgroup memory limit (memlimit.h) on made-up
 * /proc/self/cgroup and /proc/self/mountinfo files and cgroup trees in a
 * temporary directory: v2 and v1, the smallest limit on the way up,
 * "max" and v1's "unlimited", a mount showing part of the hierarchy, an
 * escaped mount point, a limit above the RAM, the hybrid layout (v2 beside
 * a v1 memory hierarchy), nothing to find. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "loxstream/fs.h"
#include "loxstream/memlimit.h"
#include "tmpdir.h"

/* Write text to root/rel, creating the directories on the way. */
static void put(const char *rel, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir_root(), rel);
    char *slash = strrchr(path, '/');
    *slash = 0;
    assert_int_equal(lx_mkdir_p(path), LX_OK);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The mountinfo line of a cgroup file system mounted at root/mnt_rel
 * (written as mountinfo escapes it) showing hierarchy root hroot. */
static void mountinfo(const char *name, const char *fstype, const char *hroot,
                      const char *mnt_rel, const char *opts)
{
    char text[2048];
    snprintf(text, sizeof text,
             "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
             "35 31 0:32 %s %s/%s rw,nosuid master:7 - %s cgroup %s\n",
             hroot, tmpdir_root(), mnt_rel, fstype, opts);
    put(name, text);
}

static lx_memlimit find(const char *cg, const char *mi, uint64_t ram)
{
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/%s", tmpdir_root(), cg);
    snprintf(b, sizeof b, "%s/%s", tmpdir_root(), mi);
    lx_memlimit ml;
    lx_memlimit_find(a, b, ram, &ml);
    return ml;
}

static const char *rel_file(const lx_memlimit *ml)
{
    size_t n = strlen(tmpdir_root());
    assert_memory_equal(ml->file, tmpdir_root(), n);
    return ml->file + n + 1;
}

/* v2: the leaf says max, its parent a number, the top nothing */
static void test_v2_parent_limit(void **state)
{
    (void)state;
    put("v2cg", "0::/job/step\n");
    mountinfo("v2mi", "cgroup2", "/", "v2", "rw");
    put("v2/job/step/memory.max", "max\n");
    put("v2/job/memory.max", "419430400\n");
    lx_memlimit ml = find("v2cg", "v2mi", 0);
    assert_int_equal(ml.bytes, 419430400);
    assert_int_equal(ml.version, 2);
    assert_string_equal(rel_file(&ml), "v2/job/memory.max");
    /* the leaf's own limit, smaller, wins */
    put("v2/job/step/memory.max", "104857600\n");
    ml = find("v2cg", "v2mi", 0);
    assert_int_equal(ml.bytes, 104857600);
    assert_string_equal(rel_file(&ml), "v2/job/step/memory.max");
    /* at or above the RAM: no limit */
    ml = find("v2cg", "v2mi", 104857600);
    assert_int_equal(ml.bytes, 0);
}

/* v1: memory among other controllers; "unlimited" is a huge number */
static void test_v1(void **state)
{
    (void)state;
    put("v1cg", "5:devices:/other\n4:cpu,memory:/slurm/uid_0/job_7\n0::/\n");
    mountinfo("v1mi", "cgroup", "/", "v1", "rw,cpu,memory");
    put("v1/slurm/uid_0/job_7/memory.limit_in_bytes", "9223372036854771712\n");
    put("v1/slurm/memory.limit_in_bytes", "629145600\n");
    put("v1/memory.limit_in_bytes", "9223372036854771712\n");
    lx_memlimit ml = find("v1cg", "v1mi", 0);
    assert_int_equal(ml.bytes, 629145600);
    assert_int_equal(ml.version, 1);
    assert_string_equal(rel_file(&ml), "v1/slurm/memory.limit_in_bytes");
    /* a v1 hierarchy without the memory controller is not it */
    mountinfo("v1mi2", "cgroup", "/", "v1", "rw,cpu,cpuacct");
    ml = find("v1cg", "v1mi2", 0);
    assert_int_equal(ml.bytes, 0);
}

/* A mount showing part of the hierarchy (a container's), at a path with a
 * space (escaped \040 in mountinfo) */
static void test_mount_root_and_escape(void **state)
{
    (void)state;
    put("rcg", "0::/docker/c1/app\n");
    mountinfo("rmi", "cgroup2", "/docker/c1", "my\\040mnt", "rw");
    put("my mnt/app/memory.max", "max\n");
    put("my mnt/memory.max", "268435456\n");
    lx_memlimit ml = find("rcg", "rmi", 0);
    assert_int_equal(ml.bytes, 268435456);
    assert_string_equal(rel_file(&ml), "my mnt/memory.max");
    /* a cgroup outside what the mount shows: only its top is seen */
    put("rcg2", "0::/elsewhere\n");
    ml = find("rcg2", "rmi", 0);
    assert_int_equal(ml.bytes, 268435456);
}

/* Hybrid (systemd's default before v2-only, and the machine these tests
 * were first run on): a v2 hierarchy mounted beside the v1 ones, holding
 * no memory controller (no memory.max files), and memory bound to v1: the
 * v1 limit is found; where both have one, the smaller wins. */
static void test_hybrid(void **state)
{
    (void)state;
    put("hcg", "4:memory:/process_api/job\n1:cpu:/\n0::/\n");
    char text[2048];
    snprintf(text, sizeof text,
             "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
             "41 31 0:38 / %s/h2 rw,relatime - cgroup2 cgroup2 rw\n"
             "37 31 0:34 / %s/h1 rw,relatime - cgroup cgroup rw,memory\n",
             tmpdir_root(), tmpdir_root());
    put("hmi", text);
    put("h2/cgroup.controllers", "hugetlb\n");
    put("h1/process_api/job/memory.limit_in_bytes", "536870912\n");
    put("h1/memory.limit_in_bytes", "9223372036854771712\n");
    lx_memlimit ml = find("hcg", "hmi", 0);
    assert_int_equal(ml.bytes, 536870912);
    assert_int_equal(ml.version, 1);
    assert_string_equal(rel_file(&ml), "h1/process_api/job/memory.limit_in_bytes");
    /* a v2 limit above it does not hide it; one below it does */
    put("h2/memory.max", "1073741824\n");
    ml = find("hcg", "hmi", 0);
    assert_int_equal(ml.bytes, 536870912);
    assert_int_equal(ml.version, 1);
    put("h2/memory.max", "268435456\n");
    ml = find("hcg", "hmi", 0);
    assert_int_equal(ml.bytes, 268435456);
    assert_int_equal(ml.version, 2);
    assert_string_equal(rel_file(&ml), "h2/memory.max");
}

/* Nothing to find: no files, no limit files, no matching mount */
static void test_none(void **state)
{
    (void)state;
    lx_memlimit ml = find("absent", "absent2", 0);
    assert_int_equal(ml.bytes, 0);
    assert_int_equal(ml.version, 0);
    put("ncg", "0::/a\n");
    mountinfo("nmi", "cgroup2", "/", "empty", "rw");
    ml = find("ncg", "nmi", 0);
    assert_int_equal(ml.bytes, 0);
    mountinfo("nmi2", "ext4", "/", "empty", "rw");
    put("empty/a/memory.max", "1000\n");
    ml = find("ncg", "nmi2", 0);
    assert_int_equal(ml.bytes, 0);
}

/* The real one answers without failing (whatever this machine has). */
static void test_detect(void **state)
{
    (void)state;
    lx_memlimit ml;
    lx_memlimit_detect(&ml);
    if (ml.bytes) {
        assert_true(ml.version == 1 || ml.version == 2);
        struct stat sb;
        assert_int_equal(stat(ml.file, &sb), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_parent_limit),
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_mount_root_and_escape),
        cmocka_unit_test(test_hybrid),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_detect),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

/* test_hfcache.c - model IDs in the Hugging Face cache (hfcache.h), on a
 * fake cache tree laid out as huggingface_hub writes it: refs/<name> files
 * holding a commit, snapshots/<commit>/<file> links to ../../blobs/<hash>. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/fs.h"
#include "loxstream/hfcache.h"
#include "tmpdir.h"

#define C1 "0123456789abcdef0123456789abcdef01234567"
#define C2 "fedcba9876543210fedcba9876543210fedcba98"
#define C3 "1111111111111111111111111111111111111111"
#define REPO "hub/models--acme--tiny-lm"

static void put(const char *rel, const char *text)
{
    assert_int_equal(tmpdir_put(rel, text, strlen(text)), 0);
}

static void link_to(const char *target, const char *rel)
{
    assert_int_equal(tmpdir_mkparent(rel), 0);
    assert_int_equal(symlink(target, tmpdir_file(rel)), 0);
}

/* Three commits: main -> C1, tag v1.0 -> C2, pull request 1 -> C3 (stored
 * as refs/refs/pr/1, as huggingface_hub does); a ref "stale" to a commit
 * whose snapshot is gone.  Each snapshot's file links into blobs/. */
static int make_cache(void **state)
{
    (void)state;
    if (tmpdir_make(NULL) != 0)
        return -1;
    put(REPO "/blobs/aaaa", "one");
    put(REPO "/blobs/bbbb", "two");
    put(REPO "/blobs/cccc", "three");
    put(REPO "/refs/main", C1 "\n");
    put(REPO "/refs/v1.0", C2); /* no newline: huggingface_hub writes none */
    put(REPO "/refs/refs/pr/1", C3 "\n");
    put(REPO "/refs/stale", "2222222222222222222222222222222222222222\n");
    link_to("../../blobs/aaaa", REPO "/snapshots/" C1 "/model.safetensors");
    link_to("../../blobs/bbbb", REPO "/snapshots/" C2 "/model.safetensors");
    link_to("../../blobs/cccc", REPO "/snapshots/" C3 "/model.safetensors");
    put("hub/models--gpt2/refs/main", C1 "\n");
    link_to("../../blobs/aaaa", "hub/models--gpt2/snapshots/" C1 "/config.json");
    return 0;
}

static int remove_cache(void **state)
{
    (void)state;
    return tmpdir_remove();
}

static const char *hub(void)
{
    return tmpdir_file("hub");
}

/* The file behind path/model.safetensors, read through the links. */
static void expect_content(const lx_hf_model *m, const char *name, const char *want)
{
    char *p = lx_path_join(m->path, name);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char buf[16] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    free(p);
    assert_string_equal(buf, want);
}

static void test_model_ids(void **state)
{
    (void)state;
    const char *good[] = {"meta-llama/Llama-2-7b-hf", "gpt2", "Qwen/Qwen2.5-0.5B",
                          "a/b", "org_1/name.v2", "EleutherAI/pythia-70m"};
    const char *bad[] = {"", "/abs/path", "a/b/c", "./x", "../x", "x/", "/x", "a--b/c",
                         "a/b..c", ".hidden", "name-", "a b", "a/b c", "org/na$me",
                         "model.safetensors/", "~/models/x"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(lx_hf_is_model_id(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (lx_hf_is_model_id(bad[i]))
            fail_msg("'%s' taken for a model ID", bad[i]);
    }
    char longname[100];
    memset(longname, 'x', 97);
    longname[97] = '\0';
    assert_false(lx_hf_is_model_id(longname));
    longname[96] = '\0';
    assert_true(lx_hf_is_model_id(longname));
}

static void test_cache_dir(void **state)
{
    (void)state;
    setenv("HF_HUB_CACHE", "/c/hub-cache", 1);
    setenv("HF_HOME", "/h/hf-home", 1);
    setenv("HOME", "/home/u", 1);
    char *d = lx_hf_cache_dir();
    assert_string_equal(d, "/c/hub-cache");
    free(d);
    unsetenv("HF_HUB_CACHE");
    d = lx_hf_cache_dir();
    assert_string_equal(d, "/h/hf-home/hub");
    free(d);
    setenv("HF_HOME", "", 1); /* empty counts as unset */
    d = lx_hf_cache_dir();
    assert_string_equal(d, "/home/u/.cache/huggingface/hub");
    free(d);
    unsetenv("HF_HOME");
    unsetenv("HOME");
    assert_null(lx_hf_cache_dir());
}

static void test_resolve_refs(void **state)
{
    (void)state;
    lx_hf_model m;
    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", NULL, &m), LX_OK);
    assert_string_equal(m.id, "acme/tiny-lm");
    assert_string_equal(m.revision, "main");
    assert_string_equal(m.commit, C1);
    char want[PATH_MAX];
    snprintf(want, sizeof want, "%s/models--acme--tiny-lm/snapshots/%s", hub(), C1);
    assert_string_equal(m.path, want);
    expect_content(&m, "model.safetensors", "one");
    lx_hf_model_free(&m);

    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", "v1.0", &m), LX_OK);
    assert_string_equal(m.commit, C2);
    expect_content(&m, "model.safetensors", "two");
    lx_hf_model_free(&m);

    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", "refs/pr/1", &m), LX_OK);
    assert_string_equal(m.commit, C3);
    expect_content(&m, "model.safetensors", "three");
    lx_hf_model_free(&m);

    assert_int_equal(lx_hf_resolve(hub(), "gpt2", "main", &m), LX_OK);
    snprintf(want, sizeof want, "%s/models--gpt2/snapshots/%s", hub(), C1);
    assert_string_equal(m.path, want);
    lx_hf_model_free(&m);
}

static void test_resolve_commit(void **state)
{
    (void)state;
    lx_hf_model m;
    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", C2, &m), LX_OK);
    assert_string_equal(m.revision, C2);
    assert_string_equal(m.commit, C2);
    expect_content(&m, "model.safetensors", "two");
    lx_hf_model_free(&m);
}

static void test_missing(void **state)
{
    (void)state;
    lx_hf_model m;
    char want[PATH_MAX];
    assert_int_equal(lx_hf_resolve(hub(), "acme/nope", NULL, &m), LX_EINPUT);
    assert_null(m.path);
    snprintf(want, sizeof want, "no directory %s/models--acme--nope)", hub());
    assert_non_null(strstr(lx_errmsg(), want));
    assert_non_null(strstr(lx_errmsg(), "huggingface-cli download acme/nope"));
    assert_null(strstr(lx_errmsg(), "--revision"));

    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", "v9", &m), LX_EINPUT);
    snprintf(want, sizeof want, "%s/models--acme--tiny-lm/refs/v9", hub());
    assert_non_null(strstr(lx_errmsg(), want));
    assert_non_null(strstr(lx_errmsg(), "huggingface-cli download acme/tiny-lm --revision v9"));

    /* a ref whose snapshot is not there (an interrupted download) */
    assert_int_equal(lx_hf_resolve(hub(), "acme/tiny-lm", "stale", &m), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "names commit 2222222222222222222222222222222222222222"));
    assert_non_null(strstr(lx_errmsg(), "--revision stale"));

    assert_int_equal(lx_hf_resolve(NULL, "acme/tiny-lm", NULL, &m), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "HF_HUB_CACHE"));
}

static void test_bad_revision(void **state)
{
    (void)state;
    lx_hf_model m;
    const char *bad[] = {"", "/etc/passwd", "../../x", "a/../b", "a//b", "a/", ".", "x\ny"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (lx_hf_resolve(hub(), "acme/tiny-lm", bad[i], &m) != LX_EUSAGE)
            fail_msg("revision '%s' accepted (%s)", bad[i], lx_errmsg());
    }
    assert_int_equal(lx_hf_resolve(hub(), "not an id", NULL, &m), LX_EUSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_ids),
        cmocka_unit_test(test_cache_dir),
        cmocka_unit_test(test_resolve_refs),
        cmocka_unit_test(test_resolve_commit),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_bad_revision),
    };
    return cmocka_run_group_tests(tests, make_cache, remove_cache);
}

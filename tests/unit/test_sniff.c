/* test_sniff.c - inputs that are not safetensors (sniff.h): the first bytes
 * of each format as its writer lays them out, real safetensors files from
 * other tools (never taken for anything else), and directories. */
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

#include "loxstream/fs.h"
#include "loxstream/sniff.h"
#include "tmpdir.h"

#define KIND(bytes, size) lx_sniff_kind((const unsigned char *)(bytes), sizeof(bytes) - 1, (size))

static void test_kinds(void **state)
{
    (void)state;
    /* pickle protocol 2 (torch.save with _use_new_zipfile_serialization=False) */
    assert_string_equal(KIND("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8", 1000),
                        "a PyTorch pickle");
    assert_string_equal(KIND("\x80\x04\x95", 3), "a PyTorch pickle");
    /* torch.save since PyTorch 1.6: a zip archive, local file header first */
    assert_string_equal(KIND("PK\x03\x04\x00\x00\x08\x08\x00\x00\x00\x00", 1 << 20),
                        "a zip archive, torch.save's format");
    /* GGUF: magic, version 3 */
    assert_string_equal(KIND("GGUF\x03\x00\x00\x00\x00\x01\x00\x00", 1 << 20),
                        "GGUF, llama.cpp's format");
    assert_string_equal(KIND("{\n  \"architectures\": [", 600), "JSON");
    assert_string_equal(KIND("\xef\xbb\xbf  [1, 2]", 10), "JSON");
    /* safetensors whose header length's low byte is '{' (123 bytes), or
     * 'P': a plausible length wins over the look of the first byte */
    assert_null(KIND("\x7b\x00\x00\x00\x00\x00\x00\x00{\"a\"", 200));
    assert_null(KIND("PK\x03\x04\x00\x00\x00\x00{", 0x04034b50 + 8));
    /* unknown, or too short to tell */
    assert_null(KIND("hello world!", 12));
    assert_null(KIND("\x01", 1));
}

/* Every real safetensors file in the test data passes (a file cut short
 * or hostile is the reader's business, not taken for another format). */
static void test_real_safetensors(void **state)
{
    (void)state;
    const char *src = getenv("TESTS_SRCDIR");
    if (!src)
        skip();
    const char *files[] = {
        "data/real/roberta-lora/checkpoint-500/adapter_model.safetensors",
        "data/real/gpt2-lora-run/checkpoint-2000/adapter_model.safetensors",
        "data/real/safetensors-cpp/model.safetensors",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = lx_path_join(src, files[i]);
        FILE *f = fopen(p, "rb");
        assert_non_null(f);
        unsigned char head[16];
        size_t n = fread(head, 1, sizeof head, f);
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        assert_null(lx_sniff_kind(head, n, (uint64_t)size));
        assert_int_equal(lx_sniff_file(p), LX_OK);
        free(p);
    }
}

static void put(const char *rel, const char *bytes, size_t n)
{
    assert_int_equal(tmpdir_put(rel, bytes, n), 0);
}

static void test_files(void **state)
{
    (void)state;
    put("f/model.bin", "\x80\x02}q\x00.", 6);
    assert_int_equal(lx_sniff_file(tmpdir_file("f/model.bin")), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "f/model.bin: not a safetensors file (looks like a "
                                        "PyTorch pickle): convert it first"));
    put("f/config.json", "{\"model_type\": \"llama\"}\n", 24);
    assert_int_equal(lx_sniff_file(tmpdir_file("f/config.json")), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "(looks like JSON): give the model's directory"));
    assert_int_equal(lx_sniff_file(tmpdir_file("f/missing")), LX_OK);
}

static void test_dirs(void **state)
{
    (void)state;
    put("pt/pytorch_model-00001-of-00002.bin", "\x80\x02", 2);
    put("pt/pytorch_model.bin.index.json", "{}", 2);
    put("pt/config.json", "{}", 2);
    assert_int_equal(lx_sniff_dir(tmpdir_file("pt")), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "only PyTorch weights (pytorch_model*.bin): convert"));
    assert_non_null(strstr(lx_errmsg(), "save_pretrained("));
    /* with safetensors beside them (HF repos often ship both): fine */
    put("both/pytorch_model.bin", "\x80\x02", 2);
    put("both/model.safetensors", "x", 1);
    assert_int_equal(lx_sniff_dir(tmpdir_file("both")), LX_OK);
    /* an index whose shards are missing is the reader's to report */
    put("ix/model.safetensors.index.json", "{}", 2);
    put("ix/pytorch_model.bin", "\x80\x02", 2);
    assert_int_equal(lx_sniff_dir(tmpdir_file("ix")), LX_OK);
    put("gg/model-q4_0.gguf", "GGUF", 4);
    assert_int_equal(lx_sniff_dir(tmpdir_file("gg")), LX_EINPUT);
    assert_non_null(strstr(lx_errmsg(), "only GGUF files"));
    /* nothing known: the reader's "no ... file in this directory" */
    put("empty/README.md", "#", 1);
    assert_int_equal(lx_sniff_dir(tmpdir_file("empty")), LX_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_real_safetensors),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_dirs),
    };
    return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}

/* sniff.c - recognise the inputs that are not safetensors checkpoints
 * (PyTorch pickles and zip archives, GGUF, JSON; directories of them) and
 * say what to do instead (see sniff.h). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loxstream/sniff.h"

#define ST_SUFFIX ".safetensors"

const char *lx_sniff_kind(const unsigned char *head, size_t n, uint64_t size)
{
    /* safetensors: 8 bytes of little-endian header length that fits in the
     * file.  The first bytes of the formats below read as a length of
     * petabytes, so this never mistakes one of them for safetensors. */
    if (n >= 8) {
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
            hlen = hlen << 8 | head[i];
        if (size >= 8 && hlen <= size - 8)
            return NULL;
    }
    if (n >= 4 && !memcmp(head, "PK\003\004", 4))
        return "a zip archive, torch.save's format";
    if (n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
        return "a PyTorch pickle";
    if (n >= 4 && !memcmp(head, "GGUF", 4))
        return "GGUF, llama.cpp's format";
    size_t i = 0;
    if (n >= 3 && !memcmp(head, "\xef\xbb\xbf", 3))
        i = 3; /* a UTF-8 byte order mark */
    while (i < n && (head[i] == ' ' || head[i] == '\t' || head[i] == '\n' || head[i] == '\r'))
        i++;
    if (i < n && (head[i] == '{' || head[i] == '['))
        return "JSON";
    return NULL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t l = strlen(s), k = strlen(suffix);
    return l > k && !strcmp(s + l - k, suffix);
}

lx_status lx_sniff_file(const char *path)
{
    unsigned char head[16];
    struct stat sb;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return LX_OK;
    ssize_t n = fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) ? pread(fd, head, sizeof head, 0) : -1;
    close(fd);
    const char *kind = n > 0 ? lx_sniff_kind(head, (size_t)n, (uint64_t)sb.st_size) : NULL;
    if (!kind)
        return LX_OK;
    if (!strcmp(kind, "JSON"))
        return lx_fail(LX_EINPUT, "%s: not a safetensors file (looks like JSON): give the model's "
                       "directory, which holds it and the *.safetensors files", path);
    if (!strncmp(kind, "GGUF", 4))
        return lx_fail(LX_EINPUT, "%s: not a safetensors file (looks like %s): loxstream reads "
                       "the Hugging Face release of a model (*.safetensors), not a GGUF export",
                       path, kind);
    return lx_fail(LX_EINPUT,
                   "%s: not a safetensors file (looks like %s): convert it first, e.g. python3 "
                   "-c 'import torch; from safetensors.torch import save_file; save_file(torch."
                   "load(\"%s\", map_location=\"cpu\", weights_only=True), \"model.safetensors\")'",
                   path, kind, path);
}

lx_status lx_sniff_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return LX_OK;
    int st_files = 0, torch_files = 0, gguf_files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *f = e->d_name;
        if (f[0] == '.')
            continue;
        /* model.safetensors.index.json counts: its shards may be missing,
         * which the reader reports */
        if (ends_with(f, ST_SUFFIX) || strstr(f, ST_SUFFIX ".index.json"))
            st_files++;
        else if ((!strncmp(f, "pytorch_model", 13) && (ends_with(f, ".bin") ||
                                                        ends_with(f, ".bin.index.json"))) ||
                 ends_with(f, ".pt") || ends_with(f, ".pth"))
            torch_files++;
        else if (ends_with(f, ".gguf"))
            gguf_files++;
    }
    closedir(d);
    if (st_files)
        return LX_OK;
    int n = (int)strlen(path); /* "DIR-safetensors", also for "DIR/" */
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (torch_files)
        return lx_fail(LX_EINPUT,
                       "%s: no *.safetensors file, only PyTorch weights (pytorch_model*.bin): "
                       "convert them first, e.g. python3 -c 'from transformers import "
                       "AutoModelForCausalLM as M; M.from_pretrained(\"%s\").save_pretrained("
                       "\"%.*s-safetensors\", safe_serialization=True)'",
                       path, path, n, path);
    if (gguf_files)
        return lx_fail(LX_EINPUT, "%s: no *.safetensors file, only GGUF files: loxstream reads "
                       "the Hugging Face release of a model (*.safetensors), not a GGUF export",
                       path);
    return LX_OK;
}

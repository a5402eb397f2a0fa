/* sniff.h - what an input that is not a safetensors checkpoint is, from
 * its first bytes or its directory's file names (src/io/sniff.c), so that a
 * PyTorch pickle, a GGUF file or a config.json given as a checkpoint gets a
 * message that says so, and a directory of pytorch_model*.bin files one
 * that says how to convert it.  The checkpoint reader (checkpoint.h) still
 * validates everything these let through. */
#ifndef LOXSTREAM_SNIFF_H
#define LOXSTREAM_SNIFF_H

#include <stddef.h>
#include <stdint.h>

#include "loxstream/error.h"

/* From the first n bytes of a file of size bytes: NULL for a plausible
 * safetensors file (or one too short to tell), else what it looks like:
 * "a PyTorch pickle", "a zip archive, torch.save's format", "GGUF,
 * llama.cpp's format", "JSON". */
const char *lx_sniff_kind(const unsigned char *head, size_t n, uint64_t size);

/* A regular file given as a checkpoint: LX_EINPUT "PATH: not a safetensors
 * file (looks like ...)" with what to do, when lx_sniff_kind knows it;
 * LX_OK otherwise (also when it cannot be read: the reader says why). */
lx_status lx_sniff_file(const char *path);

/* A directory given as a checkpoint: LX_EINPUT when it holds no
 * *.safetensors file but PyTorch (pytorch_model*.bin, *.pt, *.pth) or GGUF
 * files, saying how to convert them; LX_OK otherwise. */
lx_status lx_sniff_dir(const char *path);

#endif

#!/bin/sh
# build.sh - build the libFuzzer targets with clang, ASan and UBSan.
#
#   tests/fuzz/build.sh [OUTDIR]        (default: ./fuzz-build)
#
# Compiles the input half of the library (the parser, the index, the
# checkpoint opener and what they use) straight from the sources, without
# libtool or configure, so that any clang with libFuzzer will do:
# FUZZ_CC=clang-16 to choose one (default: clang, else the newest clang-N).
# Needs libjansson-dev and libxxhash-dev (pkg-config) and, on Debian, the
# clang runtime (libclang-rt-N-dev) that holds libFuzzer.
set -eu

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-fuzz-build}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
    for c in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do
        if command -v "$c" >/dev/null 2>&1; then
            cc=$c
            break
        fi
    done
fi
if [ -z "$cc" ]; then
    echo "fuzz: no clang found (install the Debian packages clang and libclang-rt-N-dev)" >&2
    exit 1
fi

deps=$(pkg-config --cflags jansson libxxhash)
libs=$(pkg-config --libs jansson libxxhash)
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wno-unused-parameter -I$srcdir/include $deps"

lib="src/base/error.c src/base/parse.c src/base/fs.c src/base/testhook.c
     src/io/safetensors.c src/io/st_write.c src/io/direct.c src/io/index.c
     src/io/checkpoint.c src/io/sigbus.c src/numeric/dtype.c src/numeric/bf16_kernel.c"
objs=
for f in $lib; do
    o="$out/obj/$(basename "$f" .c).o"
    $cc $cflags $san -fsanitize=fuzzer-no-link -c "$srcdir/$f" -o "$o"
    objs="$objs $o"
done
for t in header index checkpoint; do
    $cc $cflags $san -fsanitize=fuzzer "$srcdir/tests/fuzz/fuzz_$t.c" $objs $libs -lm \
        -o "$out/fuzz_$t"
done
echo "fuzz: built $out/fuzz_header $out/fuzz_index $out/fuzz_checkpoint with $cc"

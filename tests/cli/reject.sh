#!/bin/sh
# reject.sh - every rejection rule of the reader, one hand-made file each,
# through the binary: exit status 3, one message on stderr naming the file
# (and the tensor, where there is one) and the reason, nothing on stdout.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

# reject CKPT PATTERN...: inspect CKPT exits 3, stdout is empty and stderr
# is one "loxstream: " line matching every PATTERN.
reject() {
    ckpt=$1
    shift
    expect_exit 3 "$LOXSTREAM" inspect "$ckpt"
    expect_eq "stdout of a rejected $ckpt" "$(cat "$TMP/out")" ""
    expect_eq "stderr lines" "$(wc -l <"$TMP/err" | tr -d ' ')" 1
    expect_err "^loxstream: "
    for pat in "$@"; do
        expect_err "$pat"
    done
}

F=$TMP/f
mkdir "$F"
# a valid entry to build on: U8 [4] at [0, 4]
U8A='"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}'

# ---- the file frame -------------------------------------------------------

# 5 bytes: too short to hold the header length.
printf 'abcde' >"$F/short.safetensors"
reject "$F/short.safetensors" "short.safetensors: file is 5 bytes, shorter than the 8-byte header length"

# An empty file (never mapped, still parsed).
: >"$F/empty.safetensors"
reject "$F/empty.safetensors" "empty.safetensors: file is 0 bytes, shorter than the 8-byte header length"

# N = 100,000,001: over the reference reader's limit (checked before the
# file size: the file is only 10 bytes).
st_raw "$F/huge.safetensors" 100000001 '{}'
reject "$F/huge.safetensors" "huge.safetensors: header length 100000001 exceeds the limit of 100000000 bytes"

# N = 64 in a 10-byte file.
st_raw "$F/past.safetensors" 64 '{}'
reject "$F/past.safetensors" "past.safetensors: header length 64 runs past the end of the file \(10 bytes\)"

# The real hostile file: N = 1000 in 88 bytes.
ABUSE=$REAL/safetensors-cpp/safetensors_abuse_attempt_1.safetensors
expect_eq "abuse file size" "$(wc -c <"$ABUSE" | tr -d ' ')" 88
expect_eq "abuse file N" "$(header_len "$ABUSE")" 1000
reject "$ABUSE" "safetensors_abuse_attempt_1.safetensors: header length 1000 runs past the end of the file \(88 bytes\)"

# ---- the header text -------------------------------------------------------

# Byte 0xff (never valid UTF-8) inside a name, at header offset 3.
st_file "$F/utf8.safetensors" "$(printf '{"a\377":1}')"
reject "$F/utf8.safetensors" "utf8.safetensors: header is not valid UTF-8 \(byte 0xff at header offset 3\)"

# Cut JSON.
st_file "$F/json.safetensors" '{"a":'
reject "$F/json.safetensors" "json.safetensors: header is not valid JSON"

# One object, then something other than padding spaces.
st_file "$F/trail.safetensors" "{$U8A} x" 4
reject "$F/trail.safetensors" "trail.safetensors: header is not valid JSON: end of file expected"

# An array instead of an object.
st_file "$F/array.safetensors" '[]'
reject "$F/array.safetensors" "array.safetensors: header is an array, expected a JSON object"

# ---- types of the entries -------------------------------------------------

st_file "$F/entry.safetensors" '{"w":[1]}'
reject "$F/entry.safetensors" "entry.safetensors: tensor 'w': entry is an array, expected an object"

st_file "$F/nodtype.safetensors" '{"w":{"shape":[1],"data_offsets":[0,4]}}' 4
reject "$F/nodtype.safetensors" "nodtype.safetensors: tensor 'w': no \"dtype\""

st_file "$F/noshape.safetensors" '{"w":{"dtype":"F32","data_offsets":[0,4]}}' 4
reject "$F/noshape.safetensors" "noshape.safetensors: tensor 'w': no \"shape\""

st_file "$F/nooffsets.safetensors" '{"w":{"dtype":"F32","shape":[1]}}' 4
reject "$F/nooffsets.safetensors" "nooffsets.safetensors: tensor 'w': no \"data_offsets\""

st_file "$F/dtype.safetensors" '{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}' 16
reject "$F/dtype.safetensors" "dtype.safetensors: tensor 'w': unknown dtype 'F128'"

# "F32" followed by an escaped NUL must not pass as F32.
st_file "$F/dtypenul.safetensors" '{"w":{"dtype":"F32\u0000","shape":[1],"data_offsets":[0,4]}}' 4
reject "$F/dtypenul.safetensors" "dtypenul.safetensors: tensor 'w': dtype contains a NUL byte"

st_file "$F/negdim.safetensors" '{"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,0]}}'
reject "$F/negdim.safetensors" "negdim.safetensors: tensor 'w': shape\[1\] is -3, expected a non-negative integer"

st_file "$F/realdim.safetensors" '{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}' 8
reject "$F/realdim.safetensors" "realdim.safetensors: tensor 'w': shape\[0\] is 2.5, expected a non-negative integer"

st_file "$F/ndim.safetensors" '{"w":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}' 1
reject "$F/ndim.safetensors" "ndim.safetensors: tensor 'w': shape has 17 dimensions, more than 16"

st_file "$F/offs3.safetensors" '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}' 2
reject "$F/offs3.safetensors" "offs3.safetensors: tensor 'w': data_offsets has 3 entries, expected \[begin, end\]"

st_file "$F/negoff.safetensors" '{"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}'
reject "$F/negoff.safetensors" "negoff.safetensors: tensor 'w': data_offsets\[0\] is -1, expected a non-negative integer"

# 2^64: past what JSON integers hold here.
st_file "$F/bigint.safetensors" '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}' 1
reject "$F/bigint.safetensors" "bigint.safetensors: header: number out of range: too big integer"

st_file "$F/meta.safetensors" '{"__metadata__":{"format":1}}'
reject "$F/meta.safetensors" "meta.safetensors: __metadata__ entry 'format' is 1, expected a string"

st_file "$F/metaobj.safetensors" '{"__metadata__":"pt"}'
reject "$F/metaobj.safetensors" "metaobj.safetensors: __metadata__ is a string, expected an object of strings"

# ---- names -------------------------------------------------------------------

st_file "$F/dup.safetensors" '{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' 2
reject "$F/dup.safetensors" "dup.safetensors: header: duplicate name .*near '\"w\"'"

st_file "$F/nul.safetensors" '{"a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' 1
reject "$F/nul.safetensors" "nul.safetensors: header: a name contains a NUL byte"

# ---- offsets and sizes ---------------------------------------------------

st_file "$F/endbegin.safetensors" '{"model.layers.0.mlp.up_proj.weight":{"dtype":"U8","shape":[10],"data_offsets":[100,90]}}'
reject "$F/endbegin.safetensors" "endbegin.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets \[100, 90\]: end before begin"

st_file "$F/first.safetensors" '{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}' 8
reject "$F/first.safetensors" "first.safetensors: tensor 'a': data_offsets \[4, 8\]: the first tensor must begin at 0"

st_file "$F/gap.safetensors" "{$U8A,\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}" 10
reject "$F/gap.safetensors" "gap.safetensors: tensor 'b': data_offsets \[6, 10\]: gap after tensor 'a' which ends at 4 \(offsets not contiguous\)"

st_file "$F/overlap.safetensors" "{$U8A,\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}" 6
reject "$F/overlap.safetensors" "overlap.safetensors: tensor 'b': data_offsets \[2, 6\]: overlap after tensor 'a' which ends at 4"

# 2^32 x 2^32 elements.
st_file "$F/nelem.safetensors" '{"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}'
reject "$F/nelem.safetensors" "nelem.safetensors: tensor 'w': shape \[4294967296, 4294967296\]: element count overflows 64 bits"

# 2^61 elements fit; 2^61 x 64 bits do not.
st_file "$F/nbits.safetensors" '{"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}'
reject "$F/nbits.safetensors" "nbits.safetensors: tensor 'w': shape \[2305843009213693952\] x 64 bits \(F64\) overflows 64 bits"

# 3 x 4 bits.
st_file "$F/f4.safetensors" '{"w":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}' 2
reject "$F/f4.safetensors" "f4.safetensors: tensor 'w': shape \[3\] of F4 is 3 elements = 12 bits, not a whole number of bytes"

st_file "$F/length.safetensors" '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}' 20
reject "$F/length.safetensors" "length.safetensors: tensor 'w': data_offsets \[0, 20\] hold 20 bytes, but shape \[2, 3\] of F32 needs 24 bytes"

# 3 bytes more than the offsets cover.
J="{$U8A}"
N=$(nbytes "$J")
st_file "$F/trailing.safetensors" "$J" 7
reject "$F/trailing.safetensors" "trailing.safetensors: file is $((8 + N + 7)) bytes, but header and data end at $((8 + N + 4)): 3 trailing bytes"

# 1 byte less.
st_file "$F/truncated.safetensors" "$J" 3
reject "$F/truncated.safetensors" "truncated.safetensors: file is $((8 + N + 3)) bytes, but the data buffer ends at $((8 + N + 4)): truncated \(1 bytes missing\)"

# ---- directories, the index and the cross-checks -------------------------

S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors
# sharded DIR INDEX: shard 1 holds a, b; shard 2 holds c; then the index.
sharded() {
    mkdir "$1"
    st_file "$1/$S1" "{$U8A,\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}" 6
    st_file "$1/$S2" '{"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4
    printf %s "$2" >"$1/model.safetensors.index.json"
}

# A shard name with a path in it: refused before anything is opened.
sharded "$TMP/up" "{\"weight_map\":{\"a\":\"../$S1\"}}"
reject "$TMP/up" "up/model.safetensors.index.json: weight_map: tensor 'a': shard name '../$S1' is not a plain file name"
sharded "$TMP/sub" "{\"weight_map\":{\"a\":\"sub/$S1\"}}"
reject "$TMP/sub" "sub/model.safetensors.index.json: weight_map: tensor 'a': shard name 'sub/$S1' is not a plain file name"
sharded "$TMP/dotdot" '{"weight_map":{"a":".."}}'
reject "$TMP/dotdot" "dotdot/model.safetensors.index.json: weight_map: tensor 'a': shard name '..' is not a plain file name"

# An index entry whose shard does not exist.
sharded "$TMP/noshard" "{\"weight_map\":{\"a\":\"$S1\",\"b\":\"$S1\",\"c\":\"model-00003-of-00003.safetensors\"}}"
reject "$TMP/noshard" "noshard/model-00003-of-00003.safetensors: shard 'model-00003-of-00003.safetensors' \(listed for tensor 'c'\): No such file or directory"

# An index entry naming the wrong shard.
sharded "$TMP/wrong" "{\"weight_map\":{\"a\":\"$S1\",\"b\":\"$S2\",\"c\":\"$S2\"}}"
reject "$TMP/wrong" "wrong/model.safetensors.index.json: tensor 'b': listed in shard '$S2', which does not hold it \(it is in '$S1'\)"

# An index entry for a tensor no shard holds.
sharded "$TMP/ghost" "{\"weight_map\":{\"a\":\"$S1\",\"b\":\"$S1\",\"c\":\"$S2\",\"d\":\"$S2\"}}"
reject "$TMP/ghost" "ghost/model.safetensors.index.json: tensor 'd': listed in shard '$S2', which does not hold it"

# A tensor of a shard that the index does not list.
sharded "$TMP/unlisted" "{\"weight_map\":{\"a\":\"$S1\",\"c\":\"$S2\"}}"
reject "$TMP/unlisted" "unlisted/$S1: tensor 'b': not listed in the index .*unlisted/model.safetensors.index.json"

# The same tensor twice in the index.
sharded "$TMP/ixdup" "{\"weight_map\":{\"a\":\"$S1\",\"a\":\"$S2\"}}"
reject "$TMP/ixdup" "ixdup/model.safetensors.index.json: duplicate name .*near '\"a\"'"

# An index that is not JSON / has no object weight_map / a bad total_size.
sharded "$TMP/ixjson" '{"weight_map":'
reject "$TMP/ixjson" "ixjson/model.safetensors.index.json: not valid JSON"
sharded "$TMP/ixmap" '{"weight_map":["a"]}'
reject "$TMP/ixmap" "ixmap/model.safetensors.index.json: weight_map is not an object"
sharded "$TMP/ixsize" "{\"metadata\":{\"total_size\":-1},\"weight_map\":{\"a\":\"$S1\"}}"
reject "$TMP/ixsize" "ixsize/model.safetensors.index.json: metadata.total_size is -1, expected a non-negative integer"

# A bad shard in a sharded checkpoint is named with its path.
sharded "$TMP/badshard" "{\"weight_map\":{\"a\":\"$S1\",\"b\":\"$S1\",\"c\":\"$S2\"}}"
st_file "$TMP/badshard/$S2" '{"c":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 5
reject "$TMP/badshard" "badshard/$S2: file is [0-9]+ bytes, but header and data end at [0-9]+: 1 trailing bytes"

# Loose files (no index): the same name in two of them.
mkdir "$TMP/loose"
st_file "$TMP/loose/a.safetensors" "{$U8A}" 4
st_file "$TMP/loose/b.safetensors" "{$U8A}" 4
reject "$TMP/loose" "tensor 'a' is in two shards: .*loose/a.safetensors and .*loose/b.safetensors"

# A directory with no safetensors at all.
mkdir "$TMP/none"
printf '{}' >"$TMP/none/config.json"
reject "$TMP/none" "none: no model.safetensors.index.json, model.safetensors or \*.safetensors file in this directory"

pass

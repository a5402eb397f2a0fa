#!/bin/sh
# verify_header.sh - verify reads every shard's header with the parser
# inspect uses and checks it against the run's records: a header-only
# change (a dtype relabelled, two tensor names swapped) with the checksum
# list and the completion marker forged to match is found (exit 4), and
# apply, run again, redoes the output instead of calling it intact.
. "$TESTS_SRCDIR/cli/lib.sh"

have xxhsum || skip_test "xxhsum (to forge the checksum list) is not installed"
M=$TMP/m
"$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned "$M" || fail "synth"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
expect_exit 0 lox -o "$TMP/ref"
S=model-00001-of-00004.safetensors

# put BYTES FILE OFFSET: overwrite bytes in place
put() {
    printf %s "$1" | dd of="$2" bs=1 seek="$3" conv=notrunc 2>/dev/null
}
# at FILE STRING: byte offset of the first occurrence of STRING
at() {
    grep -boa -- "$2" "$1" | head -n 1 | cut -d: -f1
}
# forge DIR: the checksum list and the marker made to match the files as
# they are now, as someone covering a change would
forge() {
    (cd "$1" && for f in *.safetensors *.json README.md; do xxhsum -H3 "$f"; done) >"$TMP/list"
    # the list in loxstream's order: its own lines, each with the new sum
    while IFS= read -r line; do
        name=${line#XXH3 (}
        name=${name%%) = *}
        grep -F "XXH3 ($name) = " "$TMP/list"
    done <"$1/loxstream.xxh3" >"$TMP/list2"
    cp "$TMP/list2" "$1/loxstream.xxh3"
    lh=$(xxhsum -H3 "$1/loxstream.xxh3" | sed 's/.* = //')
    sed "s/^list .*/list $lh/" "$1/.loxstream/complete" >"$TMP/marker"
    cp "$TMP/marker" "$1/.loxstream/complete"
}

# the forgery itself is sound: an untouched copy, forged, still verifies
cp -r "$TMP/ref" "$TMP/same"
forge "$TMP/same"
expect_exit 0 "$LOXSTREAM" verify "$TMP/same"
(cd "$TMP/same" && xxhsum -c loxstream.xxh3 >/dev/null 2>&1) || fail "the forged list of an untouched copy does not match"

# ---- a dtype relabelled to another valid one (same length: "F16" ) ------
cp -r "$TMP/ref" "$TMP/a"
off=$(at "$TMP/a/$S" '"dtype":"BF16"')
[ -n "$off" ] || fail "no BF16 dtype in $S"
put '"dtype":"F16" ' "$TMP/a/$S" "$off"
forge "$TMP/a"
# independent check that the tampering is what it should be: the list
# matches the files, and inspect reads the relabelled tensor as F16
(cd "$TMP/a" && xxhsum -c loxstream.xxh3 >/dev/null 2>&1) || fail "the forged list does not match"
expect_exit 0 "$LOXSTREAM" inspect -q "$TMP/a/$S"
expect_out '^model\.embed_tokens\.weight	F16	250x64	'
expect_exit 4 "$LOXSTREAM" verify "$TMP/a"
expect_err "verify: $S: its header \\([0-9]+ bytes\\) is not the one the run wrote"
expect_err 'complete but damaged'
# apply does not take it for intact: it redoes the shard, byte for byte
expect_exit 0 lox -o "$TMP/a"
expect_err "$S: its header"
same_output "$TMP/ref" "$TMP/a"
expect_exit 0 "$LOXSTREAM" verify "$TMP/a"

# ---- a dtype the parser rejects ("F16 "): verify says what inspect says --
cp -r "$TMP/ref" "$TMP/b"
put '"dtype":"F16 "' "$TMP/b/$S" "$off"
forge "$TMP/b"
expect_exit 3 "$LOXSTREAM" inspect -q "$TMP/b/$S"
expect_exit 4 "$LOXSTREAM" verify "$TMP/b"
expect_err "verify: $S: not a valid safetensors file \\(inspect rejects it too\\): .*F16 "

# ---- two tensor names swapped, and the identity's header entry removed --
# (as an output written before verify checked headers has none): each
# journal record names its tensor at the bytes the header now gives the
# other one
cp -r "$TMP/ref" "$TMP/c"
q=$(at "$TMP/c/$S" 'self_attn.q_proj')
k=$(at "$TMP/c/$S" 'self_attn.k_proj')
put 'self_attn.k_proj' "$TMP/c/$S" "$q"
put 'self_attn.q_proj' "$TMP/c/$S" "$k"
sed '/^output /s/ header [0-9a-f]*$//' "$TMP/c/.loxstream/identity" >"$TMP/id"
cp "$TMP/id" "$TMP/c/.loxstream/identity"
forge "$TMP/c"
expect_exit 4 "$LOXSTREAM" verify "$TMP/c"
expect_err "verify: $S: tensor 'model\\.layers\\.0\\.self_attn\\.q_proj\\.weight': the header puts it at bytes [0-9]+\\.\\.[0-9]+, its journal record at"
expect_err "tensor 'model\\.layers\\.0\\.self_attn\\.k_proj\\.weight': the header puts it"
pass

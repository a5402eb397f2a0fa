#!/bin/sh
# fifo.sh - a FIFO (or any file that is not a regular file) in place of a
# file of an output directory never makes verify or apply wait: verify
# names it and exits 4; apply refuses (exit 5) the state files it reads
# (journal, identity, completion marker) and a shard it would reopen
# (NAME.partial), and replaces the final-named files it rewrites (side
# files, shards, the checksum list) without opening them.  Also a real
# hostile file (tests/data/real) in place of a shard: verify says that it
# is no valid safetensors file.
. "$TESTS_SRCDIR/cli/lib.sh"

have mkfifo || skip_test "mkfifo is not installed"
have timeout || skip_test "timeout (to stop a hanging run) is not installed"
M=$TMP/m
"$LOXSTREAM" synth -q --preset tiny --seed 3 --no-finetuned "$M" || fail "synth"
lox() { timeout 60 "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
expect_exit 0 lox -o "$TMP/ref"
S=model-00002-of-00004.safetensors
FIFO_MSG='not a regular file \(a FIFO\)'

# fifo_in DIR FILE: FILE of DIR replaced by a FIFO
fifo_in() {
    rm -f "$1/$2"
    mkfifo "$1/$2"
}

for f in config.json "$S" loxstream.xxh3 .loxstream/journal.part-0001-of-0001 \
    .loxstream/identity .loxstream/complete; do
    rm -rf "$TMP/o"
    cp -r "$TMP/ref" "$TMP/o"
    fifo_in "$TMP/o" "$f"
    expect_exit 4 timeout 60 "$LOXSTREAM" verify "$TMP/o"
    expect_err "verify: $TMP/o/$f: $FIFO_MSG|^loxstream: $TMP/o/$f: $FIFO_MSG"
    case $f in
    .loxstream/*)
        expect_exit 5 lox -o "$TMP/o"
        expect_err "$TMP/o/$f: $FIFO_MSG"
        [ -p "$TMP/o/$f" ] || fail "apply removed the FIFO $f it refused"
        NCHECKS=$((NCHECKS + 1))
        ;;
    *)
        # rewritten under its name: the FIFO is replaced, never opened
        expect_exit 0 lox -o "$TMP/o"
        same_output "$TMP/ref" "$TMP/o"
        expect_exit 0 "$LOXSTREAM" verify "$TMP/o"
        ;;
    esac
done

# ---- an incomplete output: a FIFO for a shard apply would reopen ----------
rm -rf "$TMP/p"
expect_exit 0 lox -o "$TMP/p" --part 1/2
ls "$TMP/p"/*.partial >/dev/null 2>&1 || fail "part 1/2 left no .partial shard"
p=$(cd "$TMP/p" && ls *.partial | head -n 1)
fifo_in "$TMP/p" "$p"
expect_exit 4 timeout 60 "$LOXSTREAM" verify "$TMP/p"
expect_err "verify: $TMP/p/$p: $FIFO_MSG"
expect_exit 5 lox -o "$TMP/p" --part 2/2
expect_err "$TMP/p/$p: $FIFO_MSG"

# ---- a real hostile file (header length 1000 in 88 bytes) for a shard ----
rm -rf "$TMP/h"
cp -r "$TMP/ref" "$TMP/h"
cp "$REAL/safetensors-cpp/safetensors_abuse_attempt_1.safetensors" "$TMP/h/$S"
expect_exit 4 "$LOXSTREAM" verify "$TMP/h"
expect_err "verify: $S: not a valid safetensors file \\(inspect rejects it too\\): .*header length 1000 runs past the end of the file \\(88 bytes\\)"
expect_exit 3 "$LOXSTREAM" inspect -q "$TMP/h/$S"
pass

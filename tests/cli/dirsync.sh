#!/bin/sh
# dirsync.sh - a directory fsync that fails is an error, wherever it is.
#
# After a rename, a create or an unlink the entry is durable only once its
# directory is fsync'ed (src/base/fs.c, lx_sync_dir).  The test-only hook
# LOXSTREAM_TEST_DIRSYNC_EIO=N (src/base/testhook.c) fails the N-th
# directory sync of a process with EIO; LOXSTREAM_TEST_TRACE=1 lists them.
# For every directory sync of apply (the identity, the journal, the shards,
# the index, the checksum list and the completion marker), lora and synth:
# a non-zero exit and a message naming the directory; and after an apply
# failure the same command again gives the uninterrupted run's bytes.
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
"$LOXSTREAM" synth -q --preset tiny --no-finetuned --seed 4 "$M" || fail "synth"
apply() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$@"; }
lora() { "$LOXSTREAM" lora -q -j 1 -b "$M/base" -a "$M/aligned" -o "$@"; }
synth() { "$LOXSTREAM" synth -q --preset tiny --seed 4 "$@"; }

# traced CMD OUT: the directories CMD syncs, in order, into $TMP/syncs
traced() {
    LOXSTREAM_TEST_TRACE=1 "$1" "$2" 2>"$TMP/trace.err" || fail "$1: the traced run failed"
    sed -n 's/^loxstream: test: dirsync [0-9]* //p' "$TMP/trace.err" >"$TMP/syncs"
}

# each CMD: inject EIO into each of CMD's directory syncs in turn
each() {
    n=$(wc -l <"$TMP/syncs")
    [ "$n" -gt 0 ] || fail "$1: no directory sync traced"
    i=1
    while [ "$i" -le "$n" ]; do
        dir=$(sed -n "${i}p" "$TMP/syncs" | sed "s|$TMP/$1-trace|$TMP/$1-$i|")
        LOXSTREAM_TEST_DIRSYNC_EIO=$i expect_exit 1 "$1" "$TMP/$1-$i"
        expect_err "^loxstream: $dir: fsync of the directory failed: Input/output error"
        if [ "$1" = apply ]; then
            expect_exit 0 apply "$TMP/$1-$i"
            same_output "$TMP/ref" "$TMP/$1-$i"
            expect_exit 0 "$LOXSTREAM" verify "$TMP/$1-$i"
        fi
        rm -rf "$TMP/$1-$i"
        i=$((i + 1))
    done
    echo "$1: $n directory syncs, each one's failure reported"
}

apply "$TMP/ref" || fail "the uninterrupted run failed"
traced apply "$TMP/apply-trace"
# the completion marker is the last rename, its directory the last sync
tail -n 1 "$TMP/syncs" | grep -qx "$TMP/apply-trace/.loxstream" ||
    fail "the last directory sync of apply is not the marker's: $(tail -n 1 "$TMP/syncs")"
grep -A1 'test: dirsync' "$TMP/trace.err" | grep -q 'test: point [0-9]* marker$' ||
    fail "no directory sync just before the marker's durability point"
each apply

traced lora "$TMP/lora-trace"
each lora

traced synth "$TMP/synth-trace"
each synth

echo "dirsync: $NCHECKS checks passed"

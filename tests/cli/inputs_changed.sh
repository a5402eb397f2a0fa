#!/bin/sh
# An input shard overwritten in place while apply reads it (issue 11, item 1):
# the run stops with exit status 3 naming the file, the tensor being computed
# is not recorded, the output is never completed with mixed bytes, and the
# same command run again gives exactly what a fresh run on the final inputs
# gives.  The race is made deterministic with the test-only pause hook
# (LOXSTREAM_TEST_PAUSE_AT, src/base/testhook.c): the process stops itself
# between the SVD's passes and the output pass of a tensor, the test
# overwrites the shard with another model's shard of the same header (dd
# conv=notrunc: same inode, same size), then lets it go on.
. "$TESTS_SRCDIR/cli/lib.sh"

have dd || skip_test "no dd"
lox() { "$LOXSTREAM" apply -q -j 1 "$@"; }
"$LOXSTREAM" synth -q --preset tiny --seed 1 --no-finetuned --shard-size 200K "$TMP/A" || fail "synth A"
"$LOXSTREAM" synth -q --preset tiny --seed 2 --no-finetuned --shard-size 200K "$TMP/B" || fail "synth B"
S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors
for s in $S1 $S2; do
    cmp -s "$TMP/A/aligned/$s" "$TMP/B/aligned/$s" && fail "the two models' $s are equal"
done


# shard_of CKPT TENSOR: the shard file holding TENSOR
shard_of() {
    "$LOXSTREAM" inspect -q --json "$1" | grep "\"$2\"" | sed 's/.*"shard": *"\([^"]*\)".*/\1/'
}

# race NAME PAUSE SHARDS...: apply on a copy of A, paused at PAUSE, during
# which the aligned SHARDS are overwritten with B's; sets C, OUT, paused.
race() {
    C="$TMP/$1"
    OUT="$TMP/$1.out"
    cp -r "$TMP/A" "$C"
    [ -d /proc/self ] || skip_test "no /proc to see the paused process"
    set +e
    LOXSTREAM_TEST_PAUSE_AT=$2 "$LOXSTREAM" apply -q -j 1 -b "$C/base" -a "$C/aligned" -o "$OUT" \
        >/dev/null 2>"$TMP/err1" &
    pid=$!
    set -e
    wait_stopped "$pid"
    paused=$(sed -n 's/^loxstream: test: paused at [a-z]* [0-9]* (\(.*\))$/\1/p' "$TMP/err1")
    [ -n "$paused" ] || fail "no pause line: $(cat "$TMP/err1")"
    shift 2
    for s in "$@"; do
        dd if="$TMP/B/aligned/$s" of="$C/aligned/$s" conv=notrunc 2>/dev/null
    done
    kill -CONT "$pid"
    set +e
    wait "$pid"
    rc=$?
    set -e
    cp "$TMP/err1" "$TMP/err"
    NCHECKS=$((NCHECKS + 1))
    [ "$rc" = 3 ] || { cat "$TMP/err" >&2; fail "$1: exit status $rc, expected 3"; }
    # never completed, and verify says so
    NCHECKS=$((NCHECKS + 1))
    [ ! -e "$OUT/.loxstream/complete" ] || fail "$1: the output was completed"
    expect_exit 4 "$LOXSTREAM" verify "$OUT"
    # the same command again: the tensors whose inputs changed are computed
    # again; the result is a fresh run's on the final inputs, byte for byte
    expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$C/base" -a "$C/aligned" -o "$OUT"
    lox -b "$C/base" -a "$C/aligned" -o "$OUT.ref" || fail "$OUT: the fresh run failed"
    same_output "$OUT.ref" "$OUT"
    expect_exit 0 "$LOXSTREAM" verify "$OUT"
    cp "$TMP/err1" "$TMP/err" # for the caller's expect_err: the raced run's
}

# 1. During the computation of the second low-rank tensor, its own aligned
#    shard changes: that tensor's first pass and last pass read different
#    bytes.
lox -b "$TMP/A/base" -a "$TMP/A/aligned" -o "$TMP/probe" --report "$TMP/probe.tsv" || fail "probe run"
t=$(awk -F '\t' '$6 == "lowrank" { n++ } n == 2 { print $1; exit }' "$TMP/probe.tsv")
[ -n "$t" ] || fail "no second low-rank tensor"
race mid factored:2 "$(shard_of "$TMP/A/aligned" "$t")"
expect_eq "paused tensor" "$paused" "$t"
expect_err "$C/aligned/$(shard_of "$TMP/A/aligned" "$t"): changed while loxstream read it"
expect_err "tensor '$t' is not recorded"
NCHECKS=$((NCHECKS + 1))
# (the journal after the first, failed, run: the rerun appended to it)
if grep -q "	$t	" "$OUT/.loxstream/journal.part-0001-of-0001"; then
    [ "$(grep -c "	$t	" "$OUT/.loxstream/journal.part-0001-of-0001")" = 1 ] ||
        fail "tensor $t recorded more than once"
fi

# 2. Same, checked on the journal of the failed run itself: nothing is
#    recorded for the paused tensor, the tensors before it are.
C="$TMP/mid2"
cp -r "$TMP/A" "$C"
set +e
LOXSTREAM_TEST_PAUSE_AT=factored:2 "$LOXSTREAM" apply -q -j 1 -b "$C/base" -a "$C/aligned" \
    -o "$TMP/mid2.out" >/dev/null 2>"$TMP/err1" &
pid=$!
set -e
wait_stopped "$pid"
dd if="$TMP/B/aligned/$(shard_of "$TMP/A/aligned" "$t")" of="$C/aligned/$(shard_of "$TMP/A/aligned" "$t")" conv=notrunc 2>/dev/null
kill -CONT "$pid"
set +e
wait "$pid"
rc=$?
set -e
expect_eq "exit status of the raced run" "$rc" 3
J="$TMP/mid2.out/.loxstream/journal.part-0001-of-0001"
NCHECKS=$((NCHECKS + 1))
! grep -q "	$t	" "$J" || fail "the paused tensor $t was recorded"
first=$(awk -F '\t' '$6 == "lowrank" { print $1; exit }' "$TMP/probe.tsv")
NCHECKS=$((NCHECKS + 1))
grep -q "	$first	" "$J" || fail "the tensor before the pause, $first, was not recorded"

# 3. During the last low-rank tensor, a shard whose tensors may all be done
#    already changes: found before completion (at the latest at the finish).
last=$(awk -F '\t' '$6 == "lowrank" { n++; t = $1 } END { print n, t }' "$TMP/probe.tsv")
nlow=${last%% *}
ls=$(shard_of "$TMP/A/aligned" "${last#* }")
other=$S1
[ "$ls" = "$S1" ] && other=$S2
race late "factored:$nlow" "$other"
expect_err "$C/aligned/$other: changed while loxstream read it"

pass

#!/bin/sh
# apply --part I/N: N processes, one after another, in any order or all at
# once, fill one output directory and the last to finish completes it, byte
# for byte the output of a plain run; a part killed and run again, a plain
# run over some parts' work, the partition of the tensors, and the
# refusals (bad values, --restart, other options, the same part twice).
# Kills use the test-only hook LOXSTREAM_TEST_KILL_AT (src/base/testhook.c).
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
lox() { "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
# part DIR I/N [OPTION]...: one part, expected to succeed
part() {
    pd=$1
    pp=$2
    shift 2
    expect_exit 0 lox -o "$pd" --part "$pp" "$@"
}
# complete_ok DIR: verify and xxhsum -c accept it, and it is the reference
complete_ok() {
    same_output "$TMP/ref" "$1"
    expect_exit 0 "$LOXSTREAM" verify "$1"
    expect_err 'complete and intact: 10 files, 21 tensors'
    if have xxhsum; then
        NCHECKS=$((NCHECKS + 1))
        (cd "$1" && xxhsum -c loxstream.xxh3 >/dev/null) || fail "xxhsum -c rejects $1/loxstream.xxh3"
    else
        skipped "xxhsum -c of $1 (xxhsum not found: Debian package xxhash)"
    fi
}
# not_complete DIR: no marker, no shard under its final name, verify says incomplete
not_complete() {
    NCHECKS=$((NCHECKS + 1))
    [ -e "$1/.loxstream/complete" ] && fail "$1 has a completion marker too early"
    for f in "$1"/*.safetensors; do
        [ -e "$f" ] && fail "$1 has a shard under its final name too early"
    done
    for f in "$1"/*.safetensors.partial; do
        [ -e "$f" ] || fail "$1 has no .partial shard"
    done
    [ -e "$1/model.safetensors.index.json" ] && fail "$1 has an index too early"
    expect_exit 4 "$LOXSTREAM" verify "$1"
    expect_err 'incomplete loxstream output'
}
# tensors REPORT: the tensor names of an apply report, sorted
tensors() { tail -n +2 "$1" | cut -f1 | sort -u; }
# flip FILE OFFSET: invert the bits of one byte
flip() {
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    # shellcheck disable=SC2059 # an octal escape built on purpose
    printf "\\$(printf %03o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
# hold LOCKFILE [flock option]: hold the lock in the background until
# release; sets HOLDER (the pid of the process that holds it)
hold() {
    rm -f "$TMP/fifo"
    mkfifo "$TMP/fifo"
    # shellcheck disable=SC2086 # the option, if any, is one word or none
    flock ${2:-} "$1" sh -c "echo \$\$ >'$TMP/fifo'; exec sleep 60" </dev/null >/dev/null 2>&1 &
    read -r HOLDER <"$TMP/fifo"
}
release() {
    kill "$HOLDER" 2>/dev/null || true
    wait
}

# 4 shards of 21 tensors (14 transformed, 7 copied)
"$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned "$M" || fail "synth"
expect_exit 0 lox -q -o "$TMP/ref" --report "$TMP/ref.tsv"
set -- "$TMP"/ref/*.safetensors
expect_eq "shards" $# 4
tensors "$TMP/ref.tsv" >"$TMP/all"
expect_eq "tensors" "$(wc -l <"$TMP/all")" 21

# ---- parts 1, 2, 3 one after another ---------------------------------------
part "$TMP/a" 1/3 --report "$TMP/r1.tsv"
expect_err 'apply: part 1/3 done; waiting for parts 2, 3; the last part to finish completes the output'
not_complete "$TMP/a"
expect_err "incomplete loxstream output: $(tensors "$TMP/r1.tsv" | wc -l) of 21 tensors done"
part "$TMP/a" 2/3 --report "$TMP/r2.tsv"
expect_err 'apply: part 2/3 done; waiting for part 3;'
not_complete "$TMP/a"
part "$TMP/a" 3/3 --report "$TMP/r3.tsv"
expect_err 'apply: part 3/3 done, the last: .* is complete'
complete_ok "$TMP/a"
for p in 1 2 3; do
    NCHECKS=$((NCHECKS + 1))
    [ -e "$TMP/a/.loxstream/journal.part-000$p-of-0003" ] || fail "no journal of part $p"
done
# a part run again on the complete output: nothing to do
part "$TMP/a" 2/3
expect_err 'is complete and intact \(21 tensors checked\): nothing to do'

# ---- the partition: each tensor computed by exactly one part --------------
for p in 1 2 3; do
    tensors "$TMP/r$p.tsv" >"$TMP/t$p"
    NCHECKS=$((NCHECKS + 1))
    [ -s "$TMP/t$p" ] || fail "part $p/3 computed no tensor"
done
sort "$TMP/t1" "$TMP/t2" "$TMP/t3" >"$TMP/union"
expect_eq "tensors computed twice" "$(uniq -d "$TMP/union" | tr '\n' ' ')" ""
cmp -s "$TMP/union" "$TMP/all" || fail "the parts' tensors are not all tensors: $(diff "$TMP/union" "$TMP/all" | tr '\n' ' ')"
NCHECKS=$((NCHECKS + 1))
# contiguous ranges in plan order: parts 1, 2, 3 one after another list the
# tensors in the order of the plain run
in_order() { for r in "$@"; do tail -n +2 "$r" | cut -f1; done | uniq | tr '\n' ' '; }
expect_eq "the parts' tensors in order" "$(in_order "$TMP/r1.tsv" "$TMP/r2.tsv" "$TMP/r3.tsv")" \
    "$(in_order "$TMP/ref.tsv")"
# the same split on every run (it depends on the plan and N only)
rm -rf "$TMP/a2"
part "$TMP/a2" 2/3 -q --report "$TMP/r2b.tsv"
tensors "$TMP/r2b.tsv" | cmp -s - "$TMP/t2" || fail "part 2/3 computed other tensors on a second run"
NCHECKS=$((NCHECKS + 1))

# ---- another order: 3, 1, 2 ------------------------------------------------
part "$TMP/b" 3/3
expect_err 'waiting for parts 1, 2;'
not_complete "$TMP/b"
part "$TMP/b" 1/3
expect_err 'waiting for part 2;'
not_complete "$TMP/b"
part "$TMP/b" 2/3
expect_err 'part 2/3 done, the last'
complete_ok "$TMP/b"

# ---- --part 1/1 is a plain run ---------------------------------------------
part "$TMP/c" 1/1 -q
complete_ok "$TMP/c"
NCHECKS=$((NCHECKS + 1))
set -- "$TMP"/c/.loxstream/journal.*
[ $# = 1 ] && [ "${1##*/}" = journal.part-0001-of-0001 ] || fail "--part 1/1 wrote another journal: $*"

# ---- as many parts as tensors: one each; more parts than tensors: some empty
for p in $(seq 1 21); do
    part "$TMP/d" "$p/21" -q --report "$TMP/d$p.tsv"
    expect_eq "tensors of part $p/21" "$(tail -n +2 "$TMP/d$p.tsv" | wc -l)" 1
done
complete_ok "$TMP/d"
empty=0
for p in $(seq 1 30); do
    part "$TMP/e" "$p/30" -q --report "$TMP/e$p.tsv"
    if [ ! -e "$TMP/e$p.tsv" ]; then
        # no report: the output was complete already (the parts left are empty)
        NCHECKS=$((NCHECKS + 1))
        [ -e "$TMP/e/.loxstream/complete" ] || fail "part $p/30 wrote no report"
        echo tensor >"$TMP/e$p.tsv"
    fi
    [ "$(wc -l <"$TMP/e$p.tsv")" = 1 ] && empty=$((empty + 1))
    # complete exactly when every tensor is done (empty parts need not run)
    done_so_far=$(cat "$TMP"/e*.tsv | grep -v '^tensor' | cut -f1 | sort -u | wc -l)
    NCHECKS=$((NCHECKS + 1))
    if [ "$done_so_far" -lt 21 ]; then
        [ -e "$TMP/e/.loxstream/complete" ] && fail "complete after part $p of 30, with $done_so_far tensors done"
    else
        [ -e "$TMP/e/.loxstream/complete" ] || fail "not complete after part $p of 30, every tensor done"
    fi
done
NCHECKS=$((NCHECKS + 1))
[ "$empty" -gt 0 ] || fail "30 parts of 21 tensors, and no part was empty"
cat "$TMP"/e*.tsv | grep -v '^tensor' | cut -f1 | sort >"$TMP/union30"
cmp -s "$TMP/union30" "$TMP/all" || fail "30 parts: not each tensor exactly once"
NCHECKS=$((NCHECKS + 1))
complete_ok "$TMP/e"

# ---- all parts at once, a few times ----------------------------------------
for round in 1 2 3 4; do
    o="$TMP/f$round"
    pids=""
    for p in 1 2 3; do
        lox -o "$o" --part "$p/3" 2>"$TMP/f$round.$p.err" &
        pids="$pids $!"
    done
    status=0
    for pid in $pids; do
        wait "$pid" || status=$?
    done
    NCHECKS=$((NCHECKS + 1))
    [ "$status" = 0 ] || { cat "$TMP"/f$round.*.err >&2; fail "round $round: a concurrent part failed ($status)"; }
    expect_eq "round $round: parts that completed" "$(cat "$TMP"/f$round.*.err | grep -c 'the last: .* is complete')" 1
    complete_ok "$o"
done
# four parts and part 2 twice: one of the two part 2 runs may be refused
o="$TMP/f5"
pids=""
for p in 1 3 4; do
    lox -q -o "$o" --part "$p/4" 2>"$TMP/f5.$p.err" &
    pids="$pids $!"
done
lox -q -o "$o" --part 2/4 2>"$TMP/f5.2a.err" &
twice_a=$!
lox -q -o "$o" --part 2/4 2>"$TMP/f5.2b.err" &
twice_b=$!
for pid in $pids; do
    wait "$pid" || fail "4 concurrent parts: one failed: $(cat "$TMP"/f5.*.err)"
done
refused=0
for pid in $twice_a $twice_b; do
    set +e
    wait "$pid"
    got=$?
    set -e
    NCHECKS=$((NCHECKS + 1))
    case $got in
    0) ;;
    5) refused=$((refused + 1)) ;;
    *) fail "part 2/4 run twice at once ended with $got: $(cat "$TMP"/f5.2?.err)" ;;
    esac
done
NCHECKS=$((NCHECKS + 1))
[ "$refused" -lt 2 ] || fail "both runs of part 2/4 were refused"
if [ "$refused" = 1 ]; then
    cat "$TMP"/f5.2?.err >"$TMP/err"
    expect_err 'another loxstream process is writing part 2/4 of this output'
fi
if [ ! -e "$o/.loxstream/complete" ]; then
    # a redundant part 2 held the output when the others finished, and finished
    # first itself: it cannot complete what others still write
    part "$o" 2/4 -q
fi
complete_ok "$o"

# ---- killed at durability points, then run again --------------------------
# killed_part DIR I/N KIND:N: a part killed at that point
killed_part() {
    set +e
    LOXSTREAM_TEST_KILL_AT=$3 lox -q -o "$1" --part "$2" 2>/dev/null
    got=$?
    set -e
    NCHECKS=$((NCHECKS + 1))
    [ "$got" = 137 ] || fail "part $2 to be killed at $3 ended with status $got"
}
killed_part "$TMP/g" 2/3 data-sync:3
part "$TMP/g" 1/3
part "$TMP/g" 3/3
expect_err 'waiting for part 2;'
not_complete "$TMP/g"
part "$TMP/g" 2/3
expect_err 'part 2/3: resuming in .* \(2 of its [0-9]+ tensors recorded\)'
expect_err 'part 2/3: 2 tensors kept from the earlier run, [0-9]+ computed \(0 of them again\)'
expect_err 'the last: .* is complete'
complete_ok "$TMP/g"
# a torn record, a shard being created, then the completing part killed
# while renaming shards and after the marker
killed_part "$TMP/h" 1/3 record-half:2
killed_part "$TMP/h" 2/3 create:1
part "$TMP/h" 1/3
expect_err 'waiting for parts 2, 3;'
part "$TMP/h" 2/3
expect_err 'waiting for part 3;'
killed_part "$TMP/h" 3/3 rename:2
expect_exit 4 "$LOXSTREAM" verify "$TMP/h"
part "$TMP/h" 3/3
expect_err 'the last: .* is complete'
complete_ok "$TMP/h"
killed_part "$TMP/i" 1/2 journal-sync:4
part "$TMP/i" 2/2 -q
killed_part "$TMP/i" 1/2 marker
expect_exit 0 "$LOXSTREAM" verify "$TMP/i"
part "$TMP/i" 1/2
expect_err 'is complete and intact \(21 tensors checked\): nothing to do'
complete_ok "$TMP/i"

# ---- parts 1 and 3 only, then a plain run keeps their tensors --------------
part "$TMP/j" 1/3 -q
part "$TMP/j" 3/3 -q
n13=$(($(wc -l <"$TMP/t1") + $(wc -l <"$TMP/t3")))
n2=$(wc -l <"$TMP/t2")
expect_exit 0 lox -o "$TMP/j"
expect_err "resuming the run in .* \($n13 tensors recorded\)"
expect_err "apply: $n13 tensors kept from the earlier run, $n2 computed \(0 of them again\)"
complete_ok "$TMP/j"

# ---- a damaged tensor of another part: not completed until it is redone ---
part "$TMP/k" 1/3 -q
part "$TMP/k" 2/3 -q
first=$(head -n 1 "$TMP/t1")
at=$("$LOXSTREAM" inspect -q --json "$TMP/ref" | grep "\"name\": *\"$first\"" | sed 's/.*"offset": *\([0-9]*\).*/\1/')
shard=$("$LOXSTREAM" inspect -q --json "$TMP/ref" | grep "\"name\": *\"$first\"" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
flip "$TMP/k/$shard.partial" $((at + 5))
expect_exit 1 lox -o "$TMP/k" --part 3/3
expect_err "tensor '$first' \(part 1/3\): its bytes do not match its journal record"
expect_err 'not completed: 1 tensors do not match their journal records; run part 1 again \(or apply without --part\)'
not_complete "$TMP/k"
part "$TMP/k" 1/3
expect_err "tensor '$first': its bytes do not match its journal record: computing it again"
expect_err 'the last: .* is complete'
complete_ok "$TMP/k"

# ---- refusals ----------------------------------------------------------------
for bad in 0/3 4/3 1/0 2 a/b 1/10000 /3 1/ 1/3x -1/3 ' 1/3' ''; do
    expect_exit 2 lox -o "$TMP/l" --part "$bad"
    expect_err "--part '$bad': expected I/N, part I of N, with 1 <= I <= N <= 9999"
done
NCHECKS=$((NCHECKS + 1))
[ -e "$TMP/l" ] && fail "a refused --part created the output directory"
expect_exit 2 lox -o "$TMP/l" --part 2/3 --restart
expect_err '\-\-restart with \-\-part 2/3 would discard the other parts'
part "$TMP/l" 1/3 -q --alpha 1.25
expect_exit 5 lox -o "$TMP/l" --part 2/3 --alpha 2
expect_err 'holds a run with other options or inputs: alpha: journal 1.25, now 2'
NCHECKS=$((NCHECKS + 1))
[ -e "$TMP/l/.loxstream/journal.part-0002-of-0003" ] && fail "a refused part wrote its journal"
part "$TMP/l" 2/3 -q
if have flock; then
    # the same part twice; a plain run while a part runs; a part while a
    # plain run runs (each lock held by flock(1) standing in for the process)
    hold "$TMP/l/.loxstream/lock.part-0003-of-0003"
    expect_exit 5 lox -o "$TMP/l" --part 3/3
    expect_err 'another loxstream process is writing part 3/3 of this output'
    release
    hold "$TMP/l/.loxstream/lock" -s
    expect_exit 5 lox -o "$TMP/l"
    expect_err 'another loxstream process is writing this output'
    release
    hold "$TMP/l/.loxstream/lock" -x
    expect_exit 5 lox -o "$TMP/l" --part 3/3
    expect_err 'another loxstream process is writing this output \(.* is locked by a run without --part\)'
    release
    # a part waits while another prepares or completes the output
    hold "$TMP/l/.loxstream/complete.lock"
    lox -q -o "$TMP/l" --part 3/3 2>"$TMP/l3.err" &
    waiter=$!
    sleep 1
    NCHECKS=$((NCHECKS + 1))
    [ -e "$TMP/l/.loxstream/journal.part-0003-of-0003" ] && fail "a part prepared the output while the completion lock was held"
    kill -0 "$waiter" 2>/dev/null || fail "a part did not wait for the completion lock: $(cat "$TMP/l3.err")"
    kill "$HOLDER"
    wait "$waiter" || fail "the part that waited failed: $(cat "$TMP/l3.err")"
    wait
    complete_ok "$TMP/l"
else
    skipped "the lock checks (flock not found: Debian package util-linux)"
fi
pass

#!/bin/sh
# Crash test: apply is killed with SIGKILL again and again and the same
# command is run again each time; the output must end byte for byte equal
# to an uninterrupted run's, pass verify (and xxhsum -c), and at no moment
# look complete when it is not.
#
# Kills come from a seeded generator: at a durability point chosen by
# number or by kind (the test-only hook LOXSTREAM_TEST_KILL_AT, see
# src/base/testhook.c: tensor data written / synced, journal record half
# written / written / synced, shard created, side file copied, shard
# renamed, index, list, marker), or from outside with kill -9 after a random
# delay.  The first round goes through every kind once.
#
#   CRASH_KILLS  kills in all (default 24; bench/crash.sh runs hundreds)
#   CRASH_SEED   seed of the generator (default 20261128)
#   CRASH_PRESET synth preset of the model (default tiny)
. "$TESTS_SRCDIR/cli/lib.sh"

KILLS=${CRASH_KILLS:-24}
SEED=${CRASH_SEED:-20261128}
PRESET=${CRASH_PRESET:-tiny}
M="$TMP/m"
OUT="$TMP/run"

# rand N: R = a number in [0, N) (an LCG; the shell's arithmetic is 64-bit)
rand() {
    SEED=$(((SEED * 1103515245 + 12345) % 2147483648))
    R=$((SEED / 65536 % $1))
}
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$@"; }

"$LOXSTREAM" synth -q --preset "$PRESET" --seed 11 --no-finetuned "$M" || fail "synth"
lox "$TMP/ref" || fail "the uninterrupted run failed"
LOXSTREAM_TEST_TRACE=1 lox "$TMP/trace" 2>"$TMP/trace.err" || fail "the traced run failed"
points=$(grep -c 'test: point' "$TMP/trace.err")
tensors=$(grep -c 'test: point [0-9]* data-sync$' "$TMP/trace.err")
nshards=$(grep -c 'test: point [0-9]* rename$' "$TMP/trace.err")
nside=$(grep -c 'test: point [0-9]* side$' "$TMP/trace.err")
[ "$tensors" -gt 2 ] && [ "$nshards" -gt 0 ] || fail "unexpected trace: $tensors tensors, $nshards shards"

# After a kill: complete (marker) and intact, or incomplete for verify; and
# any shard under its final name is already the final one.
check_state() {
    if [ -e "$OUT/.loxstream/complete" ]; then
        expect_exit 0 "$LOXSTREAM" verify "$OUT"
    else
        expect_exit 4 "$LOXSTREAM" verify "$OUT"
        expect_err 'incomplete loxstream output|not a loxstream output'
    fi
    for f in "$OUT"/*.safetensors "$OUT"/model.safetensors.index.json; do
        [ -e "$f" ] || continue
        NCHECKS=$((NCHECKS + 1))
        cmp -s "$f" "$TMP/ref/${f##*/}" || fail "after kill $kills ($how): ${f##*/} has its final name but not its final bytes"
    done
}

# Run once with the kill plan in $how; sets status.
attempt() {
    case $how in
    external:*)
        # the binary itself in the background (not a subshell running lox)
        "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$OUT" 2>>"$TMP/runs.err" &
        pid=$!
        sleep "${how#external:}"
        kill -9 $pid 2>/dev/null || true
        set +e
        wait $pid
        status=$?
        set -e
        ;;
    *)
        set +e
        LOXSTREAM_TEST_KILL_AT=$how lox "$OUT" 2>>"$TMP/runs.err"
        status=$?
        set -e
        ;;
    esac
}

# a random kill plan
pick() {
    rand 4
    case $R in
    0)  rand "$points"
        how=$((R + 1)) ;;
    1)  rand 5
        set -- data data-sync record-half record journal-sync
        shift "$R"
        rand "$tensors"
        how="$1:$((R + 1))" ;;
    2)  rand 4
        set -- side rename index list
        shift "$R"
        case $1 in
        side) rand "$((nside > 0 ? nside : 1))"; how="side:$((R + 1))" ;;
        rename) rand "$nshards"; how="rename:$((R + 1))" ;;
        *) how=$1 ;;
        esac ;;
    3)  rand 400
        how=external:$(printf '0.%03d' "$R") ;;
    esac
}

first_round="identity create:2 data:2 record-half:2 data-sync:2 record:2 journal-sync:2 side:1 rename:2 index list marker"
kills=0
rounds=0
while [ "$kills" -lt "$KILLS" ]; do
    rounds=$((rounds + 1))
    rm -rf "$OUT"
    plan=$first_round
    [ "$rounds" -gt 1 ] && plan=""
    tries=0
    while :; do
        tries=$((tries + 1))
        if [ -n "$plan" ]; then
            how=${plan%% *}
            case $plan in *" "*) plan=${plan#* } ;; *) plan="" ;; esac
        elif [ "$rounds" -gt 1 ] && [ "$tries" -le 8 ] && [ "$kills" -lt "$KILLS" ]; then
            pick
        else
            how=none
        fi
        attempt
        if [ "$status" = 137 ]; then
            kills=$((kills + 1))
            check_state
        elif [ "$status" = 0 ]; then
            # the first round's kills must all happen; later ones may come too late
            [ "$how" = none ] || [ "$rounds" -gt 1 ] || fail "the kill at $how did not happen"
            break
        else
            cat "$TMP/runs.err" >&2
            fail "run with kill plan $how ended with status $status"
        fi
    done
    # the round's output: as if never interrupted
    expect_exit 0 "$LOXSTREAM" verify "$OUT"
    for f in "$TMP"/ref/*; do
        NCHECKS=$((NCHECKS + 1))
        cmp "$f" "$OUT/${f##*/}" || fail "round $rounds: ${f##*/} differs from the uninterrupted run's"
    done
    NCHECKS=$((NCHECKS + 1))
    [ "$(ls "$OUT")" = "$(ls "$TMP/ref")" ] || fail "round $rounds: other files than the uninterrupted run's"
    if have xxhsum; then
        NCHECKS=$((NCHECKS + 1))
        (cd "$OUT" && xxhsum -c loxstream.xxh3 >/dev/null) || fail "round $rounds: xxhsum -c failed"
    else
        skipped "round $rounds: xxhsum -c (xxhsum not found: Debian package xxhash)"
    fi
done
echo "crash: $kills kills in $rounds rounds (seed ${CRASH_SEED:-20261128}, $points durability points per run)"
pass

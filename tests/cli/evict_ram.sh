#!/bin/sh
# evict_ram.sh - without a memory limit, apply drops each tensor's input
# pages from the page cache once done when what the run reads and writes
# exceeds the RAM (engine.c's data_exceed_ram; the RAM faked with
# LOXSTREAM_TEST_RAM), and only then; its output pages it drops once on the
# disk in both cases: --stats says so, fincore(1) sees the inputs gone from
# the cache (or kept) and the output gone, and the output is the same
# bytes as a run that keeps the inputs.  factor, whose five output tensors of a
# matrix each hash its inputs for their record, drops them only after the
# last: from a warm cache it reads (getrusage's blocks in, /usr/bin/time)
# nothing again from storage, not the inputs four times over; nor does a
# sweep, whose outputs' records each hash the inputs (the last writer to
# finish a tensor drops its pages); nor do analyze and lora on two lanes,
# whose prefetcher, behind the computation, read dropped pages back in (the
# race is not certain: five runs each).
. "$TESTS_SRCDIR/cli/lib.sh"
command -v fincore >/dev/null 2>&1 || skip_test "no fincore (util-linux)"

"$LOXSTREAM" synth -q --preset small --seed 9 --no-finetuned "$TMP/m" || fail "synth"
M="$TMP/m"
# resident bytes of FILE...: the sum of fincore's RES column
resident() {
    fincore --bytes --noheadings --output RES "$@" | awk '{ s += $1 } END { print s + 0 }'
}
size=$(cat "$M"/aligned/*.safetensors | wc -c)

cat "$M"/base/*.safetensors "$M"/aligned/*.safetensors >/dev/null
expect_exit 0 env LOXSTREAM_TEST_RAM=1000 "$LOXSTREAM" apply -q --stats -b "$M/base" -a "$M/aligned" -o "$TMP/drop"
expect_err 'no memory limit found, read-ahead [0-9.]+ [KMG]iB, pages dropped after each tensor \(the data exceed the RAM\)'
NCHECKS=$((NCHECKS + 1))
r=$(resident "$M"/aligned/*.safetensors)
[ "$r" -lt $((size / 10)) ] || fail "the aligned inputs are still in the page cache: $r of $size bytes"
NCHECKS=$((NCHECKS + 1))
r=$(resident "$TMP"/drop/*.safetensors)
[ "$r" -lt $((size / 10)) ] || fail "the output is still in the page cache: $r of $size bytes"

cat "$M"/base/*.safetensors "$M"/aligned/*.safetensors >/dev/null
expect_exit 0 "$LOXSTREAM" apply -q --stats -b "$M/base" -a "$M/aligned" -o "$TMP/keep"
NCHECKS=$((NCHECKS + 1))
grep -q 'pages dropped after each tensor' "$TMP/err" && fail "input pages dropped with the data within the RAM"
expect_err 'no memory limit found, read-ahead [0-9.]+ [KMG]iB, output pages dropped once on the disk'
NCHECKS=$((NCHECKS + 1))
r=$(resident "$M"/aligned/*.safetensors)
[ "$r" -gt $((size / 2)) ] || fail "the aligned inputs left the page cache: $r of $size bytes"
NCHECKS=$((NCHECKS + 1))
r=$(resident "$TMP"/keep/*.safetensors)
[ "$r" -lt $((size / 10)) ] || fail "the output of the run within the RAM is still in the page cache: $r of $size bytes"
same_output "$TMP/keep" "$TMP/drop"

if [ -x /usr/bin/time ]; then
    in_size=$(cat "$M"/base/*.safetensors "$M"/aligned/*.safetensors | wc -c)
    # dropped WHAT DIV CMD...: from warm inputs, CMD with pages dropped
    # (LOXSTREAM_TEST_RAM) reads less than 1/DIV of them back from storage
    dropped() {
        what=$1 div=$2
        shift 2
        cat "$M"/base/*.safetensors "$M"/aligned/*.safetensors >/dev/null
        LOXSTREAM_TEST_RAM=1000 /usr/bin/time -o "$TMP/time" -f '%I' "$@" >/dev/null 2>"$TMP/err" ||
            fail "$what: $(cat "$TMP/err")"
        NCHECKS=$((NCHECKS + 1))
        blocks=$(tail -n 1 "$TMP/time")
        [ $((blocks * 512)) -lt $((in_size / div)) ] ||
            fail "$what read $((blocks * 512)) bytes from storage for $in_size bytes of cached inputs"
    }
    # gone WHAT: the aligned inputs left the page cache
    gone() {
        NCHECKS=$((NCHECKS + 1))
        r=$(resident "$M"/aligned/*.safetensors)
        [ "$r" -lt $((size / 10)) ] || fail "$1: the aligned inputs are still in the page cache: $r of $size bytes"
    }

    dropped factor 2 "$LOXSTREAM" factor -q -j 2 -b "$M/base" -a "$M/aligned" -o "$TMP/fdrop"
    gone factor
    expect_exit 0 "$LOXSTREAM" factor -q -j 2 -b "$M/base" -a "$M/aligned" -o "$TMP/fkeep"
    same_output "$TMP/fkeep" "$TMP/fdrop"

    mkdir "$TMP/sdrop" "$TMP/skeep"
    dropped "a sweep" 2 "$LOXSTREAM" apply -q -j 2 -b "$M/base" -a "$M/aligned" --alpha 1,2 \
        --rank 3,6 -o "$TMP/sdrop/o-%a-%k"
    gone sweep
    expect_exit 0 "$LOXSTREAM" apply -q -j 2 -b "$M/base" -a "$M/aligned" --alpha 1,2 --rank 3,6 \
        -o "$TMP/skeep/o-%a-%k"
    NCHECKS=$((NCHECKS + 1))
    diff -r "$TMP/skeep" "$TMP/sdrop" >/dev/null || fail "the sweeps with and without evict differ"

    for run in 1 2 3 4 5; do
        dropped "analyze (run $run)" 20 "$LOXSTREAM" analyze -q -j 2 -b "$M/base" -a "$M/aligned"
        rm -rf "$TMP/l"
        dropped "lora (run $run)" 20 "$LOXSTREAM" lora -q -j 2 -b "$M/base" -a "$M/aligned" -o "$TMP/l"
    done
fi
pass

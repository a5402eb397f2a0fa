#!/bin/sh
# anon_peak.sh - apply's peak anonymous memory (RssAnon of /proc/PID/status,
# sampled as bench/run.sh does, here every 10 ms) on a pair whose widest
# matrix is 64 x 32768 (tiny's shapes, --intermediate 32768): a low-rank run
# holds no full-rank row buffer (256 rows x 32768 f32 = 32 MiB, resident
# from the start in every run before session 5: 61-62 MiB there, 28-29 MiB
# after), so its peak stays under 48 MiB; a full-rank run (--rank 0), which
# needs that buffer, shows the sampler sees it (at least 32 MiB).  Not run
# under AddressSanitizer (its quarantine and shadow are not loxstream's),
# nor without /proc/PID/status.
. "$TESTS_SRCDIR/cli/lib.sh"

if command -v ldd >/dev/null 2>&1 && ldd "$LOXSTREAM" 2>/dev/null | grep -q 'libasan'; then
    skip_test "an AddressSanitizer build: its own memory is not loxstream's"
fi
grep -q '^RssAnon:' /proc/self/status 2>/dev/null || skip_test "no RssAnon in /proc/self/status"

M="$TMP/m"
"$LOXSTREAM" synth -q --preset tiny --intermediate 32768 --layers 1 --no-finetuned "$M" ||
    fail "synth"

# peak_anon OUT [OPTION]...: apply into OUT; the peak RssAnon in KiB into $peak
peak_anon() {
    pa_out=$1
    shift
    "$LOXSTREAM" apply -q -j 2 -b "$M/base" -a "$M/aligned" -o "$pa_out" "$@" \
        >"$TMP/out" 2>"$TMP/err" &
    pa_pid=$!
    peak=0
    while kill -0 $pa_pid 2>/dev/null; do
        pa_a=$(awk '/^RssAnon:/ { print $2 }' /proc/$pa_pid/status 2>/dev/null || echo 0)
        [ "${pa_a:-0}" -gt "$peak" ] && peak=$pa_a
        sleep 0.01
    done
    set +e
    wait $pa_pid
    pa_rc=$?
    set -e
    NCHECKS=$((NCHECKS + 1))
    [ "$pa_rc" = 0 ] || { cat "$TMP/err" >&2; fail "apply $* exited $pa_rc"; }
}

# the checker sees a resident buffer: full rank keeps 32 MiB of dW rows
peak_anon "$TMP/full" --rank 0
NCHECKS=$((NCHECKS + 1))
[ "$peak" -ge $((32 << 10)) ] ||
    fail "full rank: peak anonymous memory $peak KiB, expected at least 32 MiB (its row buffer)"
full_peak=$peak

# the defaults (rank 6): no such buffer
peak_anon "$TMP/lox"
NCHECKS=$((NCHECKS + 1))
[ "$peak" -le $((48 << 10)) ] ||
    fail "rank 6: peak anonymous memory $peak KiB, expected at most 48 MiB (a full-rank row buffer allocated for low-rank items?)"

echo "anon_peak: full rank $((full_peak >> 10)) MiB, rank 6 $((peak >> 10)) MiB; $NCHECKS checks passed"

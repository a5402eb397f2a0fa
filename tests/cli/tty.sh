#!/bin/sh
# The progress bar in a real terminal (tmux): at 80 columns no bar is wider
# than the terminal and none is left on the screen as a stale half-line;
# after the terminal shrinks under a drawn bar (SIGWINCH), the bar is
# redrawn to the new width and the visible screen is clean.  LOXSTREAM_TEST_BAR (testhook.h) draws a bar at every update
# and stops the process after the N-th, so that the resize comes at a known
# point, whatever the machine's speed.
. "$TESTS_SRCDIR/cli/lib.sh"
have tmux || skip_test "no tmux"

"$LOXSTREAM" synth -q --preset tiny --seed 2 --no-finetuned "$TMP/m" >/dev/null 2>&1 || fail "synth"

SOCK="$TMP/tmux.sock"
printf 'set -g remain-on-exit on\nset -g status off\nset -g history-limit 5000\n' >"$TMP/tmux.conf"
tm() { tmux -S "$SOCK" -f "$TMP/tmux.conf" "$@"; }
trap 'tm kill-server >/dev/null 2>&1; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT INT TERM

# run_in_tmux NAME COLUMNS STOP [ARGS]: apply [ARGS] in a new tmux window of COLUMNS x 40,
# its output recorded raw in $TMP/NAME.raw, its pid in $TMP/NAME.pid;
# LOXSTREAM_TEST_BAR=STOP.  The command waits for $TMP/NAME.go, so that the
# recording starts first.  apply is a child of the pane's shell, not the
# pane's process itself: tmux continues a pane process that stops.
run_in_tmux() {
    tm new-session -d -s "$1" -x "$2" -y 40 \
        "while [ ! -e '$TMP/$1.go' ]; do sleep 0.05; done; LOXSTREAM_TEST_BAR=$3 \
'$LOXSTREAM' apply ${4:-} -j 1 -b '$TMP/m/base' -a '$TMP/m/aligned' -o '$TMP/$1.out' & \
echo \$! >'$TMP/$1.pid'; wait \$!; echo \$? >'$TMP/$1.rc.tmp'; mv '$TMP/$1.rc.tmp' '$TMP/$1.rc'" ||
        fail "tmux new-session"
    tm pipe-pane -t "$1" -o "cat >'$TMP/$1.raw'" || fail "tmux pipe-pane"
    : >"$TMP/$1.go"
}

# wait_dead NAME: until apply has ended (at most 60 s), with status 0
wait_dead() {
    n=0
    while [ ! -e "$TMP/$1.rc" ]; do
        n=$((n + 1))
        [ $n -lt 1200 ] || fail "$1: apply did not end"
        sleep 0.05
    done
    expect_eq "$1: exit status" "$(cat "$TMP/$1.rc")" 0
}

# screen_ok NAME [-S -]: every line on the screen (wrapped rows joined; with
# -S -, and in the history) is a status line of apply, so no bar, whole or a
# piece of one, was left behind
screen_ok() {
    sc_name=$1
    shift
    tm capture-pane -p -J "$@" -t "$sc_name" | grep -v '^Pane is dead' | grep -v '^$' >"$TMP/$sc_name.screen"
    set -- "$sc_name"
    NCHECKS=$((NCHECKS + 1))
    if grep -v '^loxstream: warning: tensor .*: rank 100 exceeds min' "$TMP/$1.screen" | grep -qv '^apply: '; then
        echo "--- screen of $1:" >&2
        cat "$TMP/$1.screen" >&2
        fail "$1: a stale line is left on the screen"
    fi
    tail -1 "$TMP/$1.screen" | grep -q '^apply: [0-9]* tensors transformed' || fail "$1: no final status line"
}

# widest FILE: the columns of its longest line (UTF-8 code points)
widest() { LC_ALL=C.UTF-8 awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }' "$1"; }

# ---- 80 columns throughout ----
run_in_tmux w80 80 0
wait_dead w80
tr '\r' '\n' <"$TMP/w80.raw" | grep -c 'ETA' >"$TMP/n" || true
nbars=$(cat "$TMP/n")
[ "$nbars" -ge 20 ] || fail "w80: $nbars bars drawn, expected one per tensor"
# every piece of text between carriage returns and line breaks that holds
# a bar (its ETA), escapes removed, fits in 79 columns
tr '\r' '\n' <"$TMP/w80.raw" | grep 'ETA' | sed 's/\x1b\[[0-9]*[AJK]//g' >"$TMP/w80.bars"
w=$(widest "$TMP/w80.bars")
[ "$w" -le 79 ] || fail "w80: a bar of $w columns on an 80-column terminal: $(awk 'length($0) > 79' "$TMP/w80.bars" | head -1)"
# they keep percent, rate and ETA, and a piece of the tensor name
grep -Eq '^apply .*[0-9]+% .*/s ETA [0-9:-]+ (\.\.\.)?[a-z_.0-9]+$' "$TMP/w80.bars" ||
    fail "w80: bars without percent, rate, ETA and name: $(head -2 "$TMP/w80.bars")"
screen_ok w80 -S -
same=$(grep -c 'ETA' "$TMP/w80.screen" || true)
expect_eq "w80: bars left on the screen" "$same" 0

# ---- warnings while the bar is shown (--rank 100: one per tensor) each on
# a line of their own, never after a bar on its line ----
run_in_tmux warn 80 0 "--rank 100"
wait_dead warn
nwarn=$(tr '\r' '\n' <"$TMP/warn.raw" | sed 's/\x1b\[[0-9]*[AJK]//g' | grep -c '^loxstream: warning: tensor .*: rank 100 exceeds min' || true)
[ "$nwarn" -ge 10 ] || fail "warn: $nwarn warnings at the start of a line, expected one per tensor"
screen_ok warn -S -

# ---- 132 columns, shrunk to 80 under a drawn bar ----
run_in_tmux shrink 132 5
n=0
pid=
while [ -z "$pid" ] || [ "$(ps -o stat= -p "$pid" 2>/dev/null | cut -c1)" != T ]; do
    n=$((n + 1))
    [ $n -lt 1200 ] || fail "shrink: apply did not stop after its 5th bar"
    sleep 0.05
    pid=$(cat "$TMP/shrink.pid" 2>/dev/null || true)
done
before=$(wc -c <"$TMP/shrink.raw")
tr '\r' '\n' <"$TMP/shrink.raw" | grep 'ETA' | sed 's/\x1b\[[0-9]*[AJK]//g' | tail -1 >"$TMP/shrink.last"
w=$(widest "$TMP/shrink.last")
[ "$w" -gt 80 ] || fail "shrink: the bar at 132 columns is only $w wide: the resize tests nothing"
tm resize-window -t shrink -x 80 -y 40 || fail "tmux resize-window"
kill -CONT "$pid"
wait_dead shrink
tail -c +"$((before + 1))" "$TMP/shrink.raw" | tr '\r' '\n' | grep 'ETA' | sed 's/\x1b\[[0-9]*[AJK]//g' >"$TMP/shrink.after"
[ -s "$TMP/shrink.after" ] || fail "shrink: no bar after the resize"
w=$(widest "$TMP/shrink.after")
[ "$w" -le 79 ] || fail "shrink: a bar of $w columns after the terminal shrank to 80"
# tmux moves the rows it rewraps above the cursor into its history, out of
# any program's reach: the visible screen must be clean
screen_ok shrink
pass

# lib.sh - shared helpers of the shell tests (sourced, POSIX sh).
# Environment from make check: LOXSTREAM (the built binary), LXCHECK,
# TESTS_SRCDIR (the tests/ folder of the source tree).
set -eu
: "${LOXSTREAM:?run through make check}"
: "${TESTS_SRCDIR:?run through make check}"
REAL="$TESTS_SRCDIR/data/real"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/lxtest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
NCHECKS=0
NSKIPPED=0

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect_exit CODE CMD [ARG]...: run CMD, stdout to $TMP/out, stderr to
# $TMP/err; fail unless it exits with CODE.
expect_exit() {
    want=$1
    shift
    set +e
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    set -e
    NCHECKS=$((NCHECKS + 1))
    if [ "$got" != "$want" ]; then
        echo "command: $*" >&2
        echo "--- stderr:" >&2
        cat "$TMP/err" >&2
        fail "exit status $got, expected $want"
    fi
}

# expect_err PATTERN: the last stderr matches the extended regex PATTERN.
expect_err() {
    NCHECKS=$((NCHECKS + 1))
    grep -Eq -- "$1" "$TMP/err" || {
        echo "--- stderr:" >&2
        cat "$TMP/err" >&2
        fail "stderr does not match /$1/"
    }
}

# expect_out PATTERN: the last stdout matches the extended regex PATTERN.
expect_out() {
    NCHECKS=$((NCHECKS + 1))
    grep -Eq -- "$1" "$TMP/out" || {
        echo "--- stdout:" >&2
        head -50 "$TMP/out" >&2
        fail "stdout does not match /$1/"
    }
}

# expect_eq WHAT GOT WANT
expect_eq() {
    NCHECKS=$((NCHECKS + 1))
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
}

# same_output REF DIR: DIR holds the same files as REF (hidden state aside),
# byte for byte
same_output() {
    NCHECKS=$((NCHECKS + 1))
    (cd "$1" && ls) >"$TMP/ls1"
    (cd "$2" && ls) >"$TMP/ls2"
    cmp -s "$TMP/ls1" "$TMP/ls2" || fail "$2 holds other files than $1: $(diff "$TMP/ls1" "$TMP/ls2" | tr '\n' ' ')"
    for f in "$1"/*; do
        cmp "$f" "$2/${f##*/}" || fail "$2/${f##*/} differs from $1/${f##*/}"
    done
}

# poke_nan CKPT TENSOR ROW COL: overwrite element (ROW, COL) of the f32
# matrix TENSOR of the checkpoint directory CKPT with a NaN, in place.
poke_nan() {
    pn_line=$("$LOXSTREAM" inspect -q --json "$1" | grep "\"$2\"") || fail "poke_nan: no $2 in $1"
    pn_shard=$(printf '%s\n' "$pn_line" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
    pn_offset=$(printf '%s\n' "$pn_line" | sed 's/.*"offset": *\([0-9]*\).*/\1/')
    pn_cols=$(printf '%s\n' "$pn_line" | sed 's/.*"shape": *\[[0-9]*, *\([0-9]*\)\].*/\1/')
    printf '\000\000\300\177' |
        dd of="$1/$pn_shard" bs=1 seek=$((pn_offset + ($3 * pn_cols + $4) * 4)) conv=notrunc 2>/dev/null
}

# wait_stopped PID: until process PID has stopped itself at a test pause
# (LOXSTREAM_TEST_PAUSE_AT: state T in /proc/PID/stat); fails if it ends
# first or never gets there.
wait_stopped() {
    ws_n=0
    while :; do
        ws_state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || fail "process $1 ended before its pause"
        [ "$ws_state" = T ] && return 0
        ws_n=$((ws_n + 1))
        [ "$ws_n" -lt 6000 ] || fail "process $1 never reached its pause"
        sleep 0.05
    done
}

# have TOOL: TOOL is on the PATH.
have() { command -v "$1" >/dev/null 2>&1; }

# Skips.  A test whose main assertion cannot run here calls skip_test: exit
# status 77, which make check reports as SKIP, never as a pass.  A side
# check that cannot run (a missing optional tool, no way to drop a
# privilege) calls skipped: the test may still pass, and says what it did
# not check, in a note now and in its last line.
skip_test() {
    echo "SKIP: $*" >&2
    exit 77
}
skipped() {
    NSKIPPED=$((NSKIPPED + 1))
    echo "note: skipped: $*" >&2
}

# pass: end of a test script.  A script that checked nothing did not pass.
pass() {
    [ "$NCHECKS" -gt 0 ] || skip_test "no check could run"
    if [ "$NSKIPPED" -gt 0 ]; then
        echo "ok: $NCHECKS checks; $NSKIPPED side checks skipped (the notes above say which)"
    else
        echo "ok: $NCHECKS checks"
    fi
    exit 0
}

# aligned_card FILE: an aligned model's README.md whose front matter has
# license, license_name, license_link and language (kept by apply's and
# lora's cards) and keys they drop (card.sh, lora_adapter.sh)
aligned_card() {
    cat >"$1" <<'CARD'
---
license: other
license_name: "llama2: community licence"
license_link: 'https://example.org/it''s/LICENSE'
language:
  - en
  - fr  # and French
tags: [chat, old]
base_model: someone/else
model-index:
- name: chat
  results:
    - task: {type: text-generation}
pipeline_tag: text-generation
---
# The aligned model
CARD
}

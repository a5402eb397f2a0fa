#!/bin/sh
# Within a memory limit: apply in a memory cgroup (v1 or v2, whichever this
# machine has) of 128 MiB, on a pair of 2 x 117 MB whose largest matrix
# needs 11.5 MB of both inputs, finds the limit (--stats), completes, reads
# its inputs from storage about once (read_bytes of /proc/PID/io at most
# 1.1 times the input bytes; before issue 15, 512 MiB of read-ahead in
# 128 MiB read them several times over), writes the bytes of a run without
# a limit (cmp) and verify accepts them.  Needs root and a cgroup file
# system it may write: SKIP otherwise.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/cglib.sh"

LIMIT=$((128 << 20))
M="$TMP/m"
lox() { "$LOXSTREAM" apply -q -j 2 -b "$M/base" -a "$M/aligned" "$@"; }

# an AddressSanitizer build keeps freed memory in quarantine (256 MiB) and
# its shadow beside the heap: its footprint is not loxstream's, and in
# 128 MiB it thrashes for many minutes instead of measuring anything
if command -v ldd >/dev/null 2>&1 && ldd "$LOXSTREAM" 2>/dev/null | grep -q 'libasan'; then
    skip_test "an AddressSanitizer build: its own memory exceeds the limit this test sets"
fi
cg_make $LIMIT || skip_test "no memory cgroup: $CG_WHY"
trap 'cg_remove; rm -rf "$TMP"' EXIT INT TERM

"$LOXSTREAM" synth -q --hidden 1024 --intermediate 2816 --layers 4 --vocab 4096 \
    --shard-size 64M --no-finetuned "$M" || fail "synth"
expect_exit 0 lox -o "$TMP/ref"

in_bytes=$(cat "$M"/base/*.safetensors "$M"/aligned/*.safetensors | wc -c)
uncache "$M"/base/*.safetensors "$M"/aligned/*.safetensors
set +e
cg_run "$TMP/io" "$LOXSTREAM" apply -q --stats -j 2 -b "$M/base" -a "$M/aligned" \
    -o "$TMP/lox" >"$TMP/out" 2>"$TMP/err"
got=$?
set -e
NCHECKS=$((NCHECKS + 1))
[ "$got" = 0 ] || { cat "$TMP/err" >&2; fail "apply in a $LIMIT-byte cgroup (v$CG_VER) exited $got"; }
expect_err "memory limit 128.00 MiB \(cgroup v$CG_VER $CG/memory\.(max|limit_in_bytes)\)"
read_bytes=$(awk '/^read_bytes:/ {print $2}' "$TMP/io")
echo "input $in_bytes bytes, read $read_bytes bytes from storage, cgroup peak $(cg_peak) bytes"
# the inputs were dropped from the cache: a file system that does not count
# reads (tmpfs) cannot show the bound
[ "$read_bytes" -ge $((in_bytes / 2)) ] ||
    skip_test "read_bytes $read_bytes of $in_bytes input bytes: storage reads not counted here (TMPDIR on tmpfs?)"
NCHECKS=$((NCHECKS + 1))
[ "$read_bytes" -le $((in_bytes + in_bytes / 10)) ] ||
    fail "read $read_bytes bytes from storage for $in_bytes input bytes (more than 1.1 times)"
same_output "$TMP/ref" "$TMP/lox"
expect_exit 0 "$LOXSTREAM" verify "$TMP/lox"

# a limit too small for the working memory is refused before any work
cg_remove
cg_make $((32 << 20)) || fail "second cgroup: $CG_WHY"
set +e
cg_run "$TMP/io" "$LOXSTREAM" apply -q -b "$M/base" -a "$M/aligned" -o "$TMP/small" \
    >"$TMP/out" 2>"$TMP/err"
got=$?
set -e
expect_eq "exit status in a 32 MiB cgroup" "$got" 2
expect_err "the memory limit of this process's cgroup, 32.00 MiB \($CG/memory\.(max|limit_in_bytes)\), is too small"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/small" ] || fail "the refused run created its output directory"
pass

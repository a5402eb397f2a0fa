#!/bin/sh
# Resumable, verifiable runs: an apply stopped at a chosen point and run
# again ends with the bytes of an uninterrupted run; other options, changed
# inputs, a foreign or nested output directory, damaged outputs, a write
# failure and too little space are each handled as loxstream(1) says.
# Runs are stopped with the test-only hook LOXSTREAM_TEST_KILL_AT=KIND:N
# (SIGKILL at the N-th durability point of that kind, src/base/testhook.c).
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
# killed_at KIND:N DIR [OPTION]...: a run that is killed at that point
killed_at() {
    at=$1
    shift
    set +e
    LOXSTREAM_TEST_KILL_AT=$at lox -o "$@" 2>/dev/null
    got=$?
    set -e
    NCHECKS=$((NCHECKS + 1))
    [ "$got" = 137 ] || fail "the run to be killed at $at ended with status $got"
}
# flip FILE OFFSET: invert the bits of one byte
flip() {
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    # shellcheck disable=SC2059 # an octal escape built on purpose
    printf "\\$(printf %03o $((255 - b)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}
# tensor_offset DIR NAME: file offset of a tensor's data (inspect --json)
tensor_offset() {
    "$LOXSTREAM" inspect -q --json "$1" | grep "\"name\": *\"$2\"" |
        sed 's/.*"offset": *\([0-9]*\).*/\1/'
}

"$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned "$M" || fail "synth"

# ---- an uninterrupted run: verify and xxhsum -c accept it ---------------
expect_exit 0 lox -o "$TMP/ref"
expect_exit 0 "$LOXSTREAM" verify "$TMP/ref"
expect_err 'complete and intact: 10 files, 21 tensors'
if have xxhsum; then
    (cd "$TMP/ref" && xxhsum -c loxstream.xxh3 >/dev/null) || fail "xxhsum -c rejects loxstream.xxh3"
    NCHECKS=$((NCHECKS + 1))
else
    skipped "xxhsum -c of a complete output (xxhsum not found: Debian package xxhash)"
fi
# run again on the complete output: checked, nothing rewritten
cp -p "$TMP/ref/model-00001-of-00004.safetensors" "$TMP/before"
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/ref"
expect_err 'is complete and intact \(21 tensors checked\): nothing to do'
[ "$TMP/ref/model-00001-of-00004.safetensors" -nt "$TMP/before" ] && fail "a complete shard was rewritten"
expect_exit 4 "$LOXSTREAM" verify "$TMP/m"
expect_err 'not a loxstream output directory'

# ---- stopped after 6 tensors: incomplete everywhere, then resumed -------
killed_at data-sync:7 "$TMP/a"
ls "$TMP/a" | grep -q '\.safetensors$' && fail "an unfinished output has a shard under its final name"
[ -e "$TMP/a/model.safetensors.index.json" ] && fail "an unfinished output has an index"
expect_exit 4 "$LOXSTREAM" verify "$TMP/a"
expect_err 'incomplete loxstream output: 6 of 21 tensors done \(run apply again to resume\)'
expect_exit 3 "$LOXSTREAM" inspect "$TMP/a"
expect_err 'incomplete loxstream output \(run apply again to resume\)'
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/a"
expect_err 'resuming the run in .* \(6 tensors recorded\)'
expect_err '6 tensors kept from the earlier run, 15 computed \(0 of them again\)'
same_output "$TMP/ref" "$TMP/a"
expect_exit 0 "$LOXSTREAM" verify "$TMP/a"

# ---- other options: refused, naming each difference; --restart ----------
killed_at data-sync:4 "$TMP/b"
expect_exit 5 lox -o "$TMP/b" --rank 8 --seed 3 --exclude lm_head
expect_err 'holds a run with other options or inputs: rank: journal 6, now 8; seed: journal 0, now 3; exclude: journal \(none\), now lm_head; use --restart'
expect_exit 5 lox -o "$TMP/b" --exact
expect_err 'method: journal randomized, now exact'
expect_exit 0 lox -o "$TMP/ref8" --rank 8
expect_exit 0 lox -o "$TMP/b" --rank 8 --restart
same_output "$TMP/ref8" "$TMP/b"
expect_exit 0 "$LOXSTREAM" verify "$TMP/b"
# options that do not change the bytes (threads, memory) resume
killed_at data-sync:9 "$TMP/c"
expect_exit 0 "$LOXSTREAM" apply -q -j 2 --max-memory 300M -b "$M/base" -a "$M/aligned" -o "$TMP/c"
same_output "$TMP/ref" "$TMP/c"

# ---- changed inputs -------------------------------------------------------
# a header that changed (same size: "pt" -> "PT" in __metadata__)
cp -r "$M" "$TMP/m2"
M="$TMP/m2"
killed_at data-sync:5 "$TMP/d"
at=$(grep -abo '"format":"pt"' "$M/aligned/model-00002-of-00004.safetensors" | cut -d: -f1)
printf PT | dd of="$M/aligned/model-00002-of-00004.safetensors" bs=1 seek=$((at + 10)) conv=notrunc 2>/dev/null
expect_exit 5 lox -o "$TMP/d"
expect_err 'input aligned/model-00002-of-00004.safetensors: header checksum changed'
# shards of other sizes (a larger vocabulary)
rm -rf "$M"
"$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned --vocab 260 "$M" || fail "synth m2"
expect_exit 5 lox -o "$TMP/d"
expect_err 'input base/model-00001-of-00004.safetensors: size changed \(journal 87424 bytes, now 88704\); input base/model-00004-of-00004.safetensors: size changed'
rm -rf "$M"
# the same header, other data in a tensor already done: that tensor is redone
cp -r "$TMP/m" "$M"
killed_at data-sync:5 "$TMP/e"
flip "$M/aligned/model-00001-of-00004.safetensors" $(($(tensor_offset "$M/aligned" model.layers.0.self_attn.q_proj.weight) + 100))
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/e"
expect_err "tensor 'model.layers.0.self_attn.q_proj.weight': its inputs changed since it was written: computing it again"
expect_exit 0 lox -o "$TMP/ref-m2"
same_output "$TMP/ref-m2" "$TMP/e"
M="$TMP/m"

# ---- directories that are not ours, or inside an input ------------------
mkdir "$TMP/foreign"
echo "my notes" >"$TMP/foreign/notes.txt"
expect_exit 5 lox -o "$TMP/foreign"
expect_err 'not empty and not a loxstream output; loxstream does not overwrite files'
expect_exit 5 lox -o "$TMP/foreign" --restart
[ "$(ls -A "$TMP/foreign")" = notes.txt ] || fail "a refused run wrote into a foreign directory"
expect_eq "foreign file" "$(cat "$TMP/foreign/notes.txt")" "my notes"
expect_exit 5 lox -o "$M/aligned/new/out"
expect_err 'output directory is inside the input'
[ -e "$M/aligned/new" ] && fail "a refused run created a directory inside the input"
expect_exit 5 lox -o "$M/base/"
expect_err 'output directory is the directory of the input'

# ---- a flipped byte in a complete output --------------------------------
cp -r "$TMP/ref" "$TMP/f"
shard=model-00002-of-00004.safetensors
flip "$TMP/f/$shard" $(($(tensor_offset "$TMP/f" model.layers.0.mlp.down_proj.weight) + 7))
expect_exit 4 "$LOXSTREAM" verify "$TMP/f"
expect_err "verify: $shard: tensor 'model.layers.0.mlp.down_proj.weight' \(bytes [0-9]+\.\.[0-9]+\): XXH3 [0-9a-f]{16}, its journal record says [0-9a-f]{16}"
expect_err "verify: $shard: XXH3 [0-9a-f]{16}, loxstream.xxh3 says"
expect_err 'complete but damaged: 2 problems \(1 of 10 files and 1 of 21 tensors do not match\)'
if have xxhsum; then
    (cd "$TMP/f" && xxhsum -c loxstream.xxh3 >/dev/null 2>&1) && fail "xxhsum -c accepts a flipped byte"
    NCHECKS=$((NCHECKS + 1))
else
    skipped "xxhsum -c of a damaged output (xxhsum not found: Debian package xxhash)"
fi
cp -r "$TMP/f" "$TMP/f2"
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/f"
expect_err "tensor 'model.layers.0.mlp.down_proj.weight': its bytes do not match its journal record: computing it again"
expect_err '20 tensors kept from the earlier run, 1 computed \(1 of them again\)'
same_output "$TMP/ref" "$TMP/f"
expect_exit 0 "$LOXSTREAM" verify "$TMP/f"
# killed just after the marker was removed, then while redoing: the same end
killed_at uncomplete "$TMP/f2"
expect_exit 4 "$LOXSTREAM" verify "$TMP/f2"
killed_at data:1 "$TMP/f2"
expect_exit 0 lox -o "$TMP/f2"
same_output "$TMP/ref" "$TMP/f2"

# ---- a flipped byte in an unfinished output, and a damaged journal ------
killed_at data-sync:9 "$TMP/g"
flip "$TMP/g/model-00001-of-00004.safetensors.partial" $(($(tensor_offset "$TMP/ref" model.layers.0.self_attn.k_proj.weight) + 3))
expect_exit 4 "$LOXSTREAM" verify "$TMP/g"
expect_err "verify: model-00001-of-00004.safetensors.partial: tensor 'model.layers.0.self_attn.k_proj.weight'"
expect_err 'incomplete loxstream output: 8 of 21 tensors done, 1 of them damaged'
j="$TMP/g/.loxstream/journal.part-0001-of-0001"
# the 5th record damaged, and a torn line at the end
awk 'NR == 6 { sub(/T\tmodel/, "T\tmodeX") } { print }' "$j" >"$j.new" && mv "$j.new" "$j"
printf 'T\tmodel.layers.1.self_attn.q_proj.weight\tmodel-0000' >>"$j"
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/g"
expect_err 'journal.part-0001-of-0001: 1 damaged records ignored'
expect_err '6 tensors kept from the earlier run, 15 computed \(1 of them again\)'
same_output "$TMP/ref" "$TMP/g"
expect_exit 0 "$LOXSTREAM" verify "$TMP/g"

# ---- forged journal lines, checksums and all: never trusted -------------
# After its first record, a record of a tensor and shard the run does not
# have, and one of the first tensor whose byte range wraps around 2^64 (a
# tensor's last record wins): the first is ignored, the second is damaged,
# and the run ends as an uninterrupted one.  Then a record of an unknown
# tensor in one of the run's own shards, over the bytes of its first
# tensor: apply and verify share one rule (journal.h), so both ignore it,
# before and after the run completes.
if have xxhsum; then
    killed_at data-sync:9 "$TMP/fg"
    j="$TMP/fg/.loxstream/journal.part-0001-of-0001"
    # forge FIELDS: append FIELDS as a journal line, with its XXH3
    forge() {
        fg_body=$(printf '%s\t' "$1")
        printf '%s%s\n' "$fg_body" "$(printf '%s' "$fg_body" | xxhsum -H3 - | sed 's/.* = //')" >>"$j"
    }
    first=$(sed -n 2p "$j" | cut -f1-8)
    forge "$(printf '%s\n' "$first" | awk -F '\t' -v OFS='\t' '{ $2 = "no.such.tensor"; $3 = "no-such-shard.safetensors"; print }')"
    forge "$(printf '%s\n' "$first" | awk -F '\t' -v OFS='\t' '{ $4 = "18446744073709551606"; $5 = "10"; print }')"
    expect_exit 4 "$LOXSTREAM" verify "$TMP/fg"
    expect_err 'incomplete loxstream output: 8 of 21 tensors done \('
    expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/fg"
    expect_err 'journal.part-0001-of-0001: 1 damaged records ignored'
    expect_err '8 tensors kept from the earlier run, 13 computed \(0 of them again\)'
    same_output "$TMP/ref" "$TMP/fg"
    expect_exit 0 "$LOXSTREAM" verify "$TMP/fg"
    killed_at data-sync:9 "$TMP/fu"
    j="$TMP/fu/.loxstream/journal.part-0001-of-0001"
    first=$(sed -n 2p "$j" | cut -f1-8)
    forge "$(printf '%s\n' "$first" | awk -F '\t' -v OFS='\t' '{ $2 = "no.such.tensor"; print }')"
    expect_exit 4 "$LOXSTREAM" verify "$TMP/fu"
    expect_err 'incomplete loxstream output: 8 of 21 tensors done \('
    expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/fu"
    expect_err '8 tensors kept from the earlier run, 13 computed \(0 of them again\)'
    same_output "$TMP/ref" "$TMP/fu"
    expect_exit 0 "$LOXSTREAM" verify "$TMP/fu"
else
    skipped "the forged journal lines (xxhsum not found: Debian package xxhash)"
fi

# ---- a write that fails (file-size limit, no root needed), then resume ---
if have prlimit; then
    "$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned --shard-size 100K "$TMP/big" ||
        fail "synth big"
    # output shards of 87632, 100240 and 77232 bytes: the second passes the limit
    expect_exit 1 prlimit --fsize=95000 "$LOXSTREAM" apply -q -j 1 -b "$TMP/big/base" \
        -a "$TMP/big/aligned" -o "$TMP/h"
    expect_err 'model-00002-of-00003.safetensors.partial: .*File too large; the output is incomplete: fix the cause and run the same command again to resume'
    expect_exit 4 "$LOXSTREAM" verify "$TMP/h"
    expect_err 'incomplete loxstream output: 6 of 21 tensors done'
    expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$TMP/big/base" -a "$TMP/big/aligned" -o "$TMP/h"
    expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$TMP/big/base" -a "$TMP/big/aligned" -o "$TMP/h-ref"
    same_output "$TMP/h-ref" "$TMP/h"
else
    skipped "the write-failure check (prlimit not found: Debian package util-linux)"
fi

# ---- too little space: refused before the first byte --------------------
# (LOXSTREAM_TEST_AVAIL, test-only: the bytes the file system pretends to have)
export LOXSTREAM_TEST_AVAIL=100000
expect_exit 1 lox -o "$TMP/i"
expect_err "not enough free space: the output needs [0-9.]+ KiB more \([0-9.]+ KiB in all\), the file system has 97.66 KiB available"
[ -e "$TMP/i" ] && fail "a run refused for space created its output directory"
# resuming needs only what is missing
unset LOXSTREAM_TEST_AVAIL
killed_at data-sync:16 "$TMP/i"
export LOXSTREAM_TEST_AVAIL=150000
expect_exit 0 lox -o "$TMP/i"
unset LOXSTREAM_TEST_AVAIL
same_output "$TMP/ref" "$TMP/i"

# ---- --restart removes only loxstream's files; one writer at a time ------
cp -r "$TMP/ref" "$TMP/k"
echo "my notes" >"$TMP/k/notes.txt"
killed_at restart "$TMP/k" --restart
expect_exit 4 "$LOXSTREAM" verify "$TMP/k"
expect_exit 0 lox -o "$TMP/k" --restart
expect_eq "user file after --restart" "$(cat "$TMP/k/notes.txt")" "my notes"
rm "$TMP/k/notes.txt"
same_output "$TMP/ref" "$TMP/k"
if have flock; then
    killed_at data-sync:3 "$TMP/l"
    flock "$TMP/l/.loxstream/lock" sleep 3 &
    sleep 0.5
    expect_exit 5 lox -o "$TMP/l"
    expect_err 'another loxstream process is writing this output'
    wait
else
    skipped "the lock check (flock not found: Debian package util-linux)"
fi

# ---- a single-file checkpoint (no index): resumed the same way ----------
g="$REAL/gpt2-lora-run"
one() { "$LOXSTREAM" apply -q -j 1 -b "$g/checkpoint-2000/adapter_model.safetensors" \
    -a "$g/checkpoint-7500/adapter_model.safetensors" --rank 4 "$@"; }
expect_exit 0 one -o "$TMP/n-ref"
set +e
LOXSTREAM_TEST_KILL_AT=data-sync:3 one -o "$TMP/n" 2>/dev/null
set -e
expect_exit 0 one -o "$TMP/n"
same_output "$TMP/n-ref" "$TMP/n"
expect_exit 0 "$LOXSTREAM" verify "$TMP/n"
pass

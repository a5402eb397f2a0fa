#!/bin/sh
# Files that a resumed apply reopens in its output directory (issue 11,
# item 3): a .partial or a journal that is a hard link to another file (an
# input shard, an input's config.json) or a symbolic link is refused with
# exit status 5 before a byte is written, and the input is left intact; a
# temporary file that is a link is replaced, never written through.  Once
# the links are gone the same command completes the output, byte for byte
# a fresh run's.
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
OUT="$TMP/o"
S2=model-00002-of-00002.safetensors
"$LOXSTREAM" synth -q --preset tiny --seed 3 --no-finetuned --shard-size 200K "$M" || fail "synth"
[ -f "$M/aligned/$S2" ] || fail "synth wrote no second shard"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$@"; }
lox "$TMP/ref" || fail "the fresh run"
sums() { cksum "$M/aligned/$S2" "$M/aligned/config.json" "$M/base/$S2"; }
before=$(sums)
expect_exit 0 lox "$OUT" --part 1/2

# a shard's .partial hard-linked to the aligned input shard
rm -f "$OUT/$S2.partial"
ln "$M/aligned/$S2" "$OUT/$S2.partial"
expect_exit 5 lox "$OUT"
expect_err "$OUT/$S2.partial: has 2 names .*does not write through it"
expect_eq "inputs after the hard-linked .partial" "$(sums)" "$before"
expect_exit 5 lox "$OUT" --part 2/2
expect_eq "inputs after the hard-linked .partial (part)" "$(sums)" "$before"

# a symbolic link to the base input shard
rm -f "$OUT/$S2.partial"
ln -s "$M/base/$S2" "$OUT/$S2.partial"
expect_exit 5 lox "$OUT"
expect_err "$OUT/$S2.partial: not a regular file"
expect_eq "inputs after the symlinked .partial" "$(sums)" "$before"
rm -f "$OUT/$S2.partial"

# part 2's journal hard-linked to the input's config.json: a foreign
# journal would be cut to nothing; refused instead
rm -f "$OUT/.loxstream/journal.part-0002-of-0002"
ln "$M/aligned/config.json" "$OUT/.loxstream/journal.part-0002-of-0002"
expect_exit 5 lox "$OUT" --part 2/2
expect_err "journal.part-0002-of-0002: has 2 names"
expect_eq "inputs after the hard-linked journal" "$(sums)" "$before"
rm -f "$OUT/.loxstream/journal.part-0002-of-0002"

# a temporary file of the identity hard-linked to config.json: replaced
ln "$M/aligned/config.json" "$OUT/.loxstream/identity.tmp"
expect_exit 0 lox "$OUT" --part 2/2
expect_eq "inputs after the hard-linked identity.tmp" "$(sums)" "$before"
same_output "$TMP/ref" "$OUT"
expect_exit 0 "$LOXSTREAM" verify "$OUT"

pass

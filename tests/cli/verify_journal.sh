#!/bin/sh
# verify_journal.sh - verify names every journal line that gives no
# record, by journal file and line number, and says which kind: torn (an
# unfinished last line, as a crash leaves), damaged (its checksum does not
# match) or forged (a matching checksum over a line that is no valid
# record).  Such a line is ignored (journal.h), so it alone does not fail a
# complete output; a record it cost is found as a tensor without a record.
. "$TESTS_SRCDIR/cli/lib.sh"

have xxhsum || skip_test "xxhsum (to forge a line's checksum) is not installed"
M=$TMP/m
"$LOXSTREAM" synth -q --preset tiny --seed 4 --no-finetuned "$M" || fail "synth"
expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/ref"
J=.loxstream/journal.part-0001-of-0001
n=$(wc -l <"$TMP/ref/$J" | tr -d ' ')
[ "$n" -eq 22 ] || fail "journal of 21 tensors has $n lines, expected 22"

# ---- torn: an unfinished last line ---------------------------------------
cp -r "$TMP/ref" "$TMP/t"
printf 'T\tmodel.norm.weight\tmodel-00004' >>"$TMP/t/$J"
expect_exit 0 "$LOXSTREAM" verify "$TMP/t"
expect_err "verify: $TMP/t/$J: line 23: torn \\(an unfinished last line"
expect_err 'complete and intact'

# ---- forged: a valid checksum over a record with an impossible range -----
cp -r "$TMP/ref" "$TMP/f"
body=$(printf 'T\tmodel.norm.weight\tmodel-00004-of-00004.safetensors\t99999999999999999999\t8\t0000000000000000\t0000000000000000\t-\t')
sum=$(printf %s "$body" | xxhsum -H3 | sed 's/.* = //; s/ .*//')
printf '%s%s\n' "$body" "$sum" >>"$TMP/f/$J"
expect_exit 0 "$LOXSTREAM" verify "$TMP/f"
expect_err "verify: $TMP/f/$J: line 23: forged or corrupt \\(its checksum matches, but it is not a valid record\\)"
expect_err 'complete and intact'

# ---- damaged: one byte of a record changed (line 5: the 4th record) -------
cp -r "$TMP/ref" "$TMP/d"
sed '5s/\tT*[0-9a-f]\{16\}$/\t0123456789abcdef/' "$TMP/ref/$J" >"$TMP/d/$J"
cmp -s "$TMP/ref/$J" "$TMP/d/$J" && fail "the damage did not change the journal"
expect_exit 4 "$LOXSTREAM" verify "$TMP/d"
expect_err "verify: $TMP/d/$J: line 5: damaged \\(its checksum does not match its bytes\\)"
expect_err 'of its [0-9]+ tensors have a journal record'
expect_err 'complete but damaged'
pass

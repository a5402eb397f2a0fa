#!/bin/sh
# Where a report may go (issue 11, item 2): apply --report refuses (exit 2)
# a path that is an input file, inside an input directory or inside the
# output directory, also through a symbolic or a hard link, before the
# output directory is touched, and the file named is left intact; analyze
# refuses a standard output that is an input file, and --plot, --means and
# standard output that are one file.  A report onto a FIFO
# is written without being emptied first; a regular file elsewhere is
# replaced by the report.
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
S1=model-00001-of-00002.safetensors
"$LOXSTREAM" synth -q --preset tiny --seed 5 --no-finetuned --shard-size 200K "$M" || fail "synth"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
sums() { cksum "$M"/aligned/* "$M"/base/*; }
before=$(sums)

# refuse REPORT PATTERN: exit 2 naming it, inputs intact, no output made
refuse() {
    rm -rf "$TMP/o"
    expect_exit 2 lox -o "$TMP/o" --report "$1"
    expect_err "$2"
    expect_eq "inputs after --report $1" "$(sums)" "$before"
    NCHECKS=$((NCHECKS + 1))
    [ ! -e "$TMP/o" ] || fail "--report $1: the output directory was made"
}
refuse "$M/aligned/config.json" "--report .*config.json: is inside the input directory"
refuse "$M/aligned/$S1" "--report .*$S1: is the input file"
refuse "$M/base/new.tsv" "is inside the input directory $M/base"
ln -s "$M/aligned/$S1" "$TMP/link.tsv"
refuse "$TMP/link.tsv" "--report $TMP/link.tsv: is the input file"
ln "$M/aligned/config.json" "$TMP/hard.tsv"
refuse "$TMP/hard.tsv" "--report $TMP/hard.tsv: is the input file $M/aligned/config.json"
ln -s "$M/aligned" "$TMP/dirlink"
refuse "$TMP/dirlink/tokenizer.json" "is inside the input directory"
refuse "$TMP/o/r.tsv" "is inside the output directory"

# an output being written: its own .partial is refused
expect_exit 0 lox -o "$TMP/p" --part 1/2
partial=$(ls "$TMP/p"/*.partial | head -n 1)
psum=$(cksum <"$partial")
expect_exit 2 lox -o "$TMP/p" --report "$partial"
expect_err "is inside the output directory"
ln "$partial" "$TMP/phard.tsv"
expect_exit 2 lox -o "$TMP/p" --report "$TMP/phard.tsv"
expect_err "in the output directory"
expect_eq "the .partial after the refusals" "$(cksum <"$partial")" "$psum"

# a regular file elsewhere: replaced by the report (no stale tail)
awk 'BEGIN { for (i = 0; i < 20000; i++) print "stale line", i }' >"$TMP/r.tsv"
expect_exit 0 lox -o "$TMP/q" --report "$TMP/r.tsv"
lox -o "$TMP/q2" --report - >"$TMP/r2.tsv" || fail "report to stdout"
# (column 14 is the time taken)
cut -f 1-13 "$TMP/r.tsv" >"$TMP/r.c"
cut -f 1-13 "$TMP/r2.tsv" >"$TMP/r2.c"
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/r.c" "$TMP/r2.c" || fail "the report file is not the report written to stdout"
NCHECKS=$((NCHECKS + 1))
! grep -q "stale line" "$TMP/r.tsv" || fail "the old contents of the report file are left"

# a FIFO: written through, never emptied or replaced
if have mkfifo && mkfifo "$TMP/fifo"; then
    cat "$TMP/fifo" >"$TMP/fromfifo" &
    reader=$!
    expect_exit 0 lox -o "$TMP/f" --report "$TMP/fifo"
    wait "$reader"
    NCHECKS=$((NCHECKS + 1))
    [ "$(head -n 1 "$TMP/fromfifo" | cut -f 1)" = tensor ] || fail "no report came through the FIFO"
    expect_eq "report lines through the FIFO" "$(wc -l <"$TMP/fromfifo")" "$(wc -l <"$TMP/r.tsv")"
else
    skipped "no mkfifo: the FIFO report"
fi

# analyze: a standard output appended to an input file
expect_exit 2 sh -c '"$0" analyze -q -j 1 -b "$1/base" -a "$1/aligned" >>"$1/aligned/config.json"' "$LOXSTREAM" "$M"
expect_err "analyze: standard output: is the input file .*config.json"
expect_eq "inputs after analyze >> config.json" "$(sums)" "$before"

# analyze: --plot, --means and standard output are three files (refused
# before anything is written: the file named keeps its contents)
an() { "$LOXSTREAM" analyze -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
echo keep >"$TMP/keep"
expect_exit 2 an --plot "$TMP/one.svg" --means "$TMP/one.svg"
expect_err "--plot $TMP/one.svg and --means $TMP/one.svg: are the same file"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/one.svg" ] || fail "analyze --plot F --means F: F was written"
ln -s keep "$TMP/keeplink"
expect_exit 2 an --plot "$TMP/keep" --means "$TMP/keeplink"
expect_err "are the same file"
ln -s one.svg "$TMP/dangling"
expect_exit 2 an --plot "$TMP/dangling" --means "$TMP/one.svg"
expect_err "are the same file"
ln "$TMP/keep" "$TMP/keephard"
expect_exit 2 an --means "$TMP/keephard" --plot "$TMP/keep"
expect_err "--plot $TMP/keep and --means $TMP/keephard: are the same file"
expect_exit 2 sh -c '"$0" analyze -q -j 1 -b "$1/base" -a "$1/aligned" --plot "$2" >>"$2"' \
    "$LOXSTREAM" "$M" "$TMP/keep"
expect_err "--plot $TMP/keep: is the file of standard output"
expect_exit 2 sh -c '"$0" analyze -q -j 1 -b "$1/base" -a "$1/aligned" --means "$2" >>"$3"' \
    "$LOXSTREAM" "$M" "$TMP/keeplink" "$TMP/keephard"
expect_err "--means $TMP/keeplink: is the file of standard output"
expect_eq "the file after the refusals" "$(cat "$TMP/keep")" keep
# distinct files, and /dev/null twice, are fine
expect_exit 0 an --plot /dev/null --means /dev/null
an --plot "$TMP/p.svg" --means "$TMP/m.tsv" >"$TMP/a.tsv" || fail "analyze to three files"
NCHECKS=$((NCHECKS + 1))
[ -s "$TMP/p.svg" ] && [ -s "$TMP/m.tsv" ] && [ -s "$TMP/a.tsv" ] || fail "analyze: a file is empty"

pass

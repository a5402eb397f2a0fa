#!/bin/sh
# factor.sh - loxstream factor and apply/lora --factors: the runs from
# stored factors are byte for byte the direct runs (cmp, state files
# included), factors made for other inputs or a rank above K are refused,
# a killed factor run resumes to the uninterrupted run's bytes, -j 2 (two
# lanes, lanes.h) gives -j 1's bytes, a 3-D tensor's included, verify
# checks a factor output, a damaged or incomplete one (or a file other
# than a complete output's factors.safetensors) is refused, an output in
# the factor directory is refused, and the man page's "tune alpha"
# pipeline runs.
. "$TESTS_SRCDIR/cli/lib.sh"

M="$TMP/m"
lox() { "$LOXSTREAM" "$@" -q -j 1; }

"$LOXSTREAM" synth -q --preset tiny --seed 11 --no-finetuned "$M" || fail "synth"
"$LOXSTREAM" synth -q --preset tiny --seed 12 --no-finetuned "$TMP/other" || fail "synth"
"$LOXSTREAM" synth -q --preset tiny --layers 1 --seed 11 --no-finetuned "$TMP/small" || fail "synth"

# ---- the factor output ----------------------------------------------------
expect_exit 0 lox factor -b "$M/base" -a "$M/aligned" -o "$TMP/F" --rank 6
expect_exit 0 "$LOXSTREAM" verify "$TMP/F"
expect_err 'complete and intact'
expect_exit 0 "$LOXSTREAM" inspect "$TMP/F"
# five tensors per transformed matrix of the plan (every 2-D weight of tiny)
nmat=$("$LOXSTREAM" inspect "$M/aligned" | awk -F'\t' '$3 ~ /x/' | wc -l | tr -d ' ')
expect_eq "factor tensors" "$(grep -c '\.lox_' "$TMP/out")" "$((5 * nmat))"
expect_eq "a U of rank 6" "$(awk -F'\t' '$1 == "model.layers.0.mlp.down_proj.weight.lox_U" {print $2, $3}' "$TMP/out")" "F32 64x6"
# the singular values are those apply's report gives for the same matrix
expect_exit 0 lox apply -b "$M/base" -a "$M/aligned" -o "$TMP/d6" --report "$TMP/d6.tsv" \
    --factor-rank 6
sv=$(awk -F'\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
     $1 == "model.layers.0.mlp.down_proj.weight" { print $c["singular_values"] }' "$TMP/d6.tsv")
[ -n "$sv" ] || fail "no singular values in the report"
if have python3; then
    got=$(python3 - "$TMP/F/factors.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
t = h['model.layers.0.mlp.down_proj.weight.lox_S']
s = struct.unpack('<6f', b[8 + n + t['data_offsets'][0]:8 + n + t['data_offsets'][1]])
print(','.join('%.6g' % x for x in s))
EOF
)
    expect_eq "singular values" "$got" "$sv"
    stored_sv=$got
else
    skipped "python3: the stored singular values against the report"
fi

# ---- apply --factors: the direct runs' bytes ------------------------------
# same_state REF DIR: the outputs and their state files are the same bytes
same_state() {
    same_output "$1" "$2"
    for f in identity journal.part-0001-of-0001 complete; do
        NCHECKS=$((NCHECKS + 1))
        cmp "$1/.loxstream/$f" "$2/.loxstream/$f" || fail "$2/.loxstream/$f differs"
    done
}
expect_exit 0 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/f6" \
    --report "$TMP/f6.tsv"
same_state "$TMP/d6" "$TMP/f6"
expect_eq "the report" "$(cut -f 1-13,15- "$TMP/f6.tsv")" "$(cut -f 1-13,15- "$TMP/d6.tsv")"
# a lower rank, another anchor, a sweep of alphas: as --factor-rank 6 runs
# (which certify every rank up to 6, as the factor run does)
expect_exit 0 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/f3-a%a" \
    --rank 3 --alpha 0.5,2 --anchor base
for a in 0.5 2; do
    expect_exit 0 lox apply -b "$M/base" -a "$M/aligned" -o "$TMP/d3-a$a" --rank 3 \
        --factor-rank 6 --alpha "$a" --anchor base
    same_state "$TMP/d3-a$a" "$TMP/f3-a$a"
done

# without --base (--anchor aligned): the weights, index and side files of
# the run with --base; the card names the factor file, and its command
# writes the same bytes again
expect_exit 0 lox apply --factors "$TMP/F" -a "$M/aligned" -o "$TMP/nb" --rank 3 --alpha 0.5
expect_exit 0 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/wb" --rank 3 \
    --alpha 0.5
for f in $(cd "$TMP/wb" && ls); do
    case $f in README.md | loxstream.xxh3) continue ;; esac
    NCHECKS=$((NCHECKS + 1))
    cmp "$TMP/wb/$f" "$TMP/nb/$f" || fail "apply --factors without --base: $f differs"
done
expect_eq "files without --base" "$(cd "$TMP/nb" && ls)" "$(cd "$TMP/wb" && ls)"
NCHECKS=$((NCHECKS + 1))
grep -qF -- "- base: not given; the factors \`$(cd "$TMP/F" && pwd -P)/factors.safetensors\`" \
    "$TMP/nb/README.md" || fail "the card without --base: $(grep -- '- base' "$TMP/nb/README.md")"
expect_exit 0 "$LOXSTREAM" verify "$TMP/nb"
cmd=$(sed -n '/^```sh$/,/^```$/p' "$TMP/nb/README.md" | sed '1d;$d' | tr -d '\\\n' |
    sed "s|OUTDIR|$TMP/nb-again|")
case $cmd in "loxstream apply --factors "*) ;; *) fail "the card's command: $cmd" ;; esac
eval "\"\$LOXSTREAM\" ${cmd#loxstream } -q -j 1" || fail "the card's command failed: $cmd"
same_state "$TMP/nb" "$TMP/nb-again"
# base is the anchor: needed; another aligned model: refused (its shards
# before the output directory is made, its tensors when reached)
expect_exit 2 lox apply --factors "$TMP/F" -a "$M/aligned" -o "$TMP/nb2" --anchor base
expect_err 'apply: --anchor base needs --base'
expect_exit 3 lox apply --factors "$TMP/F" -a "$TMP/other/aligned" -o "$TMP/nb3"
expect_err "made from other inputs: the bytes of tensor '.*' \\(aligned\\) are not"
expect_exit 3 lox apply --factors "$TMP/F" -a "$TMP/small/aligned" -o "$TMP/nb4"
expect_err 'made from other inputs: aligned shard'
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/nb2" ] && [ ! -e "$TMP/nb4" ] || fail "a refused run made its output directory"

# ---- analyze --factors: the direct analyze --factor-rank K ----------------
an() { lox analyze -b "$M/base" -a "$M/aligned" "$@"; }
expect_exit 0 an --factors "$TMP/F" --ranks 1,2,3,6
cp "$TMP/out" "$TMP/af.tsv"
expect_exit 0 an --factor-rank 6 --ranks 1,2,3,6
NCHECKS=$((NCHECKS + 1))
cmp "$TMP/out" "$TMP/af.tsv" || fail "analyze --factors: the TSV differs from --factor-rank 6's"
expect_exit 0 an --factors "$TMP/F" --ranks 1,2 --json
cp "$TMP/out" "$TMP/af.json"
expect_exit 0 an --factor-rank 6 --ranks 1,2 --json
NCHECKS=$((NCHECKS + 1))
cmp "$TMP/out" "$TMP/af.json" || fail "analyze --factors --json differs from --factor-rank 6's"
# the singular values listed are the stored ones
if [ -n "${stored_sv:-}" ]; then
    expect_eq "analyze --factors: singular values" "$(awk -F'\t' 'NR == 1 {
        for (i = 1; i <= NF; i++) c[$i] = i; next }
        $1 == "model.layers.0.mlp.down_proj.weight" { print $c["singular_values"] }' \
        "$TMP/af.tsv")" "$stored_sv"
fi
# ranks above K (the default --ranks go to 8), another K, SVD options: refused
expect_exit 3 an --factors "$TMP/F"
expect_err 'need rank 8, above the factor rank 6 of --factors'
expect_exit 2 an --factors "$TMP/F" --ranks 1,2 --factor-rank 5
expect_err 'factor-rank 5: the factors in .* have rank 6'
expect_exit 2 an --factors "$TMP/F" --ranks 1,2 --seed 3
expect_exit 2 an --factor-rank 4 --ranks 1,2
expect_err 'need rank 6, above the factor rank 4$'
expect_exit 3 lox analyze --factors "$TMP/F" -b "$TMP/small/base" -a "$TMP/small/aligned" \
    --ranks 1,2
expect_err 'made from other inputs'

# one rank K: a list is refused
expect_exit 2 lox factor -b "$M/base" -a "$M/aligned" -o "$TMP/F36" --rank 3,6
expect_err "factor: --rank '3,6': expected one rank K"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/F36" ] || fail "the refused factor run made its output directory"

# ---- lora --factors: the direct adapter -----------------------------------
# (the adapter's card records the command, which names --factors)
expect_exit 0 lox lora -b "$M/base" -a "$M/aligned" -o "$TMP/l6"
expect_exit 0 lox lora --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/lf6"
for f in adapter_model.safetensors adapter_config.json; do
    NCHECKS=$((NCHECKS + 1))
    cmp "$TMP/l6/$f" "$TMP/lf6/$f" || fail "lora --factors: $f differs from the direct run's"
done

# ---- refusals -------------------------------------------------------------
# other inputs with the same headers: the tensor bytes differ
expect_exit 3 lox apply --factors "$TMP/F" -b "$TMP/other/base" -a "$TMP/other/aligned" \
    -o "$TMP/no1"
expect_err 'made from other inputs: the bytes of tensor'
expect_exit 3 lox lora --factors "$TMP/F" -b "$M/base" -a "$TMP/other/aligned" -o "$TMP/no2"
expect_err 'made from other inputs'
# other shards: refused before the output directory is made
expect_exit 3 lox apply --factors "$TMP/F" -b "$TMP/small/base" -a "$TMP/small/aligned" \
    -o "$TMP/no3"
expect_err 'made from other inputs: base shard .* \([0-9]+ bytes, header XXH3 [0-9a-f]{16}\) '
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/no3" ] || fail "the refused run made its output directory"
# a rank above K
expect_exit 3 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/no4" --rank 7
expect_err 'rank 7 exceeds the rank of the factors'
expect_exit 3 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/no4-%k" \
    --rank 2,8
expect_err 'rank 8 exceeds'
expect_exit 3 lox lora --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/no5" --rank 7
expect_err 'rank 7 exceeds'
# SVD options belong to the factors; the factor rank is K
expect_exit 2 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/no6" --seed 3
expect_err 'give none of them'
expect_exit 2 lox apply --factors "$TMP/F" -b "$M/base" -a "$M/aligned" -o "$TMP/no6" \
    --factor-rank 5
expect_err 'factors in .* have rank 6'
# not a factor output: an apply output, an incomplete one
expect_exit 3 lox apply --factors "$TMP/d6" -b "$M/base" -a "$M/aligned" -o "$TMP/no7"
expect_err 'not a factor output: .*loxstream.xxh3 does not list factors.safetensors'
cp -r "$TMP/F" "$TMP/Finc" && rm "$TMP/Finc/.loxstream/complete"
expect_exit 3 lox apply --factors "$TMP/Finc" -b "$M/base" -a "$M/aligned" -o "$TMP/no8"
expect_err 'not a complete factor output'
# a file: only factors.safetensors of a complete factor output (a killed
# run's .partial, a loose copy, that of an incomplete output: refused)
expect_exit 0 lox apply --factors "$TMP/F/factors.safetensors" -b "$M/base" -a "$M/aligned" \
    -o "$TMP/ffile"
same_output "$TMP/f6" "$TMP/ffile"
cp -r "$TMP/F" "$TMP/Fk" && rm "$TMP/Fk/.loxstream/complete"
mv "$TMP/Fk/factors.safetensors" "$TMP/Fk/factors.safetensors.partial"
for f in "$TMP/Fk/factors.safetensors.partial" "$TMP/Finc/factors.safetensors" \
    "$TMP/F/loxstream.xxh3"; do
    expect_exit 3 lox apply --factors "$f" -b "$M/base" -a "$M/aligned" -o "$TMP/no9"
done
expect_err 'not a factor output: pass the directory of a complete loxstream factor run'
cp "$TMP/F/factors.safetensors" "$TMP/loose.safetensors"
expect_exit 3 lox lora --factors "$TMP/loose.safetensors" -b "$M/base" -a "$M/aligned" \
    -o "$TMP/no9"
expect_err 'pass the directory'
expect_exit 3 lox analyze --factors "$TMP/Finc/factors.safetensors" -b "$M/base" \
    -a "$M/aligned" --ranks 1,2
expect_err 'not a complete factor output'
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/no9" ] || fail "a refused run made its output directory"
# damaged factors (verify says 4): refused by apply, lora and analyze
cp -r "$TMP/F" "$TMP/F3"
if have python3; then
    python3 - "$TMP/F3/factors.safetensors" <<'EOF2'
import json, struct, sys
f = open(sys.argv[1], 'r+b')
n = struct.unpack('<Q', f.read(8))[0]
h = json.loads(f.read(n))
f.seek(8 + n + h['model.layers.0.self_attn.q_proj.weight.lox_S']['data_offsets'][0])
f.write(struct.pack('<f', 1000.0))
EOF2
else
    # (any data byte: the header stays valid)
    size=$(wc -c <"$TMP/F3/factors.safetensors")
    printf 'x' | dd of="$TMP/F3/factors.safetensors" bs=1 seek=$((size - 3)) conv=notrunc \
        2>/dev/null
fi
expect_exit 4 "$LOXSTREAM" verify "$TMP/F3"
expect_exit 3 lox apply --factors "$TMP/F3" -b "$M/base" -a "$M/aligned" -o "$TMP/no10"
expect_err "--factors .*/F3: damaged: .*/F3/factors.safetensors has XXH3 [0-9a-f]{16}, .*loxstream.xxh3 says [0-9a-f]{16}"
expect_exit 3 lox apply --factors "$TMP/F3/factors.safetensors" -a "$M/aligned" -o "$TMP/no10"
expect_err 'damaged'
expect_exit 3 lox lora --factors "$TMP/F3" -b "$M/base" -a "$M/aligned" -o "$TMP/no10"
expect_err 'damaged'
expect_exit 3 lox analyze --factors "$TMP/F3" -b "$M/base" -a "$M/aligned" --ranks 1,2
expect_err 'damaged'
# the checksum list edited to match: its XXH3 is not the marker's
sed "s/^\(XXH3 (factors.safetensors) = \).*/\1$(printf %s "$(
    "$LOXSTREAM" verify "$TMP/F3" 2>&1 | sed -n 's/.*factors.safetensors: XXH3 \([0-9a-f]*\),.*/\1/p')")/" \
    "$TMP/F3/loxstream.xxh3" >"$TMP/list" && cp "$TMP/list" "$TMP/F3/loxstream.xxh3"
expect_exit 3 lox apply --factors "$TMP/F3" -b "$M/base" -a "$M/aligned" -o "$TMP/no10"
expect_err 'loxstream.xxh3 changed since the run completed'
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/no10" ] || fail "a refused run made its output directory"
# the output never in the factor directory (--restart would delete it)
cp -r "$TMP/F" "$TMP/F5"
for o in "$TMP/F5" "$TMP/F5/sub" "$TMP/F5/."; do
    expect_exit 5 lox apply --factors "$TMP/F5" -b "$M/base" -a "$M/aligned" -o "$o" --restart
    expect_err 'output directory is (inside|the directory of) the input .*F5'
done
expect_exit 5 lox apply --factors "$TMP/F5/factors.safetensors" -a "$M/aligned" -o "$TMP/F5/sub"
expect_exit 0 "$LOXSTREAM" verify "$TMP/F5"
same_state "$TMP/F" "$TMP/F5"

# ---- a killed factor run resumes to the same bytes -------------------------
for how in identity create:1 data:3 record-half:2 data-sync:7 record:4 journal-sync:11 \
    rename:1 list marker; do
    rm -rf "$TMP/K"
    set +e
    LOXSTREAM_TEST_KILL_AT=$how "$LOXSTREAM" factor -q -j 1 -b "$M/base" -a "$M/aligned" \
        -o "$TMP/K" 2>/dev/null
    status=$?
    set -e
    expect_eq "killed at $how" "$status" 137
    if [ -e "$TMP/K/.loxstream/complete" ]; then
        expect_exit 0 "$LOXSTREAM" verify "$TMP/K"
    else
        expect_exit 4 "$LOXSTREAM" verify "$TMP/K"
    fi
    expect_exit 0 lox factor -b "$M/base" -a "$M/aligned" -o "$TMP/K"
    expect_exit 0 "$LOXSTREAM" verify "$TMP/K"
    same_state "$TMP/F" "$TMP/K"
done
# the kept tensors are said and counted (the journal's header line is its
# first record point: 19 tensors are recorded at the 20th)
rm -rf "$TMP/K"
set +e
LOXSTREAM_TEST_KILL_AT=record:20 "$LOXSTREAM" factor -q -j 1 -b "$M/base" -a "$M/aligned" \
    -o "$TMP/K" 2>/dev/null
set -e
expect_exit 0 "$LOXSTREAM" factor -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/K"
expect_err 'factor: 19 output tensors kept from the earlier run'
same_output "$TMP/F" "$TMP/K"
# two parts give the whole run's bytes
expect_exit 0 lox factor -b "$M/base" -a "$M/aligned" -o "$TMP/P" --part 1/2
expect_exit 4 "$LOXSTREAM" verify "$TMP/P"
expect_exit 0 lox factor -b "$M/base" -a "$M/aligned" -o "$TMP/P" --part 2/2
expect_exit 0 "$LOXSTREAM" verify "$TMP/P"
same_output "$TMP/F" "$TMP/P"
# a damaged factor file is found by verify, and refused by apply --factors
# (which checks it as verify does)
cp -r "$TMP/F" "$TMP/D"
printf 'x' | dd of="$TMP/D/factors.safetensors" bs=1 seek=9000 conv=notrunc 2>/dev/null
expect_exit 4 "$LOXSTREAM" verify "$TMP/D"
expect_exit 3 lox apply --factors "$TMP/D" -b "$M/base" -a "$M/aligned" -o "$TMP/no11"
expect_err 'damaged'

# ---- the man page's "tune alpha" pipeline -----------------------------------
MAN="$TESTS_SRCDIR/../man/loxstream.1"
awk '/^\.Bd -literal/ { b = ""; inb = 1; next }
     /^\.Ed/ { if (b ~ /loxstream factor /) printf "%s", b; inb = 0; next }
     inb { b = b $0 "\n" }' "$MAN" | sed 's/\\e/\\/g' >"$TMP/tune.sh"
grep -q 'apply --factors' "$TMP/tune.sh" || fail "no tune-alpha pipeline in the man page"
mkdir "$TMP/tune"
ln -s "$M/base" "$TMP/tune/base"
ln -s "$M/aligned" "$TMP/tune/aligned"
(cd "$TMP/tune" && loxstream() { "$LOXSTREAM" "$@" -q -j 1; } && . "$TMP/tune.sh") ||
    fail "the man page's tune-alpha pipeline failed"
expect_exit 0 "$LOXSTREAM" verify "$TMP/tune/factors"
# the direct runs that certify the same ranks: one sweep
expect_exit 0 lox apply -b "$M/base" -a "$M/aligned" -o "$TMP/ref-k%k-a%a" --rank 4,6 \
    --alpha 0.5,1.25,2
for a in 0.5 1.25 2; do
    same_output "$TMP/ref-k6-a$a" "$TMP/tune/lox-a$a"
done
same_output "$TMP/ref-k4-a1.25" "$TMP/tune/lox-k4-a1.25"

# ---- -j 2: the matrices on two lanes, the same bytes ----------------------
"$LOXSTREAM" synth -q --preset tiny --experts 4 --fused-experts --seed 13 --no-finetuned \
    "$TMP/moe" || fail "synth"
for j in 1 2; do
    expect_exit 0 "$LOXSTREAM" factor -q -j $j -b "$TMP/moe/base" -a "$TMP/moe/aligned" \
        -o "$TMP/J$j" --rank 5
done
same_output "$TMP/J1" "$TMP/J2"
pass

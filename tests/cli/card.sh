#!/bin/sh
# card.sh - the output's README.md is a model card of its own: YAML front
# matter (parsed as YAML with python3-yaml when it is installed, else
# checked line by line) with base_model the aligned model's absolute path,
# base_model_relation finetune, the tags, and license, license_name,
# license_link and language kept from the aligned card (a YAML subset;
# unparseable front matter keeps nothing, with one warning); a body with
# the method, the parameters, the version, the inputs and the command,
# which run again writes the same bytes.  The card is in loxstream.xxh3
# and verified.  --no-copy-tokenizer leaves the tokenizer's files out.
# The shards' metadata carries tol and seed when they are not the default.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

# meta FILE: the JSON header of a shard into $TMP/out
meta() {
    dd if="$1" bs=1 skip=8 count="$(header_len "$1")" 2>/dev/null >"$TMP/out"
    NCHECKS=$((NCHECKS + 1))
}

"$LOXSTREAM" synth -q --preset tiny --no-finetuned "$TMP/m" >/dev/null 2>&1 || fail "synth"
M=$TMP/m
A=$M/aligned
aligned_card "$A/README.md"
lox() { "$LOXSTREAM" apply -j 1 -b "$M/base" -a "$A" --rank 4 -o "$@"; }
expect_exit 0 lox "$TMP/o" --seed 7
C=$TMP/o/README.md
[ -f "$C" ] || fail "no README.md"
grep -q 'README' "$TMP/err" && fail "a warning about the card: $(cat "$TMP/err")"
abs=$(cd "$A" && pwd -P)
# the front matter: between the first two '---' lines
sed -n '2,/^---$/p' "$C" | sed '$d' >"$TMP/fm.yaml"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    /usr/bin/python3 - "$TMP/fm.yaml" "$abs" <<'PY' || fail "front matter: $(cat "$TMP/fm.yaml")"
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
want = {"base_model": sys.argv[2], "base_model_relation": "finetune",
        "tags": ["loxstream", "lox", "safety"], "license": "other",
        "license_name": "llama2: community licence",
        "license_link": "https://example.org/it's/LICENSE", "language": ["en", "fr"]}
assert d == want, (d, want)
PY
    NCHECKS=$((NCHECKS + 1))
else
    skipped "python3-yaml is not installed: the front matter is not parsed as YAML"
fi
head -1 "$C" | grep -qx -- '---' || fail "no front matter"
grep -qx "base_model: \"$abs\"" "$TMP/fm.yaml" || fail "base_model"
grep -qx 'base_model_relation: finetune' "$TMP/fm.yaml" || fail "base_model_relation"
grep -qx 'license: "other"' "$TMP/fm.yaml" || fail "license"
grep -q 'someone/else\|pipeline_tag\|chat' "$TMP/fm.yaml" && fail "keys of the old card kept"
NCHECKS=$((NCHECKS + 5))
# the body: method, parameters, version, inputs, command; no date
version=$("$LOXSTREAM" --version | head -1 | awk '{print $2}')
for want in '| rank k | 4 |' '| alpha | 1.25 |' '| anchor | aligned |' '| seed | 7 |' \
    '| tol | 0.0003 (at most 12 passes) |' "| loxstream | $version |" 'arxiv.org/abs/2506.15606' \
    "- base: \`$(cd "$M/base" && pwd -P)\`" "model-00001-of-00004.safetensors\`: "; do
    grep -qF -- "$want" "$C" || fail "the card lacks '$want'"
    NCHECKS=$((NCHECKS + 1))
done
grep -Eq '20[0-9][0-9]-[01][0-9]-[0-3][0-9]' "$C" && fail "a date in the card"
# the listed command, run again, writes the same bytes (the card included)
cmd=$(sed -n '/^```sh$/,/^```$/p' "$C" | sed '1d;$d' | tr -d '\\\n' | sed "s|OUTDIR|$TMP/again|")
case $cmd in "loxstream apply "*) ;; *) fail "no command in the card: $cmd" ;; esac
eval "\"\$LOXSTREAM\" ${cmd#loxstream } -q -j 1" || fail "the card's command failed: $cmd"
same_output "$TMP/o" "$TMP/again"
# checksummed and verified
grep -q '^XXH3 (README.md) = ' "$TMP/o/loxstream.xxh3" || fail "the card is not in the list"
NCHECKS=$((NCHECKS + 1))
expect_exit 0 "$LOXSTREAM" verify "$TMP/o"
echo changed >>"$C"
expect_exit 4 "$LOXSTREAM" verify "$TMP/o"
expect_err 'README.md'
# the seed, not the default, in the metadata; the default run's has none
meta "$TMP/o/model-00001-of-00004.safetensors"
expect_out '"loxstream_seed": *"7"'
expect_exit 0 lox "$TMP/d" -q
meta "$TMP/d/model-00001-of-00004.safetensors"
grep -q 'loxstream_seed\|loxstream_tol' "$TMP/out" && fail "a default run's metadata has seed or tol"
expect_out '"loxstream_version"'
expect_exit 0 lox "$TMP/t" -q --tol 1e-3
meta "$TMP/t/model-00001-of-00004.safetensors"
expect_out '"loxstream_tol": *"0.001"'

# ---- front matter outside the subset: nothing kept, one warning ----
printf -- '---\nlicense: mit\nlanguage: &x [en\n---\n' >"$A/README.md"
expect_exit 0 lox "$TMP/bad"
expect_eq "warnings" "$(grep -c 'front matter not read' "$TMP/err")" 1
expect_err "README.md: front matter not read \\(line 3: "
grep -q '^license' "$TMP/bad/README.md" && fail "a license kept from an unparsed card"
printf -- '---\nlicense: mit\n' >"$A/README.md"
expect_exit 0 lox "$TMP/open"
expect_err "no closing"
# no card at all: the card still has its front matter, no warning
rm "$A/README.md"
expect_exit 0 lox "$TMP/none"
expect_eq "stderr" "$(grep -c warning "$TMP/err")" 0
head -1 "$TMP/none/README.md" | grep -qx -- '---' || fail "no front matter"
NCHECKS=$((NCHECKS + 2))

# ---- --no-copy-tokenizer / --copy-tokenizer ----
expect_exit 0 lox "$TMP/notok" --no-copy-tokenizer
[ ! -e "$TMP/notok/tokenizer.json" ] && [ ! -e "$TMP/notok/tokenizer_config.json" ] ||
    fail "--no-copy-tokenizer copied the tokenizer"
cmp "$A/config.json" "$TMP/notok/config.json" || fail "config.json not copied"
grep -q 'tokenizer' "$TMP/notok/loxstream.xxh3" && fail "the list names a tokenizer file"
grep -q 'not copied' "$TMP/err" && fail "the left-out tokenizer is warned about"
NCHECKS=$((NCHECKS + 4))
expect_exit 0 "$LOXSTREAM" verify "$TMP/notok"
expect_exit 0 lox "$TMP/tok" --no-copy-tokenizer --copy-tokenizer
cmp "$A/tokenizer.json" "$TMP/tok/tokenizer.json" || fail "--copy-tokenizer did not copy"
NCHECKS=$((NCHECKS + 1))
pass

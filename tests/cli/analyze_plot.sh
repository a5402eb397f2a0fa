#!/bin/sh
# analyze --plot (issue 12, item 4) and the man page's "choose k" pipeline
# (item 5).  The SVG: well-formed (xmllint), its text (titles, axis titles,
# tick labels, the legend's module types) and its series, which match the
# means the pipeline computes; rendered by rsvg-convert (librsvg2-bin) to a
# PNG of 1100 x 860 that is neither blank nor the same without its text.
# The pipeline is taken from man/loxstream.1 as written and run; its
# reconstructions are held to W_base + the exact rank-r truncation (lxcheck).
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXCHECK:?}"

# the man page's block after the line '.\" test: choose-k', as the shell sees it
MAN="$TESTS_SRCDIR/../man/loxstream.1"
awk '/^\.\\" test: choose-k/ { f = 1; next } f && /^\.Bd/ { next } f && /^\.Ed/ { exit } f' \
    "$MAN" | sed 's/\\e/\\/g' >"$TMP/choose-k.sh"
expect_eq "pipeline lines" "$(grep -c '^loxstream ' "$TMP/choose-k.sh")" 2
mkdir "$TMP/bin"
ln -s "$LOXSTREAM" "$TMP/bin/loxstream"

W="$TMP/w"
"$LOXSTREAM" synth -q --preset tiny --layers 3 --dtype f32 --seed 9 --no-finetuned "$W" \
    >/dev/null 2>&1 || fail "synth"

# run_pipeline SCRIPT DIR: SCRIPT in DIR (holding base and aligned) with
# the built loxstream first on PATH
run_pipeline() {
    (cd "$2" && PATH="$TMP/bin:$PATH" sh -e "$1") >"$TMP/out" 2>"$TMP/err" ||
        fail "the choose-k pipeline $1 failed: $(cat "$TMP/err")"
}
# check_recons DIR RANKS: DIR holds recon-kR for exactly the comma-separated
# RANKS, each W_base + the exact rank-R truncation of dW, and verified
check_recons() {
    got=$(cd "$1" && ls -d recon-k* | sed 's/recon-k//' | sort -n | tr '\n' ',' | sed 's/,$//')
    expect_eq "reconstructions in $1" "$got" "$2"
    LXCHECK_ANCHOR=base
    export LXCHECK_ANCHOR
    for r in $(echo "$2" | tr ',' ' '); do
        expect_exit 0 "$LXCHECK" "$W/base" "$W/aligned" "$1/recon-k$r" "$r" 1 1e-3
        expect_exit 0 "$LOXSTREAM" verify "$1/recon-k$r"
    done
    unset LXCHECK_ANCHOR
}

# ---- the pipeline, as written ----------------------------------------------
run_pipeline "$TMP/choose-k.sh" "$W"
# the ranks it chose: those of --ranks up to the first whose mean energy
# reaches 0.9, from the JSON summary of the same analysis
expect_exit 0 "$LOXSTREAM" analyze -q --json -b "$W/base" -a "$W/aligned" --ranks 1,2,4,6,8,16
tail -1 "$TMP/out" >"$TMP/sum.json"
# ks E: the expected list at threshold E
ks() {
    if command -v jq >/dev/null 2>&1; then
        jq -r --argjson e "$1" '.means.energy | to_entries | reduce .[] as $x ({s: [], done: false};
            if .done then . else .s += [$x.key] | .done = ($x.value >= $e) end) | .s | join(",")' \
            "$TMP/sum.json"
    else
        # without jq, from the --means TSV (whose values analyze_json.sh checks)
        awk -F '\t' -v e="$1" 'NR == 1 { for (i = 4; i <= NF; i++) if ($i ~ /^energy_/) c[i] = substr($i, 8); next }
            $1 == "all" { for (i = 4; i <= NF; i++) if (i in c) { s = s (s == "" ? "" : ",") c[i]; if ($i >= e) break } print s }' \
            "$W/means.tsv"
    fi
}
want=$(ks 0.9)
check_recons "$W" "$want"
# the same pipeline with a threshold the means reach early stops there
sed 's/-v e=0\.9/-v e=0.6/' "$TMP/choose-k.sh" >"$TMP/choose-k-06.sh"
mkdir "$TMP/w6"
ln -s "$W/base" "$TMP/w6/base"
ln -s "$W/aligned" "$TMP/w6/aligned"
run_pipeline "$TMP/choose-k-06.sh" "$TMP/w6"
want6=$(ks 0.6)
[ "$want6" != "$want" ] || fail "threshold 0.6 picks the same ranks ($want): no check of the stop"
check_recons "$TMP/w6" "$want6"

# ---- the chart's text --------------------------------------------------------
SVG="$W/spectrum.svg"
[ -s "$SVG" ] || fail "no $SVG"
if command -v xmllint >/dev/null 2>&1; then
    expect_exit 0 xmllint --noout "$SVG"
    texts=$(xmllint --xpath '//*[local-name()="text"]/text()' "$SVG" 2>/dev/null)
else
    skipped "xmllint not installed (libxml2-utils): the SVG's well-formedness"
    texts=$(sed -n 's/.*<text[^>]*>\([^<]*\)<\/text>.*/\1/p' "$SVG")
fi
for t in "Singular values of dW_align by index" "index i of the singular value" \
    "singular value s_i (log scale)" "Energy captured by the top r" "rank r" \
    "share of ||dW_align||_F^2 in the top r" "Energy captured by the top k = 6, per layer" \
    "layer index" "Module type" q_proj k_proj v_proj o_proj gate_proj up_proj down_proj \
    embeddings lm_head "k = 6" "dashed: k = 6 (--rank)" 0.2 0.4 0.6 0.8; do
    NCHECKS=$((NCHECKS + 1))
    printf '%s\n' "$texts" | grep -qxF -- "$t" || fail "no text '$t' in the chart"
done
NCHECKS=$((NCHECKS + 1))
printf '%s\n' "$texts" | grep -qx other && fail "a legend entry 'other' with no such matrix"
# 9 module types: one band and one line each in the decay panel, one line
# each in the energy panel, and in the layer panel the 7 that have layers
# (embeddings and lm_head have none)
expect_eq "bands" "$(grep -c '<polygon ' "$SVG")" 9
expect_eq "lines" "$(grep -c '<polyline ' "$SVG")" 25
expect_eq "lines of the layer panel" \
    "$(sed -n '/<g id="layers">/,/<g id="legend">/p' "$SVG" | grep -c '<polyline .*points="[^ ]* [^ ]* [^ ]*"')" 7
# the energy panel's q_proj line ends at the mean energy of the top 16 over
# q_proj matrices: y = 90 + 300 (1 - e), e from the summary
if command -v jq >/dev/null 2>&1; then
    e16=$(jq -r '.modules.q_proj.energy["16"]' "$TMP/sum.json")
    ywant=$(awk -v e="$e16" 'BEGIN { printf "%.1f", 90 + 300 * (1 - e) }')
    yend=$(sed -n '/<g id="energy">/,/<g id="layers">/p' "$SVG" | grep '<polyline .*stroke="#1f77b4"' |
        sed 's/.* \([0-9.]*\),\([0-9.]*\)"\/>$/\2/')
    expect_eq "end of the q_proj energy line" "$yend" "$ywant"
else
    skipped "jq not installed: the chart's values against the summary"
fi

# ---- errors ------------------------------------------------------------------
expect_exit 2 "$LOXSTREAM" analyze -q -b "$W/base" -a "$W/aligned" --plot -
expect_err "--plot: '-' would mix into the per-matrix lines"
expect_exit 2 "$LOXSTREAM" analyze -q -b "$W/base" -a "$W/aligned" --plot "$W/aligned/p.svg"
expect_err "--plot $W/aligned/p.svg: is inside the input directory"
[ -e "$W/aligned/p.svg" ] && fail "--plot wrote into the input"

# ---- rendered -------------------------------------------------------------------
command -v rsvg-convert >/dev/null 2>&1 ||
    skip_test "rsvg-convert is not installed (Debian package librsvg2-bin): the chart was checked but not rendered"
# png_size PNG: width x height from the IHDR chunk
png_size() {
    od -An -tu1 -j16 -N8 "$1" | awk '{ printf "%dx%d", (($1 * 256 + $2) * 256 + $3) * 256 + $4,
        (($5 * 256 + $6) * 256 + $7) * 256 + $8 }'
}
expect_exit 0 rsvg-convert -o "$TMP/chart.png" "$SVG"
expect_eq "PNG signature" "$(od -An -c -j1 -N3 "$TMP/chart.png" | tr -d ' ')" "PNG"
expect_eq "PNG size" "$(png_size "$TMP/chart.png")" "1100x860"
# not blank: far larger than the same page with only its white background,
# and its text is drawn (the chart without the text elements renders
# otherwise)
sed -n '1,/<rect x="0" y="0"/p' "$SVG" >"$TMP/blank.svg"
echo '</svg>' >>"$TMP/blank.svg"
expect_exit 0 rsvg-convert -o "$TMP/blank.png" "$TMP/blank.svg"
expect_eq "blank PNG size" "$(png_size "$TMP/blank.png")" "1100x860"
chart=$(wc -c <"$TMP/chart.png") blank=$(wc -c <"$TMP/blank.png")
NCHECKS=$((NCHECKS + 1))
[ "$chart" -gt $((blank * 5)) ] || fail "the chart's PNG ($chart bytes) is not much more than a blank page ($blank bytes)"
sed 's/<text[^>]*>[^<]*<\/text>//' "$SVG" >"$TMP/notext.svg"
expect_exit 0 rsvg-convert -o "$TMP/notext.png" "$TMP/notext.svg"
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/chart.png" "$TMP/notext.png" && fail "the chart's text draws nothing (no font?)"
pass

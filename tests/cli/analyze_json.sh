#!/bin/sh
# analyze --json, several --finetuned, --means (issue 12, item 4).  The JSON
# Lines are parsed by jq and turned into lxrcheck's columns, so every
# singular value, energy, R_align and R_ft (per fine-tuned model) is held to
# an exact SVD (tests/tools/lxrcheck.c); the means of the summary object,
# per module type and per layer, are held to means computed here from the
# per-matrix objects, and the --means TSV to the summary.
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXRCHECK:?}"
command -v jq >/dev/null 2>&1 || skip_test "jq is not installed (Debian package jq)"

"$LOXSTREAM" synth -q --preset tiny --dtype f32 --seed 5 "$TMP/m" >/dev/null 2>&1 || fail "synth"
B="$TMP/m/base" A="$TMP/m/aligned" F="$TMP/m/finetuned"
# a fine-tuned model lacking some matrices: shards 1-3 (embed_tokens, layer 0)
mkdir "$TMP/ftpart"
for i in 1 2 3; do cp "$F/model-0000$i-of-00007.safetensors" "$TMP/ftpart/"; done

# tocheck JSONL SUFFIX: the per-matrix objects as lxrcheck's TSV, with the
# r_ft columns of the model whose keys end in SUFFIX ("" for one model)
tocheck() {
    jq -n -r --arg s "$2" '[inputs | select(.tensor != "*")] as $rows
        | ($rows[0].energy | keys_unsorted) as $ks
        | (["tensor", "matrix", "converged", "frobenius"] + ($ks | map("energy_" + .))
           + ["r_align", "frobenius_ft", "r_ft", "retention", "singular_values"] | @tsv),
          ($rows[] | [.tensor, .matrix, (if .converged then "yes" else "no" end), .frobenius]
           + [.energy[$ks[]]]
           + [.r_align, .["frobenius_ft" + $s], .["r_ft" + $s], .["retention" + $s],
              (.singular_values | map(tostring) | join(","))]
           | map(if . == null then "" else . end) | @tsv)' "$1"
}

# ---- one fine-tuned model: every value against the exact SVD ---------------
expect_exit 0 "$LOXSTREAM" analyze -q --json -b "$B" -a "$A" -f "$F"
cp "$TMP/out" "$TMP/one.jsonl"
expect_exit 0 jq -e . "$TMP/one.jsonl"
expect_eq "lines (16 matrices and the summary)" "$(wc -l <"$TMP/one.jsonl" | tr -d ' ')" 17
expect_eq "last object" "$(tail -1 "$TMP/one.jsonl" | jq -r .tensor)" "*"
# the keys, in order
expect_eq "keys" "$(head -1 "$TMP/one.jsonl" | jq -c keys_unsorted)" \
    '["tensor","matrix","shape","linear","module","layer","rank","passes","converged","err_est","frobenius","singular_values","energy","r_align","frobenius_ft","r_ft","retention"]'
tocheck "$TMP/one.jsonl" "" >"$TMP/one.tsv"
expect_exit 0 "$LXRCHECK" "$B" "$A" "$F" 6 "$TMP/one.tsv" 1e-4
# the checker has teeth on the converted values
jq -c 'if .tensor == "model.layers.1.mlp.up_proj.weight" then .singular_values[12] *= 1.01 else . end' \
    "$TMP/one.jsonl" >"$TMP/bad.jsonl"
tocheck "$TMP/bad.jsonl" "" >"$TMP/bad.tsv"
expect_exit 1 "$LXRCHECK" "$B" "$A" "$F" 6 "$TMP/bad.tsv" 1e-4
# 16 singular values (--top default), descending; energies at the ranks
expect_exit 0 jq -e -s 'map(select(.tensor != "*")) | all(.[];
    (.singular_values | length) == ([16, .shape[0], .shape[1]] | min)
    and (.singular_values as $s | [range(1; $s | length)] | all($s[. - 1] >= $s[.]))
    and (.energy | keys_unsorted) == ["1", "2", "3", "4", "6", "8"]
    and .rank == 6 and (.converged | type) == "boolean")' "$TMP/one.jsonl"
expect_eq "embed_tokens" "$(jq -r 'select(.tensor == "model.embed_tokens.weight") |
    "\(.linear) \(.module) \(.layer)"' "$TMP/one.jsonl")" "false embeddings null"
expect_eq "layer 1 down_proj" "$(jq -r 'select(.tensor == "model.layers.1.mlp.down_proj.weight") |
    "\(.linear) \(.module) \(.layer) \(.shape)"' "$TMP/one.jsonl")" "true down_proj 1 [64,172]"
# --top 4: four values, and the exact check again
expect_exit 0 "$LOXSTREAM" analyze -q --json --top 4 -b "$B" -a "$A"
cp "$TMP/out" "$TMP/top4.jsonl"
expect_exit 0 jq -e -s 'map(select(.tensor != "*")) | all(.[]; (.singular_values | length) == 4)' \
    "$TMP/top4.jsonl"
tocheck "$TMP/top4.jsonl" "" >"$TMP/top4.tsv"
expect_exit 0 "$LXRCHECK" "$B" "$A" - 6 "$TMP/top4.tsv" 1e-4

# ---- three fine-tuned models in one pass -------------------------------------
# model 2 is the aligned model itself: its R_ft is R_align and its retention 1
expect_exit 0 "$LOXSTREAM" analyze --json -b "$B" -a "$A" -f "$F" -f "$A" -f "$TMP/ftpart" \
    --means "$TMP/means.tsv"
cp "$TMP/out" "$TMP/three.jsonl"
cp "$TMP/err" "$TMP/three.err"
expect_exit 0 jq -e . "$TMP/three.jsonl"
for i in 1 2 3; do
    case $i in 1) ft=$F ;; 2) ft=$A ;; 3) ft=$TMP/ftpart ;; esac
    tocheck "$TMP/three.jsonl" "_$i" >"$TMP/three-$i.tsv"
    expect_exit 0 "$LXRCHECK" "$B" "$A" "$ft" 6 "$TMP/three-$i.tsv" 1e-4
done
expect_exit 0 jq -e -s 'map(select(.tensor != "*")) | all(.[];
    ((.r_ft_2 - .r_align) | fabs) < 1e-6 and ((.retention_2 - 1) | fabs) < 1e-6)' "$TMP/three.jsonl"
# model 1 alone gives the same values as model 1 of three
jq -c 'select(.tensor != "*") | [.tensor, .r_ft, .retention]' "$TMP/one.jsonl" >"$TMP/r1.want"
jq -c 'select(.tensor != "*") | [.tensor, .r_ft_1, .retention_1]' "$TMP/three.jsonl" >"$TMP/r1.got"
# (the factor rank is the same, 16: the same factors)
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/r1.want" "$TMP/r1.got" || fail "R_ft of model 1 differs from the single-model run"
expect_eq "matrices of the partial model (null elsewhere)" \
    "$(jq -s 'map(select(.tensor != "*" and .r_ft_3 != null)) | length' "$TMP/three.jsonl")" 8
# one status line per model, naming it
grep -q "analyze: fine-tuned 2 ($A): 15 of the linear matrices in it: mean R_ft" "$TMP/three.err" ||
    fail "no status line for model 2: $(cat "$TMP/three.err")"
grep -q "analyze: fine-tuned 3 ($TMP/ftpart): 7 of the linear matrices in it" "$TMP/three.err" ||
    fail "no status line for model 3: $(cat "$TMP/three.err")"
# the TSV of several models: suffixed columns, each model exact
expect_exit 0 "$LOXSTREAM" analyze -q -b "$B" -a "$A" -f "$F" -f "$TMP/ftpart"
head -1 "$TMP/out" | grep -q '	r_align	frobenius_ft_1	r_ft_1	retention_1	frobenius_ft_2	r_ft_2	retention_2	singular_values$' ||
    fail "header with two models: $(head -1 "$TMP/out")"
for i in 1 2; do
    awk -F '\t' -v OFS='\t' -v s="_$i" 'NR == 1 { for (c = 1; c <= NF; c++) if ($c ~ /_[0-9]+$/) {
        if (substr($c, length($c) - length(s) + 1) == s) $c = substr($c, 1, length($c) - length(s))
        else $c = "other" } } { print }' "$TMP/out" >"$TMP/two-$i.tsv"
done
expect_exit 0 "$LXRCHECK" "$B" "$A" "$F" 6 "$TMP/two-1.tsv" 1e-4
expect_exit 0 "$LXRCHECK" "$B" "$A" "$TMP/ftpart" 6 "$TMP/two-2.tsv" 1e-4

# ---- the means of the summary: from the per-matrix objects ------------------
tail -1 "$TMP/three.jsonl" >"$TMP/sum.json"
expect_eq "summary counts" "$(jq -c '[.matrices, .unconverged, .rank, .ranks, (.finetuned | length)]' \
    "$TMP/sum.json")" "[16,0,6,[1,2,3,4,6,8],3]"
# want GROUP-FILTER: {key: mean} over the rows the filter selects, as the
# summary spells a group (nulls left out of the R_ft means)
jq -n '[inputs] | map(select(.tensor != "*")) as $rows
    | def mean(f): (map(f | select(. != null))) as $v
        | if ($v | length) == 0 then null else ($v | add / length) end;
    def group: . as $g | {matrices: length, r_align: mean(.r_align),
        energy: ([.[0].energy | keys_unsorted[] | . as $k
                  | {key: $k, value: ($g | mean(.energy[$k]))}] | from_entries)};
    def withft: . as $g | reduce ("1", "2", "3") as $i ({};
        . + {("matrices_ft_" + $i): ($g | map(select(.["r_ft_" + $i] != null)) | length),
             ("r_ft_" + $i): ($g | mean(.["r_ft_" + $i])),
             ("retention_" + $i): ($g | mean(.["retention_" + $i]))});
    def full: group + withft;
    {means: ($rows | map(select(.linear)) | full),
     modules: ($rows | group_by(.module) | map({key: .[0].module, value: full}) | from_entries),
     layers: ($rows | map(select(.layer != null)) | group_by(.layer)
              | map({key: (.[0].layer | tostring), value: full}) | from_entries)}' \
    "$TMP/three.jsonl" >"$TMP/want.json"
# every number of the summary's groups within 1e-8 of the mean computed here
# (and a summary with one mean off by 1e-6 fails)
same_means() {
    jq -e -n --slurpfile w "$TMP/want.json" --slurpfile g "$1" '
    def close(a; b): if (a | type) == "number" and (b | type) == "number"
        then ((a - b) | fabs) <= 1e-8 * (1 + (b | fabs)) else a == b end;
    ($w[0] | [paths(type != "object" and type != "array")]) as $ps
    | ($ps | length) > 100 and
      ($g[0] | [paths(type != "object" and type != "array")] | map(select(.[0] == "means" or .[0] == "modules"
        or .[0] == "layers")) | length) == ($ps | length) and
      all($ps[]; . as $p | close($g[0] | getpath($p); $w[0] | getpath($p)))'
}
expect_exit 0 same_means "$TMP/sum.json"
jq -c '.modules.v_proj.r_ft_1 += 1e-6' "$TMP/sum.json" >"$TMP/sum-bad.json"
expect_exit 1 same_means "$TMP/sum-bad.json"
expect_eq "module types" "$(jq -c '.modules | keys_unsorted' "$TMP/sum.json")" \
    '["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj","embeddings","lm_head"]'
expect_eq "layers" "$(jq -c '[.layers | to_entries[] | [.key, .value.matrices]]' "$TMP/sum.json")" \
    '[["0",7],["1",7]]'
expect_eq "means over the linear matrices" "$(jq -c '.means | [.matrices, .matrices_ft_3]' "$TMP/sum.json")" \
    "[15,7]"
# --means: the same means as a TSV (6 decimals), one line per group
expect_eq "--means lines" "$(wc -l <"$TMP/means.tsv" | tr -d ' ')" 13
expect_exit 0 jq -e -n -R --slurpfile S "$TMP/sum.json" '$S[0] as $s
    | (input | split("\t")) as $h
    | [inputs | split("\t") as $f
       | (if $f[0] == "all" then $s.means elif $f[0] == "module" then $s.modules[$f[1]]
          else $s.layers[$f[1]] end) as $g
       | range(2; $h | length) as $c | $h[$c] as $key
       | ($g | if ($key | startswith("energy_")) then .energy[$key[7:]] else .[$key] end) as $want
       | if $want == null then $f[$c] == "" else (($f[$c] | tonumber) - $want | fabs) <= 1e-6 end]
    | length > 100 and all' "$TMP/means.tsv"
expect_eq "--means first line" "$(sed -n 2p "$TMP/means.tsv" | cut -f1-3)" "all	*	15"

# ---- module types and layers of Mixtral's names ---------------------------------
"$LOXSTREAM" synth -q --preset mixtral --hidden 64 --intermediate 32 --layers 2 --vocab 50 \
    --heads 4 --kv-heads 2 --experts 2 --dtype f32 --no-finetuned "$TMP/mx" >/dev/null 2>&1 ||
    fail "synth mixtral"
expect_exit 0 "$LOXSTREAM" analyze -q --json -b "$TMP/mx/base" -a "$TMP/mx/aligned"
jq -r 'select(.tensor != "*") | "\(.tensor) \(.module) \(.layer)"' "$TMP/out" >"$TMP/mx.types"
for want in "model.layers.1.block_sparse_moe.experts.1.w1.weight gate_proj 1" \
    "model.layers.1.block_sparse_moe.experts.1.w3.weight up_proj 1" \
    "model.layers.0.block_sparse_moe.experts.0.w2.weight down_proj 0" \
    "model.layers.0.block_sparse_moe.gate.weight other 0" "lm_head.weight lm_head null"; do
    NCHECKS=$((NCHECKS + 1))
    grep -qxF "$want" "$TMP/mx.types" || fail "module type: no line '$want' in $(cat "$TMP/mx.types")"
done

# ---- without the new options the outputs are those of before -----------------
# (analyze.sh checks the TSV's columns; here: --means alone changes no byte
# of stdout, and the stderr lines of one model stay one line)
expect_exit 0 "$LOXSTREAM" analyze -q -b "$B" -a "$A" -f "$F"
cp "$TMP/out" "$TMP/plain.tsv"
expect_exit 0 "$LOXSTREAM" analyze -q -b "$B" -a "$A" -f "$F" --means "$TMP/m2.tsv"
NCHECKS=$((NCHECKS + 1))
cmp -s "$TMP/out" "$TMP/plain.tsv" || fail "--means changed the TSV on stdout"

# ---- errors --------------------------------------------------------------------
expect_exit 2 "$LOXSTREAM" analyze -b "$B" -a "$A" --json --top 0
expect_err '--top'
expect_exit 2 "$LOXSTREAM" analyze -b "$B" -a "$A" --means -
expect_err "--means: '-' would mix into the per-matrix lines"
expect_exit 2 "$LOXSTREAM" analyze -q -b "$B" -a "$A" --means "$A/means.tsv"
expect_err "--means $A/means.tsv: is inside the input directory"
expect_exit 2 "$LOXSTREAM" analyze -q -b "$B" -a "$A" -f "$F" --means "$F/x.tsv"
expect_err "is inside the input directory"
[ -e "$F/x.tsv" ] && fail "--means wrote into the fine-tuned model"
# the second of two models shares nothing: exit 3 naming it, no output
expect_exit 3 "$LOXSTREAM" analyze -q --json -b "$B" -a "$A" -f "$F" -f "$TMP/ftpart" \
    --include 'layers\.1\.'
expect_err "$TMP/ftpart: the fine-tuned 2 model shares no matrix"
[ -s "$TMP/out" ] && fail "output before the error: $(head -c 300 "$TMP/out")"
expect_exit 3 "$LOXSTREAM" analyze -q -b "$B" -a "$A" -f "$F" -f "$TMP/missing"
expect_err "^loxstream: --finetuned: '$TMP/missing': No such file or directory\$"
pass

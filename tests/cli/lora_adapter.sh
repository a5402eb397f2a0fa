#!/bin/sh
# What a lora adapter says about itself and its form (issue 13, items 8-11):
# adapter_config.json against the keys of the real PEFT-written configs in
# tests/data/real, the README.md card (its front matter parsed as YAML
# where python3-yaml is installed) and the safetensors __metadata__;
# --no-embeddings; GPT-2's Conv1D weights stored [in, out], checked by
# lxlora with PEFT's merge rule for fan_in_fan_out on a synthetic GPT-2
# (lxgpt2 synth) and on Conv1D weights made from the real GPT-2 run
# (lxgpt2 conv1d); base_model_name_or_path by default and by option.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"
: "${LXLORA:?}" "${LXGPT2:?}"

q() { "$LOXSTREAM" "$@" -q; }
# PEFT <= 0.13 wrote the GPT-2 run's config, a later PEFT the RoBERTa one's
P13="$REAL/gpt2-lora-run/checkpoint-7500/adapter_config.json"
P15="$REAL/roberta-lora/checkpoint-2400/adapter_config.json"
# meta FILE: the __metadata__ of a safetensors file, one "key": "value" a line
meta() {
    dd if="$1" bs=1 skip=8 count="$(header_len "$1")" 2>/dev/null |
        sed 's/.*"__metadata__":{\([^}]*\)}.*/\1/' | sed 's/","/"\n"/g'
}

q synth --preset tiny --dtype f32 --seed 7 "$TMP/m" >/dev/null 2>&1 || fail "synth"
B="$TMP/m/base" A="$TMP/m/aligned"

# ---- item 8: LoraConfig's fields only; provenance in the card and the header ----
expect_exit 0 "$LOXSTREAM" lora -b "$B" -a "$A" -o "$TMP/ad" --rank 5 --alpha 1.5 --seed 3 \
    --include 'proj|embed|head'
# item 9: a note when embeddings are exported
expect_err '^lora: note: 2 of the 16 modules are embedding tables or output heads; vLLM'
expect_exit 0 "$LXLORA" --include 'proj|embed|head' --peft-keys "$P13" --peft-keys-within "$P15" \
    "$B" "$A" "$TMP/ad" 5 1.5 1e-3
expect_out '^config	ok$'
c="$TMP/ad/adapter_config.json"
grep -q loxstream "$c" && fail "adapter_config.json mentions loxstream: $(cat "$c")"
# sorted keys, two spaces of indent, as PEFT's json.dumps(indent=2, sort_keys=True)
grep -o '^  "[a-z_]*"' "$c" >"$TMP/keys"
sort "$TMP/keys" | cmp -s - "$TMP/keys" || fail "keys not sorted: $(tr '\n' ' ' <"$TMP/keys")"
expect_eq "keys" "$(wc -l <"$TMP/keys" | tr -d ' ')" 24
meta "$TMP/ad/adapter_model.safetensors" >"$TMP/meta"
for want in '"format":"pt"' '"loxstream_rank":"5"' '"loxstream_alpha":"1.5"' \
    '"loxstream_method":"randomized"' '"loxstream_seed":"3"' '"loxstream_tol":"0.0003"' \
    '"loxstream_include":"proj|embed|head"' '"loxstream_embeddings":"exported"' \
    "\"loxstream_base\":\"$B\"" "\"loxstream_aligned\":\"$A\""; do
    NCHECKS=$((NCHECKS + 1))
    grep -Fqx -- "$want" "$TMP/meta" || fail "__metadata__ lacks $want: $(cat "$TMP/meta")"
done
NCHECKS=$((NCHECKS + 1))
grep -Eqx '"loxstream_version":"[0-9][0-9.]*"' "$TMP/meta" || fail "__metadata__ lacks the version"
card="$TMP/ad/README.md"
expect_eq "card front matter" "$(head -8 "$card" | tr '\n' '|')" \
    "---|base_model: \"$A\"|library_name: peft|tags:|- loxstream|- lox|- lora|---|"
for want in "loxstream lora -b $B -a $A -o $TMP/ad --rank 5 --alpha 1.5 --seed 3 --include 'proj|embed|head'" \
    "- Base (before alignment): \`$B\`" "- Aligned: \`$A\`" "rank 5, alpha 1.5, randomized SVD to tol 0.0003" \
    "seed 3" "r 5, lora_alpha 7.5 (scaling lora_alpha / r = 1.5), 16 modules" \
    "https://arxiv.org/abs/2506.15606" "matrices above the tolerance" "what \`loxstream apply\` writes"; do
    NCHECKS=$((NCHECKS + 1))
    grep -qF -- "$want" "$card" || fail "the card lacks '$want'"
done
if have python3 && python3 -c 'import yaml' 2>/dev/null; then
    NCHECKS=$((NCHECKS + 1))
    python3 - "$card" "$A" <<'EOF' || fail "the card's front matter as YAML"
import sys, yaml
text = open(sys.argv[1]).read()
assert text.startswith("---\n")
fm = yaml.safe_load(text.split("---\n")[1])
assert fm == {"base_model": sys.argv[2], "library_name": "peft",
              "tags": ["loxstream", "lox", "lora"]}, fm
EOF
else
    skipped "the card's front matter as YAML (no python3-yaml)"
fi
# a name that YAML would read otherwise stays a string
expect_exit 0 "$LOXSTREAM" lora -q -b "$B" -a "$A" -o "$TMP/yn" --include lm_head \
    --base-model-name 'no: "x" # y'
grep -qx 'base_model: "no: \\"x\\" # y"' "$TMP/yn/README.md" || fail "quoted base_model: $(head -3 "$TMP/yn/README.md")"

# the aligned card's license, license_name, license_link and language are
# kept (issue 13 item 1, as apply's card: the same reader), the rest not
aligned_card "$A/README.md"
expect_exit 0 "$LOXSTREAM" lora -q -b "$B" -a "$A" -o "$TMP/lic" --include lm_head
rm "$A/README.md"
expect_eq "card front matter with the aligned card's licence" \
    "$(sed -n '2,/^---$/p' "$TMP/lic/README.md" | tr '\n' '|')" \
    "base_model: \"$A\"|library_name: peft|tags:|- loxstream|- lox|- lora|license: \"other\"|license_name: \"llama2: community licence\"|license_link: \"https://example.org/it's/LICENSE\"|language:|- \"en\"|- \"fr\"|---|"
if have python3 && python3 -c 'import yaml' 2>/dev/null; then
    NCHECKS=$((NCHECKS + 1))
    python3 - "$TMP/lic/README.md" "$A" <<'EOF' || fail "the licence card's front matter as YAML"
import sys, yaml
fm = yaml.safe_load(open(sys.argv[1]).read().split("---\n")[1])
assert fm == {"base_model": sys.argv[2], "library_name": "peft",
              "tags": ["loxstream", "lox", "lora"], "license": "other",
              "license_name": "llama2: community licence",
              "license_link": "https://example.org/it's/LICENSE", "language": ["en", "fr"]}, fm
EOF
fi

# ---- item 9: --no-embeddings ------------------------------------------------------
expect_exit 0 "$LOXSTREAM" lora -b "$B" -a "$A" -o "$TMP/noemb" --no-embeddings
grep -q 'note:' "$TMP/err" && fail "a note without embeddings: $(cat "$TMP/err")"
expect_err '^lora: 14 modules'
expect_exit 0 "$LXLORA" --no-embeddings --peft-keys "$P13" "$B" "$A" "$TMP/noemb" 6 1.25 1e-3
expect_out '^modules	14$'
expect_exit 0 "$LOXSTREAM" inspect -q "$TMP/noemb/adapter_model.safetensors"
grep -Eq 'embed|lm_head' "$TMP/out" && fail "--no-embeddings exported: $(grep -E 'embed|lm_head' "$TMP/out")"
tr -d ' \n' <"$TMP/noemb/adapter_config.json" |
    grep -q '"target_modules":\["down_proj","gate_proj","k_proj","o_proj","q_proj","up_proj","v_proj"\]' ||
    fail "target_modules of --no-embeddings"
grep -qF 'It holds the linear layers only (`--no-embeddings`): it equals `loxstream apply` with the same options on the linear layers' \
    "$TMP/noemb/README.md" || fail "the card of --no-embeddings"
grep -qF '(2 left out)' "$TMP/noemb/README.md" || fail "the card's count of left-out modules"
meta "$TMP/noemb/adapter_model.safetensors" | grep -qx '"loxstream_embeddings":"none"' ||
    fail "__metadata__ of --no-embeddings"
# the linear modules are those of a full export, byte for byte (same seeds)
q lora -b "$B" -a "$A" -o "$TMP/lin" --exclude 'embed_tokens|lm_head'
expect_exit 0 "$LXLORA" --exclude 'embed_tokens|lm_head' "$B" "$A" "$TMP/lin" 6 1.25 1e-3
NCHECKS=$((NCHECKS + 1))
dd if="$TMP/lin/adapter_model.safetensors" bs=1 skip=$((8 + $(header_len "$TMP/lin/adapter_model.safetensors"))) 2>/dev/null >"$TMP/lin.data"
dd if="$TMP/noemb/adapter_model.safetensors" bs=1 skip=$((8 + $(header_len "$TMP/noemb/adapter_model.safetensors"))) 2>/dev/null >"$TMP/noemb.data"
cmp -s "$TMP/lin.data" "$TMP/noemb.data" || fail "--no-embeddings factors differ from --exclude's"

# ---- item 10: GPT-2's Conv1D weights, stored [in, out] ---------------------------
"$LXGPT2" synth "$TMP/g" 11 || fail "lxgpt2 synth"
CONV='\.(c_attn|c_proj|c_fc)\.weight$'
expect_exit 0 "$LOXSTREAM" lora -b "$TMP/g/base" -a "$TMP/g/aligned" -o "$TMP/gad"
expect_exit 0 "$LXLORA" --fan-in-fan-out "$CONV" --peft-keys "$P13" "$TMP/g/base" "$TMP/g/aligned" \
    "$TMP/gad" 6 1.25 1e-3
expect_out '^config	ok$'
expect_out '^transformer\.h\.1\.mlp\.c_proj	'
expect_out '^modules	10$'
grep -q '"fan_in_fan_out": true,' "$TMP/gad/adapter_config.json" || fail "fan_in_fan_out of GPT-2"
grep -qF '8 modules are stored [in, out] (config.json model_type gpt2' "$TMP/gad/README.md" ||
    fail "the card of GPT-2"
expect_exit 0 "$LOXSTREAM" inspect -q "$TMP/gad/adapter_model.safetensors"
expect_out '^base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight	F32	6x48	'
expect_out '^base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_B\.weight	F32	144x6	'
expect_out '^base_model\.model\.transformer\.h\.0\.mlp\.c_proj\.lora_A\.weight	F32	6x192	'
expect_out '^base_model\.model\.transformer\.wpe\.lora_embedding_A	F32	6x32	'
# merged by PEFT's rule, what apply writes
q apply -b "$TMP/g/base" -a "$TMP/g/aligned" -o "$TMP/gapply"
expect_exit 0 "$LXLORA" --fan-in-fan-out "$CONV" "$TMP/g/base" "$TMP/g/aligned" "$TMP/gad" 6 1.25 \
    1e-3 "$TMP/gapply"
# lxlora has teeth: the same adapter read as [out, in] weights
expect_exit 1 "$LXLORA" "$TMP/g/base" "$TMP/g/aligned" "$TMP/gad" 6 1.25 1e-3
expect_out 'FAIL	(transformer\.h\.0\.attn\.c_attn: wrong shape|config: fan_in_fan_out)'
# --no-fan-in-fan-out: every weight taken as [out, in]
q lora -b "$TMP/g/base" -a "$TMP/g/aligned" -o "$TMP/gnf" --no-fan-in-fan-out
expect_exit 0 "$LXLORA" "$TMP/g/base" "$TMP/g/aligned" "$TMP/gnf" 6 1.25 1e-3
expect_exit 1 "$LXLORA" --fan-in-fan-out "$CONV" "$TMP/g/base" "$TMP/g/aligned" "$TMP/gnf" 6 1.25 1e-3
# the square c_proj [48, 48] has the same shapes either way: the values tell
expect_out '^transformer\.h\.0\.attn\.c_proj	.*FAIL$'
# a model_type without Conv1D, and a config.json that says none
cp -r "$TMP/g/aligned" "$TMP/g/llama"
sed 's/"gpt2"/"llama"/' "$TMP/g/aligned/config.json" >"$TMP/g/llama/config.json"
q lora -b "$TMP/g/base" -a "$TMP/g/llama" -o "$TMP/gll"
expect_exit 0 "$LXLORA" "$TMP/g/base" "$TMP/g/llama" "$TMP/gll" 6 1.25 1e-3
echo 'not json' >"$TMP/g/llama/config.json"
expect_exit 0 "$LOXSTREAM" lora -q -b "$TMP/g/base" -a "$TMP/g/llama" -o "$TMP/gbad" --include c_fc
expect_err "warning: $TMP/g/llama/config\.json: no model_type read .* give --fan-in-fan-out"
# the real GPT-2 run: its c_attn updates as Conv1D weights [768, 2304]
gr="$REAL/gpt2-lora-run"
mkdir "$TMP/gr"
"$LXGPT2" conv1d "$gr/checkpoint-2000/adapter_model.safetensors" 'h\.(0|7)\.' "$TMP/gr/b.safetensors" &&
    "$LXGPT2" conv1d "$gr/checkpoint-7500/adapter_model.safetensors" 'h\.(0|7)\.' "$TMP/gr/a.safetensors" ||
    fail "lxgpt2 conv1d"
expect_exit 0 "$LOXSTREAM" lora -q -b "$TMP/gr/b.safetensors" -a "$TMP/gr/a.safetensors" -o "$TMP/greal" \
    --fan-in-fan-out
q apply -b "$TMP/gr/b.safetensors" -a "$TMP/gr/a.safetensors" -o "$TMP/grapply"
expect_exit 0 "$LXLORA" --fan-in-fan-out c_attn "$TMP/gr/b.safetensors" "$TMP/gr/a.safetensors" "$TMP/greal" \
    6 1.25 1e-5 "$TMP/grapply"
expect_out '^transformer\.h\.7\.attn\.c_attn	'
# the factors' shapes are those PEFT wrote for the same modules (its r is 8)
"$LOXSTREAM" inspect -q "$gr/checkpoint-7500/adapter_model.safetensors" |
    awk -F'\t' '/h\.(0|7)\./ { sub(/^8x/, "6x", $3); sub(/x8$/, "x6", $3); print $1, $3 }' >"$TMP/peft.shapes"
"$LOXSTREAM" inspect -q "$TMP/greal/adapter_model.safetensors" | awk -F'\t' '{ print $1, $3 }' >"$TMP/our.shapes"
expect_eq "shapes of the real GPT-2 modules" "$(cat "$TMP/our.shapes")" "$(cat "$TMP/peft.shapes")"
grep -qF '(--fan-in-fan-out)' "$TMP/greal/README.md" || fail "the card of --fan-in-fan-out"

# ---- item 11: base_model_name_or_path -----------------------------------------
# by default the absolute path of --aligned, however it was typed
abs=$(cd "$A" && pwd -P)
(cd "$TMP/m" && "$LOXSTREAM" lora -q -b base -a ./aligned/ -o "$TMP/rel" --include lm_head) ||
    fail "lora with relative paths"
expect_exit 0 "$LXLORA" --include lm_head --base-model "$abs" "$B" "$A" "$TMP/rel" 6 1.25 1e-3
# --base-model-name, as given; no revision
q lora -b "$B" -a "$A" -o "$TMP/named" --include lm_head --base-model-name acme/chat-7b
expect_exit 0 "$LXLORA" --include lm_head --base-model acme/chat-7b "$B" "$A" "$TMP/named" 6 1.25 1e-3
grep -qx 'base_model: "acme/chat-7b"' "$TMP/named/README.md" || fail "the card's base_model"
expect_exit 2 "$LOXSTREAM" lora -q -b "$B" -a "$A" -o "$TMP/r0" --base-model-name ''
expect_err 'base-model-name: the name is empty'
# a model ID from the local Hugging Face cache: the ID, and its commit as revision
commit=0123456789abcdef0123456789abcdef01234567
snap="$TMP/hub/models--acme--chat/snapshots/$commit"
mkdir -p "$snap" "$TMP/hub/models--acme--chat/refs" && cp "$A"/* "$snap/" &&
    printf '%s\n' $commit >"$TMP/hub/models--acme--chat/refs/main" || fail "cache"
HF_HUB_CACHE="$TMP/hub" q lora -b "$B" -a acme/chat -o "$TMP/hf" --include lm_head
expect_exit 0 "$LXLORA" --include lm_head --base-model acme/chat --revision $commit "$B" "$snap" \
    "$TMP/hf" 6 1.25 1e-3
grep -qF -- "- Aligned: \`acme/chat\` (revision \`main\`, commit \`$commit\`" "$TMP/hf/README.md" ||
    fail "the card's aligned model from the cache"
meta "$TMP/hf/adapter_model.safetensors" | grep -qx "\"loxstream_aligned\":\"acme/chat@$commit\"" ||
    fail "__metadata__ of a cached model"
pass

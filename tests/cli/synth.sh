#!/bin/sh
# synth.sh - loxstream synth: the HF layout it writes (shards, index, config),
# reproducible bytes, options reflected in the files, values in the expected
# ranges, refusal of existing output (exit 5) and usage errors (exit 2).
. "$TESTS_SRCDIR/cli/lib.sh"
TAB=$(printf '\t')

# same_tree A B: the same file names, and every file byte-identical.
same_tree() {
    (cd "$1" && find . -type f | sort) >"$TMP/ta"
    (cd "$2" && find . -type f | sort) >"$TMP/tb"
    cmp -s "$TMP/ta" "$TMP/tb" || fail "$1 and $2 hold different files"
    while read -r f; do
        cmp -s "$1/$f" "$2/$f" || fail "$1/$f and $2/$f differ"
    done <"$TMP/ta"
    NCHECKS=$((NCHECKS + 1))
}

# index_map DIR: "tensor<TAB>shard" lines of DIR's index, sorted.
index_map() {
    sed -n "s/^ *\"\([^\"]*\)\": \"\(model-[0-9]*-of-[0-9]*\.safetensors\)\",*\$/\1$TAB\2/p" \
        "$1/model.safetensors.index.json" | sort
}

# json_int FILE KEY: the integer value of "KEY": N in a JSON file.
json_int() {
    sed -n "s/^ *\"$2\": \([0-9]*\),*\$/\1/p" "$1"
}

expect_exit 0 "$LOXSTREAM" synth --help
expect_out '^Usage: loxstream synth OUTDIR'
for opt in --preset --hidden --intermediate --layers --vocab --heads --kv-heads --experts \
    --fused-experts --dtype --shard-size --seed \
    --no-finetuned --quiet; do
    grep -q -- "$opt" "$TMP/out" || fail "synth --help does not mention $opt"
done

# ---- the tiny preset: layout ---------------------------------------------
A=$TMP/a
expect_exit 0 "$LOXSTREAM" synth "$A" --preset tiny
expect_err "^synth: 21 tensors"
expect_eq "stdout" "$(cat "$TMP/out")" ""
# 2 layers: embed + 9 per layer + norm + lm_head; 131136 parameters, 2 bytes each
# = 262272 bytes per model, in shards of at most 96 KiB: 4 shards
for m in base aligned finetuned; do
    d=$A/$m
    expect_eq "$m files" "$(cd "$d" && ls | tr '\n' ' ')" \
        "config.json generation_config.json model-00001-of-00004.safetensors model-00002-of-00004.safetensors model-00003-of-00004.safetensors model-00004-of-00004.safetensors model.safetensors.index.json tokenizer.json tokenizer_config.json "
    expect_exit 0 "$LOXSTREAM" inspect "$d"
    expect_eq "$m summary" "$(cat "$TMP/err")" "21 tensors, 131136 parameters, 262272 bytes (256.12 KiB), 4 shards"
    # transformers' order, Llama names and [out, in] shapes
    expect_eq "$m names" "$(cut -f1-4 "$TMP/out" | head -11)" "model.embed_tokens.weight${TAB}BF16${TAB}250x64${TAB}32000
model.layers.0.self_attn.q_proj.weight${TAB}BF16${TAB}64x64${TAB}8192
model.layers.0.self_attn.k_proj.weight${TAB}BF16${TAB}64x64${TAB}8192
model.layers.0.self_attn.v_proj.weight${TAB}BF16${TAB}64x64${TAB}8192
model.layers.0.self_attn.o_proj.weight${TAB}BF16${TAB}64x64${TAB}8192
model.layers.0.mlp.gate_proj.weight${TAB}BF16${TAB}172x64${TAB}22016
model.layers.0.mlp.up_proj.weight${TAB}BF16${TAB}172x64${TAB}22016
model.layers.0.mlp.down_proj.weight${TAB}BF16${TAB}64x172${TAB}22016
model.layers.0.input_layernorm.weight${TAB}BF16${TAB}64${TAB}128
model.layers.0.post_attention_layernorm.weight${TAB}BF16${TAB}64${TAB}128
model.layers.1.self_attn.q_proj.weight${TAB}BF16${TAB}64x64${TAB}8192"
    expect_eq "$m last" "$(cut -f1-3 "$TMP/out" | tail -2 | tr '\n' ' ')" \
        "model.norm.weight${TAB}BF16${TAB}64 lm_head.weight${TAB}BF16${TAB}250x64 "
    # greedy shards: each within 96 KiB, and the next tensor would not have fitted
    expect_eq "$m shard sizes" "$(awk -F"$TAB" '{ s[$5] += $4; if (prev != "" && prev != $5 && s[prev] + $4 <= 98304) bad++; prev = $5 }
        END { for (f in s) if (s[f] > 98304) bad++; print bad + 0 }' "$TMP/out")" 0
    # the index maps every tensor to the shard that holds it, and totals the bytes
    expect_eq "$m index" "$(index_map "$d")" "$(cut -f1,5 "$TMP/out" | sort)"
    expect_eq "$m total_size" "$(json_int "$d/model.safetensors.index.json" total_size)" 262272
    # every shard carries {"format":"pt"} first, as transformers writes it
    for s in "$d"/model-*.safetensors; do
        expect_eq "$s metadata" "$(dd if="$s" bs=1 skip=8 count=32 2>/dev/null)" '{"__metadata__":{"format":"pt"},'
    done
    expect_eq "$m config hidden" "$(json_int "$d/config.json" hidden_size)" 64
    grep -q "\"model\": \"$m\"" "$d/config.json" || fail "$m/config.json does not name its model"
    grep -q '"loxstream_placeholder"' "$d/tokenizer.json" || fail "$m/tokenizer.json: no placeholder note"
done
# the three models differ in every shard
for s in 1 2 3 4; do
    f=model-0000$s-of-00004.safetensors
    cmp -s "$A/base/$f" "$A/aligned/$f" && fail "base and aligned shard $s are identical"
    cmp -s "$A/aligned/$f" "$A/finetuned/$f" && fail "aligned and finetuned shard $s are identical"
done
# the config files are the same apart from the model's name
expect_eq "config diff" "$(diff "$A/base/config.json" "$A/aligned/config.json" | grep -c '^[<>]')" 2

# ---- reproducible: same options, same bytes; another seed, other bytes ----
B=$TMP/b
expect_exit 0 "$LOXSTREAM" synth "$B" --preset tiny -q
expect_eq "quiet stderr" "$(cat "$TMP/err")" ""
same_tree "$A" "$B"
# order of options is irrelevant; OMP threads do not change the bytes
B2=$TMP/b2
expect_exit 0 env OMP_NUM_THREADS=1 "$LOXSTREAM" synth -q --seed 1 --dtype bf16 "$B2" --preset tiny
same_tree "$A" "$B2"
rm -rf "$B2"
C=$TMP/c
expect_exit 0 "$LOXSTREAM" synth "$C" --preset tiny --seed 2 -q
for m in base aligned finetuned; do
    for s in 1 2 3 4; do
        f=$m/model-0000$s-of-00004.safetensors
        cmp -s "$A/$f" "$C/$f" && fail "seeds 1 and 2 gave the same $f"
    done
    # same layout, only the data differ: headers are identical
    N=$(od -An -tu8 -N8 "$A/$m/model-00001-of-00004.safetensors" | tr -d ' ')
    cmp -s -n $((8 + N)) "$A/$m/model-00001-of-00004.safetensors" "$C/$m/model-00001-of-00004.safetensors" ||
        fail "seed changed the header of $m shard 1"
    expect_eq "seed in config" "$(json_int "$C/$m/config.json" seed)" 2
done
rm -rf "$C"
# --no-finetuned: base and aligned are the very same bytes
D=$TMP/d
expect_exit 0 "$LOXSTREAM" synth "$D" --preset tiny --no-finetuned -q
expect_eq "no finetuned dir" "$(ls "$D" | tr '\n' ' ')" "aligned base "
same_tree "$A/base" "$D/base"
same_tree "$A/aligned" "$D/aligned"
rm -rf "$D"

# ---- options reach the files ---------------------------------------------
E=$TMP/e
expect_exit 0 "$LOXSTREAM" synth "$E" --preset tiny --hidden 96 --intermediate 200 --layers 3 \
    --vocab 100 --dtype f32 --shard-size 1M --no-finetuned -q
# 100x96 x2 + 3 x (4 x 96x96 + 3 x 200x96 + 2 x 96) + 96 = 303264 parameters, 4 bytes each
expect_exit 0 "$LOXSTREAM" inspect "$E/aligned"
expect_eq "f32 summary" "$(cat "$TMP/err")" "30 tensors, 303264 parameters, 1213056 bytes (1.16 MiB), 2 shards"
expect_eq "f32 dtypes" "$(cut -f2 "$TMP/out" | sort -u)" F32
expect_out "^model\.layers\.2\.mlp\.down_proj\.weight${TAB}F32${TAB}96x200${TAB}76800${TAB}"
expect_out "^model\.embed_tokens\.weight${TAB}F32${TAB}100x96${TAB}"
cfg=$E/aligned/config.json
expect_eq "hidden_size" "$(json_int "$cfg" hidden_size)" 96
expect_eq "intermediate_size" "$(json_int "$cfg" intermediate_size)" 200
expect_eq "num_hidden_layers" "$(json_int "$cfg" num_hidden_layers)" 3
expect_eq "vocab_size" "$(json_int "$cfg" vocab_size)" 100
expect_eq "num_attention_heads" "$(json_int "$cfg" num_attention_heads)" 3
grep -q '"torch_dtype": "float32"' "$cfg" || fail "torch_dtype is not float32"
grep -q '"architectures": \[' "$cfg" && grep -q '"LlamaForCausalLM"' "$cfg" || fail "no LlamaForCausalLM"
# values, read with od from the offsets inspect reports: norms near 1, weights
# near N(0, 0.02^2), aligned - base small but nonzero
expect_exit 0 "$LOXSTREAM" inspect --json -q "$E/base"
cp "$TMP/out" "$TMP/base.json"
# f32_values DIR NAME: the values of tensor NAME, one per line
f32_values() {
    _l=$(grep "\"name\":\"$2\"" "$TMP/base.json")
    _off=$(echo "$_l" | sed 's/.*"offset":\([0-9]*\)}$/\1/')
    _len=$(echo "$_l" | sed 's/.*"bytes":\([0-9]*\),.*/\1/')
    _shard=$(echo "$_l" | sed 's/.*"shard":"\([^"]*\)".*/\1/')
    od -An -v -tf4 -j "$_off" -N "$_len" "$1/$_shard" | tr -s ' ' '\n' | sed '/^$/d'
}
expect_eq "norm values" "$(f32_values "$E/base" model.norm.weight | awk '$1 < 0.9 || $1 > 1.1 { bad++ } END { print NR, bad + 0 }')" "96 0"
expect_eq "q_proj values" "$(f32_values "$E/base" model.layers.1.self_attn.q_proj.weight |
    awk '{ s += $1 * $1; if ($1 > 0.2 || $1 < -0.2) bad++ } END { printf "%d %d %.3f\n", NR, bad + 0, sqrt(s / NR) }')" "9216 0 0.020"
f32_values "$E/base" model.layers.0.mlp.up_proj.weight >"$TMP/vb"
f32_values "$E/aligned" model.layers.0.mlp.up_proj.weight >"$TMP/va"
# per-entry RMS of the delta is 1e-3 by construction; every entry moved
expect_eq "delta" "$(paste "$TMP/vb" "$TMP/va" | awk '{ d = $2 - $1; s += d * d; if (d == 0) same++ } END { printf "%d %.1e\n", same + 0, sqrt(s / NR) }')" "0 1.0e-03"
rm -rf "$E"

# --dtype f16
F=$TMP/f
expect_exit 0 "$LOXSTREAM" synth "$F" --preset tiny --dtype f16 --no-finetuned -q
expect_exit 0 "$LOXSTREAM" inspect -q "$F/base"
expect_eq "f16 dtypes" "$(cut -f2 "$TMP/out" | sort -u)" F16
grep -q '"torch_dtype": "float16"' "$F/base/config.json" || fail "torch_dtype is not float16"
rm -rf "$F"
# a shard size above the model's size: one model.safetensors, no index
G=$TMP/g
expect_exit 0 "$LOXSTREAM" synth "$G" --preset tiny --shard-size 1G --no-finetuned -q
expect_eq "single shard" "$(ls "$G/base" | grep -c safetensors)" 1
[ -f "$G/base/model.safetensors" ] || fail "no model.safetensors"
expect_exit 0 "$LOXSTREAM" inspect -q "$G/base"
expect_eq "single shard tensors" "$(wc -l <"$TMP/out" | tr -d ' ')" 21
rm -rf "$G"

# ---- existing output is refused (exit 5), nothing is touched ---------------
expect_exit 5 "$LOXSTREAM" synth "$A" --preset tiny --seed 7
expect_err "$A/base: exists and is not empty"
same_tree "$A" "$B"
# an empty model directory is fine; a file in its place is not
H=$TMP/h
mkdir -p "$H/base"
expect_exit 0 "$LOXSTREAM" synth "$H" --preset tiny --no-finetuned -q
same_tree "$A/base" "$H/base"
rm -rf "$H"
mkdir -p "$H"
: >"$H/aligned"
expect_exit 5 "$LOXSTREAM" synth "$H" --preset tiny -q
expect_err "$H/aligned: exists and is not a directory"
expect_eq "nothing written" "$(ls "$H")" aligned
: >"$TMP/plainfile"
expect_exit 5 "$LOXSTREAM" synth "$TMP/plainfile" --preset tiny -q
expect_err "plainfile: exists and is not a directory"

# ---- usage errors (exit 2), before anything is created ----------------------
U=$TMP/u
expect_exit 2 "$LOXSTREAM" synth "$U" --hidden 0
expect_err "^loxstream: --hidden: 0 is out of range"
expect_exit 2 "$LOXSTREAM" synth "$U" --hidden 12x
expect_err "^loxstream: --hidden: invalid number '12x'"
expect_exit 2 "$LOXSTREAM" synth "$U" --layers -1
expect_err "^loxstream: --layers: invalid number '-1'"
expect_exit 2 "$LOXSTREAM" synth "$U" --dtype int8
expect_err "^loxstream: --dtype: 'int8' is not one of bf16, f16, f32"
expect_exit 2 "$LOXSTREAM" synth "$U" --shard-size -1
expect_err "^loxstream: --shard-size: invalid size '-1'"
expect_exit 2 "$LOXSTREAM" synth "$U" --shard-size 0
expect_err "^loxstream: --shard-size: must be at least 1 byte"
expect_exit 2 "$LOXSTREAM" synth "$U" --seed 1.5
expect_err "^loxstream: --seed: invalid number '1.5'"
expect_exit 2 "$LOXSTREAM" synth "$U" --preset huge
expect_err "^loxstream: --preset: unknown preset 'huge'"
expect_exit 2 "$LOXSTREAM" synth "$U" --frobnicate
expect_err "^loxstream: synth: unknown option '--frobnicate'"
expect_exit 2 "$LOXSTREAM" synth "$U" -x
expect_err "^loxstream: synth: unknown option '-x'"
expect_exit 2 "$LOXSTREAM" synth "$U" --vocab
expect_err "^loxstream: synth: option '--vocab' needs a value"
expect_exit 2 "$LOXSTREAM" synth
expect_err "^loxstream: synth: missing OUTDIR"
expect_exit 2 "$LOXSTREAM" synth "$U" "$U.2"
expect_err "^loxstream: synth: one OUTDIR expected"
[ -e "$U" ] && fail "a usage error created $U"

pass

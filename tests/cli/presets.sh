#!/bin/sh
# presets.sh - synth's 70B and MoE shape families, scaled down (--layers 1 and
# small sizes): grouped-query attention (llama3-70b), Mixtral's experts
# unfused and fused into 3-D tensors (mixtral, --fused-experts).  The names
# and shapes inspect lists against the lists written here; the fused layout
# holding the unfused layout's bytes; apply on each, then verify, and the
# result against an exact SVD per matrix (lxcheck: per expert for the 3-D
# tensors); config.json; the options' errors (exit 2).
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXCHECK:?}"
TAB=$(printf '\t')

# shapes CKPT: "name<TAB>dtype<TAB>shape" per tensor, in the checkpoint's order
shapes() {
    "$LOXSTREAM" inspect -q "$1" | cut -f1-3
}

# json_field FILE KEY: the value of "KEY": VALUE in a JSON file (one per line)
json_field() {
    sed -n "s/^ *\"$2\": \"*\([^\",]*\)\"*,*\$/\1/p" "$1"
}

# tensor_bytes CKPT NAME OUT: the data bytes of tensor NAME into OUT
tensor_bytes() {
    tb_line=$("$LOXSTREAM" inspect -q --json "$1" | grep -F "\"name\":\"$2\"") ||
        fail "tensor_bytes: no $2 in $1"
    tb_shard=$(printf '%s\n' "$tb_line" | sed 's/.*"shard":"\([^"]*\)".*/\1/')
    tb_off=$(printf '%s\n' "$tb_line" | sed 's/.*"offset":\([0-9]*\).*/\1/')
    tb_len=$(printf '%s\n' "$tb_line" | sed 's/.*"bytes":\([0-9]*\).*/\1/')
    dd if="$1/$tb_shard" bs=64K iflag=skip_bytes,count_bytes skip="$tb_off" count="$tb_len" \
        status=none >"$3"
}

# apply_checked DIR: apply on DIR's pair, verify the output, and check every
# matrix against the exact truncation
apply_checked() {
    expect_exit 0 "$LOXSTREAM" apply -q -b "$1/base" -a "$1/aligned" -o "$1/lox" --report "$1/r.tsv"
    expect_exit 0 "$LOXSTREAM" verify -q "$1/lox"
    expect_exit 0 "$LXCHECK" "$1/base" "$1/aligned" "$1/lox" 6 1.25 1e-3
    cp "$TMP/out" "$1/check.txt"
}

# ---- llama3-70b: grouped-query attention ------------------------------------
# 4 heads of 16 and 2 key/value heads: k_proj and v_proj are 32 x 64
G=$TMP/gqa
expect_exit 0 "$LOXSTREAM" synth -q "$G" --preset llama3-70b --layers 1 --hidden 64 \
    --intermediate 224 --vocab 256 --heads 4 --kv-heads 2 --dtype f32 --shard-size 64K
expect_eq "llama3-70b shapes" "$(shapes "$G/base")" "model.embed_tokens.weight${TAB}F32${TAB}256x64
model.layers.0.self_attn.q_proj.weight${TAB}F32${TAB}64x64
model.layers.0.self_attn.k_proj.weight${TAB}F32${TAB}32x64
model.layers.0.self_attn.v_proj.weight${TAB}F32${TAB}32x64
model.layers.0.self_attn.o_proj.weight${TAB}F32${TAB}64x64
model.layers.0.mlp.gate_proj.weight${TAB}F32${TAB}224x64
model.layers.0.mlp.up_proj.weight${TAB}F32${TAB}224x64
model.layers.0.mlp.down_proj.weight${TAB}F32${TAB}64x224
model.layers.0.input_layernorm.weight${TAB}F32${TAB}64
model.layers.0.post_attention_layernorm.weight${TAB}F32${TAB}64
model.norm.weight${TAB}F32${TAB}64
lm_head.weight${TAB}F32${TAB}256x64"
expect_eq "llama3-70b architecture" "$(json_field "$G/base/config.json" model_type)" llama
expect_eq "llama3-70b heads" "$(json_field "$G/base/config.json" num_attention_heads)" 4
expect_eq "llama3-70b kv heads" "$(json_field "$G/base/config.json" num_key_value_heads)" 2
apply_checked "$G"
expect_eq "llama3-70b tensors checked" "$(wc -l <"$G/check.txt" | tr -d ' ')" 12

# the preset's own heads, 64 and 8: k_proj has hidden / 8 rows
expect_exit 0 "$LOXSTREAM" synth -q "$TMP/gqa8" --preset llama3-70b --layers 1 --hidden 128 \
    --intermediate 32 --vocab 16 --no-finetuned
expect_eq "llama3-70b k_proj at 64/8 heads" \
    "$(shapes "$TMP/gqa8/base" | grep -F '.k_proj.' | cut -f3)" 16x128
expect_eq "llama3-70b preset heads" "$(json_field "$TMP/gqa8/base/config.json" num_attention_heads)" 64
expect_eq "llama3-70b preset kv heads" "$(json_field "$TMP/gqa8/base/config.json" num_key_value_heads)" 8
# and its sizes, as the errors state them
expect_exit 2 "$LOXSTREAM" synth -q "$TMP/no" --preset llama3-70b --heads 3
expect_err 'the hidden size 8192 is not a multiple of the 3 attention heads \(--hidden, --heads\)'
expect_exit 2 "$LOXSTREAM" synth -q "$TMP/no" --preset llama3-70b --kv-heads 3
expect_err 'the 64 attention heads are not a multiple of the 3 key/value heads'

# ---- mixtral: 8 experts per layer, as Mixtral's checkpoints name them ---------
M=$TMP/moe
expect_exit 0 "$LOXSTREAM" synth -q "$M" --preset mixtral --layers 1 --hidden 64 \
    --intermediate 96 --vocab 128 --heads 4 --kv-heads 2 --dtype f32
experts=""
for e in 0 1 2 3 4 5 6 7; do
    experts="${experts}model.layers.0.block_sparse_moe.experts.$e.w1.weight${TAB}F32${TAB}96x64
model.layers.0.block_sparse_moe.experts.$e.w2.weight${TAB}F32${TAB}64x96
model.layers.0.block_sparse_moe.experts.$e.w3.weight${TAB}F32${TAB}96x64
"
done
# the tensors around the experts, the same in both layouts
moe_head="model.embed_tokens.weight${TAB}F32${TAB}128x64
model.layers.0.self_attn.q_proj.weight${TAB}F32${TAB}64x64
model.layers.0.self_attn.k_proj.weight${TAB}F32${TAB}32x64
model.layers.0.self_attn.v_proj.weight${TAB}F32${TAB}32x64
model.layers.0.self_attn.o_proj.weight${TAB}F32${TAB}64x64
"
moe_tail="model.layers.0.input_layernorm.weight${TAB}F32${TAB}64
model.layers.0.post_attention_layernorm.weight${TAB}F32${TAB}64
model.norm.weight${TAB}F32${TAB}64
lm_head.weight${TAB}F32${TAB}128x64"
expect_eq "mixtral shapes" "$(shapes "$M/base")" "${moe_head}model.layers.0.block_sparse_moe.gate.weight${TAB}F32${TAB}8x64
${experts}${moe_tail}"
expect_eq "mixtral architecture" "$(json_field "$M/base/config.json" model_type)" mixtral
expect_eq "mixtral experts" "$(json_field "$M/base/config.json" num_local_experts)" 8
expect_eq "mixtral experts per token" "$(json_field "$M/base/config.json" num_experts_per_tok)" 2
apply_checked "$M"
expect_eq "mixtral tensors checked" "$(wc -l <"$M/check.txt" | tr -d ' ')" 34

# ---- --fused-experts: the experts as two 3-D tensors, transformers' names -----
F=$TMP/fused
expect_exit 0 "$LOXSTREAM" synth -q "$F" --preset mixtral --layers 1 --hidden 64 \
    --intermediate 96 --vocab 128 --heads 4 --kv-heads 2 --dtype f32 --fused-experts
expect_eq "fused shapes" "$(shapes "$F/base")" "${moe_head}model.layers.0.mlp.gate.weight${TAB}F32${TAB}8x64
model.layers.0.mlp.experts.gate_up_proj${TAB}F32${TAB}8x192x64
model.layers.0.mlp.experts.down_proj${TAB}F32${TAB}8x64x96
${moe_tail}"
# stack CKPT OUT W...: the bytes of experts 0..7 of layer 0, each expert's
# projections W... in that order, into OUT
stack() {
    st_ckpt=$1
    st_out=$2
    shift 2
    : >"$st_out"
    for e in 0 1 2 3 4 5 6 7; do
        for w in "$@"; do
            tensor_bytes "$st_ckpt" "model.layers.0.block_sparse_moe.experts.$e.$w.weight" "$TMP/t"
            cat "$TMP/t" >>"$st_out"
        done
    done
}
# the same model in the other layout: gate_up_proj[e] is expert e's w1 then
# w3, down_proj[e] its w2, mlp.gate the router, byte for byte
for m in base aligned finetuned; do
    stack "$M/$m" "$TMP/gu.want" w1 w3
    stack "$M/$m" "$TMP/dn.want" w2
    tensor_bytes "$F/$m" model.layers.0.mlp.experts.gate_up_proj "$TMP/gu.got"
    tensor_bytes "$F/$m" model.layers.0.mlp.experts.down_proj "$TMP/dn.got"
    expect_exit 0 cmp "$TMP/gu.want" "$TMP/gu.got"
    expect_exit 0 cmp "$TMP/dn.want" "$TMP/dn.got"
    tensor_bytes "$M/$m" model.layers.0.block_sparse_moe.gate.weight "$TMP/g.want"
    tensor_bytes "$F/$m" model.layers.0.mlp.gate.weight "$TMP/g.got"
    expect_exit 0 cmp "$TMP/g.want" "$TMP/g.got"
done
# (the comparison tells the order apart: w3 before w1 is not gate_up_proj)
stack "$M/base" "$TMP/gu.wrong" w3 w1
tensor_bytes "$F/base" model.layers.0.mlp.experts.gate_up_proj "$TMP/gu.got"
expect_exit 1 cmp -s "$TMP/gu.wrong" "$TMP/gu.got"
# apply factors each expert of a 3-D tensor on its own: 8 matrices of
# 192 x 64 and 8 of 64 x 96, each checked against its exact SVD
apply_checked "$F"
expect_eq "fused matrices and tensors checked" "$(wc -l <"$F/check.txt" | tr -d ' ')" 26
expect_eq "fused gate_up matrices" \
    "$(grep -c "^model.layers.0.mlp.experts.gate_up_proj$TAB" "$F/check.txt")" 8
expect_eq "fused report" "$(awk -F "$TAB" '$1 ~ /experts/ { print $1 " " $2 " " $3 "x" $4 }' "$F/r.tsv" |
    sed -n '1p;8p;9p;16p' | tr '\n' ';')" \
    "model.layers.0.mlp.experts.gate_up_proj 0 192x64;model.layers.0.mlp.experts.gate_up_proj 7 192x64;model.layers.0.mlp.experts.down_proj 0 64x96;model.layers.0.mlp.experts.down_proj 7 64x96;"

# ---- errors --------------------------------------------------------------------
expect_exit 2 "$LOXSTREAM" synth -q "$TMP/no" --preset llama3-70b --fused-experts
expect_err 'fused-experts needs experts'
expect_exit 2 "$LOXSTREAM" synth -q "$TMP/no" --preset mixtral --experts 257
expect_err '--experts'
expect_exit 2 "$LOXSTREAM" synth -q "$TMP/no" --preset nope
expect_err 'expected tiny, small, llama-7b, llama3-70b or mixtral'
[ -e "$TMP/no" ] && fail "a refused synth wrote $TMP/no"
pass

#!/bin/sh
# inspect.sh - loxstream inspect on real files written by other tools and on
# hand-made checkpoints: exact TSV lines, JSON lines, summary, pipes, usage.
# Exit codes: 0 listed, 2 usage, 3 rejected or missing.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"
TAB=$(printf '\t')

# ---- the reference Python writer's file: F64 [8,8] and [16,16] -----------
PY=$REAL/safetensors-cpp/model.safetensors
expect_exit 0 "$LOXSTREAM" inspect "$PY"
# 8x8x8 = 512 and 16x16x8 = 2048 bytes
expect_eq "python file" "$(cat "$TMP/out")" "weight1${TAB}F64${TAB}8x8${TAB}512${TAB}model.safetensors
weight2${TAB}F64${TAB}16x16${TAB}2048${TAB}model.safetensors"
expect_eq "summary" "$(cat "$TMP/err")" "2 tensors, 320 parameters, 2560 bytes (2.50 KiB), 1 shard"
# the header length as od reads it, plus the data, is the file size
N=$(header_len "$PY")
expect_eq "python file size" "$(wc -c <"$PY" | tr -d ' ')" $((8 + N + 512 + 2048))

# --json: offsets are absolute, the first at 8 + N
expect_exit 0 "$LOXSTREAM" inspect --json "$PY"
expect_eq "json" "$(cat "$TMP/out")" "{\"name\":\"weight1\",\"dtype\":\"F64\",\"shape\":[8,8],\"bytes\":512,\"shard\":\"model.safetensors\",\"offset\":$((8 + N))}
{\"name\":\"weight2\",\"dtype\":\"F64\",\"shape\":[16,16],\"bytes\":2048,\"shard\":\"model.safetensors\",\"offset\":$((8 + N + 512))}"

# -q / --quiet: no summary; the summary never goes to stdout
expect_exit 0 "$LOXSTREAM" inspect -q "$PY"
expect_eq "quiet stderr" "$(cat "$TMP/err")" ""
expect_eq "quiet stdout lines" "$(wc -l <"$TMP/out" | tr -d ' ')" 2
expect_exit 0 "$LOXSTREAM" inspect --quiet --json "$PY"
expect_eq "quiet json stderr" "$(cat "$TMP/err")" ""
# options may follow CKPT (as in the README: inspect CKPT --json)
expect_exit 0 "$LOXSTREAM" inspect "$PY" --json -q
expect_eq "options after CKPT" "$(head -1 "$TMP/out" | cut -c1-20)$(cat "$TMP/err")" '{"name":"weight1","d'

# ---- PEFT LoRA on GPT-2: 12 x lora_A [8,768] + 12 x lora_B [2304,8], F32 --
for ck in 2000 7500; do
    GPT=$REAL/gpt2-lora-run/checkpoint-$ck/adapter_model.safetensors
    expect_exit 0 "$LOXSTREAM" inspect "$GPT"
    expect_eq "gpt2 lines" "$(wc -l <"$TMP/out" | tr -d ' ')" 24
    # every line is one of the two kinds, 8x768x4 = 24576 and 2304x8x4 = 73728 bytes
    expect_eq "gpt2 lora_A" "$(grep -c "^base_model\.model\.transformer\.h\.[0-9]*\.attn\.c_attn\.lora_A\.weight${TAB}F32${TAB}8x768${TAB}24576${TAB}adapter_model\.safetensors\$" "$TMP/out")" 12
    expect_eq "gpt2 lora_B" "$(grep -c "^base_model\.model\.transformer\.h\.[0-9]*\.attn\.c_attn\.lora_B\.weight${TAB}F32${TAB}2304x8${TAB}73728${TAB}adapter_model\.safetensors\$" "$TMP/out")" 12
    # the layers are 0..11, each with both factors
    expect_eq "gpt2 names" "$(cut -f1 "$TMP/out" | sort | tr '\n' ' ')" \
        "$(i=0; while [ $i -lt 12 ]; do printf 'base_model.model.transformer.h.%d.attn.c_attn.lora_A.weight\nbase_model.model.transformer.h.%d.attn.c_attn.lora_B.weight\n' $i $i; i=$((i + 1)); done | sort | tr '\n' ' ')"
    expect_eq "gpt2 summary" "$(cat "$TMP/err")" \
        "24 tensors, $((12 * 6144 + 12 * 18432)) parameters, $((12 * 24576 + 12 * 73728)) bytes (1.12 MiB), 1 shard"
    # the data fills the file after the header od reads
    expect_eq "gpt2 size" "$(wc -c <"$GPT" | tr -d ' ')" $((8 + $(header_len "$GPT") + 12 * 24576 + 12 * 73728))
    # JSON lines: the fields in order, offsets contiguous from 8 + N
    expect_exit 0 "$LOXSTREAM" inspect --json -q "$GPT"
    expect_eq "gpt2 json lines" "$(grep -c '^{"name":"base_model[^"]*","dtype":"F32","shape":\[[0-9]*,[0-9]*\],"bytes":[0-9]*,"shard":"adapter_model.safetensors","offset":[0-9]*}$' "$TMP/out")" 24
    expect_eq "gpt2 offsets" "$(sed 's/.*"bytes":\([0-9]*\).*"offset":\([0-9]*\)}$/\1 \2/' "$TMP/out" |
        awk -v start=$((8 + $(header_len "$GPT"))) '{ if ($2 != start) bad++; start = $2 + $1 } END { print bad + 0 }')" 0
done

# ---- PEFT LoRA on roberta: 1-D biases, a [768,768] head, r=2 factors -------
ROB=$REAL/roberta-lora/checkpoint-500/adapter_model.safetensors
expect_exit 0 "$LOXSTREAM" inspect "$ROB"
expect_eq "roberta lines" "$(wc -l <"$TMP/out" | tr -d ' ')" 28
expect_out "^base_model\.model\.classifier\.dense\.bias${TAB}F32${TAB}768${TAB}3072${TAB}adapter_model\.safetensors\$"
expect_out "^base_model\.model\.classifier\.out_proj\.bias${TAB}F32${TAB}4${TAB}16${TAB}adapter_model\.safetensors\$"
expect_out "^base_model\.model\.classifier\.dense\.weight${TAB}F32${TAB}768x768${TAB}2359296${TAB}"
expect_out "^base_model\.model\.classifier\.out_proj\.weight${TAB}F32${TAB}4x768${TAB}12288${TAB}"
expect_eq "roberta 1-D" "$(cut -f3 "$TMP/out" | grep -vc x)" 2
expect_eq "roberta lora_A" "$(grep -c "lora_A\.weight${TAB}F32${TAB}2x768${TAB}6144${TAB}" "$TMP/out")" 12
expect_eq "roberta lora_B" "$(grep -c "lora_B\.weight${TAB}F32${TAB}768x2${TAB}6144${TAB}" "$TMP/out")" 12
expect_err "^28 tensors, $((768 + 4 + 768 * 768 + 4 * 768 + 24 * 1536)) parameters, "

# ---- a sharded directory, built by hand ---------------------------------
S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors
D=$TMP/sharded
mkdir "$D"
st_file "$D/$S1" '{"__metadata__":{"format":"pt"},"model.layers.0.mlp.up_proj.weight":{"dtype":"F16","shape":[2,2],"data_offsets":[16,24]},"model.embed_tokens.weight":{"dtype":"BF16","shape":[4,2],"data_offsets":[0,16]}}' 24
# a scalar and a zero-size tensor among them
st_file "$D/$S2" '{"lm_head.weight":{"dtype":"F32","shape":[4,2],"data_offsets":[0,32]},"model.norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[32,40]},"s":{"dtype":"F64","shape":[],"data_offsets":[40,48]},"z":{"dtype":"BF16","shape":[2,0],"data_offsets":[48,48]}}' 48
printf '%s\n' "{\"metadata\":{\"total_size\":72},\"weight_map\":{\"lm_head.weight\":\"$S2\",\"model.embed_tokens.weight\":\"$S1\",\"model.layers.0.mlp.up_proj.weight\":\"$S1\",\"model.norm.weight\":\"$S2\",\"s\":\"$S2\",\"z\":\"$S2\"}}" >"$D/model.safetensors.index.json"
printf '{}' >"$D/config.json"
expect_exit 0 "$LOXSTREAM" inspect "$D"
# by shard (sorted by name), then by offset
expect_eq "sharded" "$(cat "$TMP/out")" "model.embed_tokens.weight${TAB}BF16${TAB}4x2${TAB}16${TAB}$S1
model.layers.0.mlp.up_proj.weight${TAB}F16${TAB}2x2${TAB}8${TAB}$S1
lm_head.weight${TAB}F32${TAB}4x2${TAB}32${TAB}$S2
model.norm.weight${TAB}F32${TAB}2${TAB}8${TAB}$S2
s${TAB}F64${TAB}${TAB}8${TAB}$S2
z${TAB}BF16${TAB}2x0${TAB}0${TAB}$S2"
expect_eq "sharded summary" "$(cat "$TMP/err")" "6 tensors, 23 parameters, 72 bytes (72 B), 2 shards"
# the (tensor, shard) pairs are exactly those of the index
expect_eq "sharded = index" "$(cut -f1,5 "$TMP/out" | tr "$TAB" ' ' | sort)" \
    "$(sed 's/.*"weight_map":{//; s/}}$//' "$D/model.safetensors.index.json" | tr ',' '\n' | tr -d '"' | tr ':' ' ' | sort)"
expect_exit 0 "$LOXSTREAM" inspect --json "$D"
expect_out "^\{\"name\":\"s\",\"dtype\":\"F64\",\"shape\":\[\],\"bytes\":8,\"shard\":\"$S2\",\"offset\":[0-9]+\}\$"
expect_out "^\{\"name\":\"z\",\"dtype\":\"BF16\",\"shape\":\[2,0\],\"bytes\":0,\"shard\":\"$S2\","

# ---- names that would break a line are escaped (JSON keeps them exact) --
st_file "$TMP/esc.safetensors" '{"a\tb\\c\nd":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' 1
expect_exit 0 "$LOXSTREAM" inspect -q "$TMP/esc.safetensors"
expect_eq "escaped name" "$(cat "$TMP/out")" "a\\tb\\\\c\\nd${TAB}U8${TAB}1${TAB}1${TAB}esc.safetensors"
expect_exit 0 "$LOXSTREAM" inspect -q --json "$TMP/esc.safetensors"
expect_out '^\{"name":"a\\tb\\\\c\\nd","dtype":"U8"'

# ---- in a pipe: | head -1 on 4000 lines (more than the output buffer) ---
{
    printf '{'
    i=0
    while [ $i -lt 4000 ]; do
        [ $i -eq 0 ] || printf ','
        printf '"model.layers.%04d.self_attn.q_proj.weight":{"dtype":"U8","shape":[1],"data_offsets":[%d,%d]}' $i $i $((i + 1))
        i=$((i + 1))
    done
    printf '}'
} >"$TMP/big.json"
st_file "$TMP/big.safetensors" "$(cat "$TMP/big.json")" 4000
{
    rc=0
    "$LOXSTREAM" inspect "$TMP/big.safetensors" 2>"$TMP/pipe.err" || rc=$?
    echo $rc >"$TMP/pipe.rc"
} | head -1 >"$TMP/pipe.out"
expect_eq "head -1" "$(cat "$TMP/pipe.out")" "model.layers.0000.self_attn.q_proj.weight${TAB}U8${TAB}1${TAB}1${TAB}big.safetensors"
# killed by SIGPIPE (128 + 13), or a quiet success if SIGPIPE is ignored
case $(cat "$TMP/pipe.rc") in
0 | 141) NCHECKS=$((NCHECKS + 1)) ;;
*) fail "inspect | head -1: exit status $(cat "$TMP/pipe.rc")" ;;
esac
if grep -q '^loxstream:' "$TMP/pipe.err"; then
    fail "inspect | head -1 printed an error: $(cat "$TMP/pipe.err")"
fi
# and the whole listing when read to the end
expect_exit 0 "$LOXSTREAM" inspect "$TMP/big.safetensors"
expect_eq "big lines" "$(wc -l <"$TMP/out" | tr -d ' ')" 4000
expect_eq "big last" "$(tail -1 "$TMP/out")" "model.layers.3999.self_attn.q_proj.weight${TAB}U8${TAB}1${TAB}1${TAB}big.safetensors"

# ---- a write error other than a closed pipe is reported -----------------
if [ -w /dev/full ]; then
    set +e
    "$LOXSTREAM" inspect "$TMP/big.safetensors" >/dev/full 2>"$TMP/err"
    rc=$?
    set -e
    expect_eq "write to /dev/full" "$rc" 1
    expect_err "^loxstream: standard output: write failed: No space left on device"
fi

# ---- usage ---------------------------------------------------------------
expect_exit 2 "$LOXSTREAM" inspect
expect_err "^loxstream inspect: missing CKPT"
expect_exit 2 "$LOXSTREAM" inspect --bogus "$PY"
expect_err "^loxstream inspect: unknown option '--bogus'"
expect_exit 2 "$LOXSTREAM" inspect -x "$PY"
expect_err "unknown option '-x'"
expect_exit 2 "$LOXSTREAM" inspect "$PY" "$PY"
expect_err "only one CKPT is expected"
expect_exit 0 "$LOXSTREAM" inspect --help
expect_out "^Usage: loxstream inspect \[OPTION\]\.\.\. CKPT"
expect_exit 3 "$LOXSTREAM" inspect "$TMP/nope"
expect_err "^loxstream: inspect: '$TMP/nope': No such file or directory\$"

pass

#!/bin/sh
# side_files.sh - apply copies only the side files of the allow-list in
# loxstream(1) from the aligned directory (configuration, tokenizer, chat
# template, processor, code, licence terms), never weights of other formats
# (pytorch_model*.bin and its index, .gguf, .pt, .pth, .ckpt, .msgpack,
# .h5, .onnx, .tflite, .safetensors outside the checkpoint), and names
# what it skipped in one warning.  The model is a real PEFT checkpoint pair
# (tests/data/real), as directories.
. "$TESTS_SRCDIR/cli/lib.sh"

g="$REAL/gpt2-lora-run"
mkdir "$TMP/in"
cp -r "$g/checkpoint-2000" "$TMP/in/base"
cp -r "$g/checkpoint-7500" "$TMP/in/aligned"
A=$TMP/in/aligned
skip="pytorch_model.bin pytorch_model-00001-of-00002.bin pytorch_model.bin.index.json model.gguf
 adapter.pt weights.pth last.ckpt flax_model.msgpack tf_model.h5 model.onnx model.tflite"
keep="config.json generation_config.json tokenizer.json tokenizer_config.json tokenizer.model
 special_tokens_map.json added_tokens.json vocab.json merges.txt chat_template.jinja
 preprocessor_config.json modeling_gpt2x.py LICENSE.txt USE_POLICY.md NOTICE"
for f in $skip $keep README.md; do
    printf 'bytes of %s\n' "$f" >"$A/$f"
done
nskip=$(echo $skip | wc -w | tr -d ' ')

expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$TMP/in/base" -a "$A" -o "$TMP/o" --rank 4
# one warning, with the count and every skipped name
expect_eq "warning lines" "$(grep -c 'not copied to the output' "$TMP/err")" 1
expect_err "$A: $nskip files not copied to the output"
for f in $skip; do
    grep -q -- "[ ,]$f\\b" "$TMP/err" || fail "the warning does not name $f: $(cat "$TMP/err")"
done
NCHECKS=$((NCHECKS + 1))
# exactly the allowed files (and adapter_config.json of the real
# checkpoint), each a byte-for-byte copy, plus the shard, the list and
# the output's own card (the aligned README.md is neither copied nor
# named in the warning)
grep -q 'README' "$TMP/err" && fail "the warning names README.md"
cmp -s "$A/README.md" "$TMP/o/README.md" && fail "README.md is the aligned card"
want=$(for f in $keep adapter_config.json adapter_model.safetensors loxstream.xxh3 README.md; do echo "$f"; done |
    LC_ALL=C sort | tr '\n' ' ')
expect_eq "output files" "$(cd "$TMP/o" && ls | LC_ALL=C sort | tr '\n' ' ')" "$want"
for f in $keep adapter_config.json; do
    cmp "$A/$f" "$TMP/o/$f" || fail "$f is not a copy"
done
NCHECKS=$((NCHECKS + 1))
# the weights are LoX's, the whole output verifies
expect_exit 0 "$LXCHECK" "$TMP/in/base/adapter_model.safetensors" "$A/adapter_model.safetensors" \
    "$TMP/o/adapter_model.safetensors" 4 1.25 1e-3
expect_exit 0 "$LOXSTREAM" verify "$TMP/o"
if have xxhsum; then
    (cd "$TMP/o" && xxhsum -c loxstream.xxh3 >/dev/null 2>&1) || fail "xxhsum -c rejects the list"
    NCHECKS=$((NCHECKS + 1))
else
    skipped "xxhsum is not installed"
fi
# nothing to skip: no warning
rm -f "$A"/*.bin "$A"/*.json.bak "$A/pytorch_model.bin.index.json" "$A/model.gguf" "$A/adapter.pt" \
    "$A/weights.pth" "$A/last.ckpt" "$A/flax_model.msgpack" "$A/tf_model.h5" "$A/model.onnx" \
    "$A/model.tflite" "$A/README.md"
expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$TMP/in/base" -a "$A" -o "$TMP/o2" --rank 4
expect_eq "stderr without skipped files" "$(cat "$TMP/err")" ""

# ---- a sharded model: a .safetensors the index does not name is skipped --
"$LOXSTREAM" synth -q --preset tiny --no-finetuned "$TMP/m" || fail "synth"
cp "$REAL/safetensors-cpp/model.safetensors" "$TMP/m/aligned/consolidated.safetensors"
expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$TMP/m/base" -a "$TMP/m/aligned" -o "$TMP/o3"
expect_err "$TMP/m/aligned: 1 file not copied to the output .*: consolidated\.safetensors\$"
[ ! -e "$TMP/o3/consolidated.safetensors" ] || fail "consolidated.safetensors was copied"
NCHECKS=$((NCHECKS + 1))
pass

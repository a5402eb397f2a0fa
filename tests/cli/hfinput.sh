#!/bin/sh
# Inputs named by option: model IDs from a local Hugging Face cache (built
# here as huggingface_hub lays it out: blobs named by their sha256,
# snapshots/<commit>/<file> links to ../../blobs/<hash>, refs/<name> holding
# a commit), typo'd paths that name their option, and inputs that are not
# safetensors (exit 3 for all).
. "$TESTS_SRCDIR/cli/lib.sh"
have sha256sum || skip_test "no sha256sum"

q() { "$LOXSTREAM" "$@" -q; }
q synth --preset tiny --seed 5 "$TMP/m" >/dev/null 2>&1 || fail "synth"
# an older revision of the aligned model, in f32: another listing
q synth --preset tiny --seed 6 --dtype f32 --no-finetuned "$TMP/m32" >/dev/null 2>&1 || fail "synth f32"

HUB="$TMP/hub"
# cache_put REPO COMMIT DIR: the files of DIR as commit COMMIT of model REPO
cache_put() {
    cp_repo="$HUB/models--$(printf '%s' "$1" | sed 's|/|--|')"
    mkdir -p "$cp_repo/blobs" "$cp_repo/refs" "$cp_repo/snapshots/$2"
    for cp_f in "$3"/*; do
        cp_h=$(sha256sum "$cp_f" | cut -d' ' -f1)
        cp "$cp_f" "$cp_repo/blobs/$cp_h"
        ln -s "../../blobs/$cp_h" "$cp_repo/snapshots/$2/${cp_f##*/}"
    done
}
C_BASE=1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c
C_ALIGNED=a1b2c3d4e5f60718293a4b5c6d7e8f9001122334
C_OLD=00112233445566778899aabbccddeeff00112233
cache_put acme/llm-base $C_BASE "$TMP/m/base"
cache_put acme/llm-chat $C_ALIGNED "$TMP/m/aligned"
cache_put acme/llm-chat $C_OLD "$TMP/m32/aligned"
printf '%s' $C_BASE >"$HUB/models--acme--llm-base/refs/main"
printf '%s\n' $C_ALIGNED >"$HUB/models--acme--llm-chat/refs/main"
printf '%s\n' $C_OLD >"$HUB/models--acme--llm-chat/refs/v0.1"
export HF_HUB_CACHE="$HUB"

# ---- apply with model IDs: the same bytes as with the snapshot's files ----
q apply -b "$TMP/m/base" -a "$TMP/m/aligned" -o "$TMP/local" || fail "apply local"
expect_exit 0 "$LOXSTREAM" apply -b acme/llm-base -a acme/llm-chat -o "$TMP/ids"
expect_err "^loxstream: --base: acme/llm-base, revision main = $C_BASE: $HUB/models--acme--llm-base/snapshots/$C_BASE\$"
expect_err "^loxstream: --aligned: acme/llm-chat, revision main = $C_ALIGNED: "
# the weights and side files the same; the cards name the inputs as given
for d in local ids; do
    mkdir "$TMP/$d.cmp" && cp "$TMP/$d"/* "$TMP/$d.cmp/" && rm "$TMP/$d.cmp/README.md"
    grep -v '(README.md)' "$TMP/$d/loxstream.xxh3" >"$TMP/$d.cmp/loxstream.xxh3"
done
same_output "$TMP/local.cmp" "$TMP/ids.cmp"
grep -qx 'base_model: "acme/llm-chat"' "$TMP/ids/README.md" || fail "card: base_model is not the ID"
grep -q "aligned: .acme/llm-chat. (revision .main., commit .$C_ALIGNED.)" "$TMP/ids/README.md" ||
    fail "card: the aligned model's commit is not named"
grep -qx "base_model: \"$(cd "$TMP/m/aligned" && pwd -P)\"" "$TMP/local/README.md" ||
    fail "card: base_model is not the absolute path"
NCHECKS=$((NCHECKS + 3))
expect_exit 0 "$LOXSTREAM" apply -q -b acme/llm-base -a acme/llm-chat -o "$TMP/ids-q"
[ ! -s "$TMP/err" ] || fail "apply -q printed: $(cat "$TMP/err")"

# ---- --revision: a ref, then a commit; inspect lists that snapshot ----
q inspect "$TMP/m32/aligned" --json >"$TMP/old.ls" || fail "inspect old"
q inspect "$TMP/m/aligned" --json >"$TMP/al.ls" || fail "inspect aligned"
cmp -s "$TMP/old.ls" "$TMP/al.ls" && fail "the two revisions' listings do not differ"
expect_exit 0 "$LOXSTREAM" inspect -q --json --revision v0.1 acme/llm-chat
cmp "$TMP/out" "$TMP/old.ls" || fail "--revision v0.1 did not list its snapshot"
expect_exit 0 "$LOXSTREAM" inspect -q --json --revision $C_OLD acme/llm-chat
cmp "$TMP/out" "$TMP/old.ls" || fail "--revision COMMIT did not list that snapshot"
expect_exit 0 "$LOXSTREAM" inspect -q --json acme/llm-chat
cmp "$TMP/out" "$TMP/al.ls" || fail "main did not list the aligned snapshot"
# analyze's --finetuned takes an ID as well
expect_exit 0 "$LOXSTREAM" analyze -q -b "$TMP/m/base" -a "$TMP/m/aligned" -f "$TMP/m/finetuned" --include 'layers\.0\.self_attn\.q_proj'
cp "$TMP/out" "$TMP/an.local"
cache_put acme/llm-ft $C_OLD "$TMP/m/finetuned"
printf '%s\n' $C_OLD >"$HUB/models--acme--llm-ft/refs/main"
expect_exit 0 "$LOXSTREAM" analyze -q -b acme/llm-base -a acme/llm-chat -f acme/llm-ft --include 'layers\.0\.self_attn\.q_proj'
cmp "$TMP/out" "$TMP/an.local" || fail "analyze with model IDs differs"

# ---- where the cache is: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache ----
mkdir -p "$TMP/hfhome" "$TMP/home/.cache/huggingface"
ln -s "$HUB" "$TMP/hfhome/hub"
ln -s "$HUB" "$TMP/home/.cache/huggingface/hub"
expect_exit 0 env -u HF_HUB_CACHE HF_HOME="$TMP/hfhome" "$LOXSTREAM" inspect -q --json acme/llm-chat
cmp "$TMP/out" "$TMP/al.ls" || fail "HF_HOME/hub"
expect_exit 0 env -u HF_HUB_CACHE -u HF_HOME HOME="$TMP/home" "$LOXSTREAM" inspect -q --json acme/llm-chat
cmp "$TMP/out" "$TMP/al.ls" || fail "~/.cache/huggingface/hub"
expect_exit 3 env HF_HUB_CACHE="$TMP/elsewhere" HF_HOME="$TMP/hfhome" "$LOXSTREAM" inspect acme/llm-chat
expect_err "no directory $TMP/elsewhere/models--acme--llm-chat\\)"

# ---- an existing local path always wins over the cache ----
mkdir -p "$TMP/cwd/acme/llm-chat"
cp "$TMP/m/aligned/model-00002-of-00004.safetensors" "$TMP/cwd/acme/llm-chat/"
(cd "$TMP/cwd" && "$LOXSTREAM" inspect acme/llm-chat) >"$TMP/out" 2>"$TMP/err" || fail "inspect local acme/llm-chat"
expect_err ' 1 shard$'
grep -q 'revision' "$TMP/err" && fail "a local path was looked up in the cache"

# ---- missing models and revisions: the directory and the fetch command ----
expect_exit 3 "$LOXSTREAM" apply -b acme/nope -a acme/llm-chat -o "$TMP/o1"
expect_err "^loxstream: --base: 'acme/nope': No such file or directory; as a model ID: model 'acme/nope' is not in the Hugging Face cache \\(no directory $HUB/models--acme--nope\\)"
expect_err 'huggingface-cli download acme/nope$'
expect_exit 3 "$LOXSTREAM" inspect --revision v9 acme/llm-chat
expect_err "no $HUB/models--acme--llm-chat/refs/v9 or "
expect_err 'huggingface-cli download acme/llm-chat --revision v9$'
rm "$HUB/models--acme--llm-chat/snapshots/$C_OLD"/*
rmdir "$HUB/models--acme--llm-chat/snapshots/$C_OLD"
expect_exit 3 "$LOXSTREAM" inspect --revision v0.1 acme/llm-chat
expect_err "refs/v0.1 names commit $C_OLD, but there is no .*\\(an interrupted download\\?\\)"
expect_exit 2 "$LOXSTREAM" inspect --revision ../../etc acme/llm-chat
expect_exit 2 "$LOXSTREAM" apply -b "$TMP/m/base" -a "$TMP/m/aligned" -o "$TMP/o2" --revision main
expect_err "apply: --revision 'main': no input is a model ID"
[ ! -e "$TMP/o1" ] && [ ! -e "$TMP/o2" ] || fail "a refused run created its output"

# ---- a typo'd path names its option, exit 3 ----
cd "$TMP"
expect_exit 3 "$LOXSTREAM" apply --base bsae --aligned m/aligned -o o3
expect_err "^loxstream: --base: 'bsae': No such file or directory"
expect_exit 3 "$LOXSTREAM" apply -b m/base --aligned m/aligend/ -o o3
expect_err "^loxstream: --aligned: 'm/aligend/': No such file or directory\$"
expect_exit 3 "$LOXSTREAM" lora -b ./m/bse -a m/aligned -o o3
expect_err "^loxstream: --base: './m/bse': No such file or directory\$"
expect_exit 3 "$LOXSTREAM" analyze -b m/base -a m/aligned --finetuned m/finetnued
expect_err "^loxstream: --finetuned: 'm/finetnued': No such file or directory; as a model ID: .*huggingface-cli download m/finetnued\$"
expect_exit 3 "$LOXSTREAM" inspect m/bse/model.safetensors
expect_err "^loxstream: inspect: 'm/bse/model.safetensors': No such file or directory\$"
ln -s m/nothing dangling
expect_exit 3 "$LOXSTREAM" apply -b dangling -a m/aligned -o o3
expect_err "^loxstream: --base: 'dangling': symbolic link to 'm/nothing': No such file or directory\$"
[ ! -e o3 ] || fail "a refused run created its output"

# ---- inputs that are not safetensors, told by their first bytes ----
printf '\200\002\212\012l\374\234F\371 j\250P\031.' >model.bin
printf 'PK\003\004\000\000\010\010\000\000\000\000\000\000' >model.pt
printf 'GGUF\003\000\000\000\000\001\000\000\000\000\000\000' >model.gguf
for f in model.bin model.pt model.gguf m/base/config.json; do
    expect_exit 3 "$LOXSTREAM" apply -b m/base -a "$f" -o o4
    expect_err "^loxstream: --aligned: $f: not a safetensors file \\(looks like "
done
expect_exit 3 "$LOXSTREAM" inspect model.bin
expect_err 'not a safetensors file \(looks like a PyTorch pickle\): convert it first, e.g. python3 -c .*save_file\(torch.load\("model.bin"'
expect_exit 3 "$LOXSTREAM" inspect model.pt
expect_err '\(looks like a zip archive, torch.save.s format\)'
expect_exit 3 "$LOXSTREAM" inspect model.gguf
expect_err '\(looks like GGUF, llama.cpp.s format\)'
expect_exit 3 "$LOXSTREAM" inspect m/base/config.json
expect_err "\\(looks like JSON\\): give the model's directory"
# a directory of PyTorch weights only: how to convert it
mkdir pt
cp model.bin pt/pytorch_model-00001-of-00002.bin
cp model.bin pt/pytorch_model-00002-of-00002.bin
echo '{}' >pt/pytorch_model.bin.index.json
cp m/base/config.json pt/
expect_exit 3 "$LOXSTREAM" apply -b pt -a m/aligned -o o4
expect_err "^loxstream: --base: pt: no \\*.safetensors file, only PyTorch weights \\(pytorch_model\\*.bin\\): convert them first, e.g. python3 -c 'from transformers import AutoModelForCausalLM as M; M.from_pretrained\\(\"pt\"\\).save_pretrained\\(\"pt-safetensors\", safe_serialization=True\\)'\$"
# ... also when it is the snapshot a model ID resolves to
cache_put acme/old-pt 3333333333333333333333333333333333333333 pt
echo 3333333333333333333333333333333333333333 >"$HUB/models--acme--old-pt/refs/main"
expect_exit 3 "$LOXSTREAM" inspect acme/old-pt
expect_err "^loxstream: inspect: $HUB/models--acme--old-pt/snapshots/3{40}: no \\*.safetensors file, only PyTorch weights"
[ ! -e o4 ] || fail "a refused run created its output"
pass

#!/bin/sh
# out_shard.sh - apply --out-shard-size SIZE re-shards the output into
# shards of at most SIZE bytes of tensor data, named as transformers names
# them (model-0000i-of-0000N.safetensors, model.safetensors alone), with a
# matching index: for several sizes the tensors are the same bytes as the
# default layout's (a checksum per tensor from inspect --json and dd), the
# index maps every tensor to the shard holding it and its total_size is
# the sum of the tensor bytes; a run killed at durability points and run
# again ends byte for byte equal to an uninterrupted one; verify passes;
# the default layout is the aligned model's.
. "$TESTS_SRCDIR/cli/lib.sh"

"$LOXSTREAM" synth -q --preset tiny --no-finetuned "$TMP/m" >/dev/null 2>&1 || fail "synth"
M=$TMP/m
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" --rank 4 -o "$@"; }

# sums DIR: "name<TAB>xxh3-or-cksum of its bytes" per tensor, sorted, from
# the offsets inspect --json gives (independent of the shard it is in)
sums() {
    "$LOXSTREAM" inspect -q --json "$1" | tr '{' '\n' | grep '"name"' |
        while IFS= read -r line; do
            n=$(printf '%s\n' "$line" | sed 's/.*"name": *"\([^"]*\)".*/\1/')
            s=$(printf '%s\n' "$line" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
            o=$(printf '%s\n' "$line" | sed 's/.*"offset": *\([0-9]*\).*/\1/')
            b=$(printf '%s\n' "$line" | sed 's/.*"bytes": *\([0-9]*\).*/\1/')
            c=$(dd if="$1/${s##*/}" bs=4096 iflag=skip_bytes,count_bytes skip="$o" count="$b" \
                2>/dev/null | cksum)
            printf '%s\t%s\n' "$n" "$c"
        done | LC_ALL=C sort
}

expect_exit 0 lox "$TMP/def"
# the default: the aligned model's shard names
expect_eq "default shards" "$(cd "$TMP/def" && ls *.safetensors | tr '\n' ' ')" \
    "$(cd "$M/aligned" && ls *.safetensors | tr '\n' ' ')"
sums "$TMP/def" >"$TMP/def.sums"
[ "$(wc -l <"$TMP/def.sums")" -gt 10 ] || fail "inspect --json gave no tensors: $(head -3 "$TMP/def.sums")"
total=$("$LOXSTREAM" inspect -q --json "$M/aligned" | tr '{' '\n' |
    sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' | awk '{s += $1} END {print s}')
max=$("$LOXSTREAM" inspect -q --json "$M/aligned" | tr '{' '\n' |
    sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' | sort -n | tail -1)

for size in 20K 100000 1M 1G; do
    o=$TMP/s$size
    expect_exit 0 lox "$o" --out-shard-size $size
    expect_exit 0 "$LOXSTREAM" verify "$o"
    sums "$o" >"$TMP/s.sums"
    cmp -s "$TMP/def.sums" "$TMP/s.sums" || fail "--out-shard-size $size: other tensor bytes: $(diff "$TMP/def.sums" "$TMP/s.sums" | head -5)"
    NCHECKS=$((NCHECKS + 1))
    case $size in
    *K) lim=$((${size%K} * 1024)) ;;
    *M) lim=$((${size%M} * 1048576)) ;;
    *G) lim=$((${size%G} * 1073741824)) ;;
    *) lim=$size ;;
    esac
    n=$(cd "$o" && ls *.safetensors | wc -l | tr -d ' ')
    if [ "$n" = 1 ]; then
        expect_eq "one shard's name" "$(cd "$o" && ls *.safetensors)" model.safetensors
        [ ! -e "$o/model.safetensors.index.json" ] || fail "an index beside a single shard"
        NCHECKS=$((NCHECKS + 1))
        continue
    fi
    # names 1..N of N, each shard's data within the size unless one tensor
    i=1
    for f in $(cd "$o" && ls *.safetensors); do
        expect_eq "shard name" "$f" "$(printf 'model-%05d-of-%05d.safetensors' $i $n)"
        data=$("$LOXSTREAM" inspect -q --json "$o/$f" | tr '{' '\n' |
            sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p' | awk '{s += $1; c++} END {print s, c}')
        set -- $data
        [ "$1" -le "$lim" ] || [ "$2" = 1 ] || fail "$f: $1 bytes of data in $2 tensors, above $lim"
        NCHECKS=$((NCHECKS + 1))
        i=$((i + 1))
    done
    # the index: total_size and every tensor where it is
    ix=$o/model.safetensors.index.json
    grep -q "\"total_size\": $total" "$ix" || fail "$ix: total_size is not $total"
    NCHECKS=$((NCHECKS + 1))
    "$LOXSTREAM" inspect -q --json "$o" | tr '{' '\n' | grep '"name"' | while IFS= read -r line; do
        tn=$(printf '%s\n' "$line" | sed 's/.*"name": *"\([^"]*\)".*/\1/')
        sh=$(printf '%s\n' "$line" | sed 's/.*"shard": *"\([^"]*\)".*/\1/')
        grep -q "\"$tn\": \"${sh##*/}\"" "$ix" || fail "$ix: $tn is not mapped to ${sh##*/}"
    done
    NCHECKS=$((NCHECKS + 1))
done
[ "$max" -gt 20480 ] || fail "no tensor larger than 20K: the one-tensor shard case is not covered"
# the identity records the size; the default records nothing
grep -q '^option out-shard-size	20480$' "$TMP/s20K/.loxstream/identity" || fail "identity lacks the size"
grep -q 'out-shard-size' "$TMP/def/.loxstream/identity" && fail "the default identity names a size"
NCHECKS=$((NCHECKS + 2))
# another size over an output is another identity: refused
expect_exit 5 lox "$TMP/s20K" --out-shard-size 1M
expect_err 'out-shard-size'

# ---- killed and run again: the same bytes ----
for how in data:3 record:7 create:2 rename:2 card:1 index list; do
    o=$TMP/k
    rm -rf "$o"
    set +e
    LOXSTREAM_TEST_KILL_AT=$how lox "$o" --out-shard-size 20K 2>/dev/null
    st=$?
    set -e
    [ "$st" != 0 ] || fail "LOXSTREAM_TEST_KILL_AT=$how: not killed"
    expect_exit 0 lox "$o" --out-shard-size 20K
    same_output "$TMP/s20K" "$o"
    expect_exit 0 "$LOXSTREAM" verify "$o"
done
# ---- usage ----
expect_exit 2 lox "$TMP/u" --out-shard-size 5B
expect_err "ambiguous"
expect_exit 2 lox "$TMP/u" --out-shard-size 0
[ ! -e "$TMP/u" ] || fail "a refused run created its output"
NCHECKS=$((NCHECKS + 1))
pass

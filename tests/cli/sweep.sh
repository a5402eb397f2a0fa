#!/bin/sh
# apply --anchor and sweeps (issue 12, items 1 and 2).  --anchor base is
# checked by lxcheck (LXCHECK_ANCHOR=base) against W_base + alpha times the
# exact rank-r truncation of dW; every output of an --alpha/--rank sweep is
# byte for byte, with its identity and journal, the single run with the
# same values and --factor-rank K (the largest rank: every rank up to it
# certified), an alpha-only sweep the plain run's; a sweep
# killed at durability points is resumed to the same bytes; the %a/%k and
# list rules; the memory budget counts every output.
. "$TESTS_SRCDIR/cli/lib.sh"
: "${LXCHECK:?}"

M="$TMP/m"
"$LOXSTREAM" synth -q --preset tiny --dtype f32 --seed 7 --no-finetuned "$M" >/dev/null 2>&1 ||
    fail "synth"
B="$M/base" A="$M/aligned"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$B" -a "$A" "$@"; }

# same_run REF DIR: same_output, and the same identity and journal
same_run() {
    same_output "$1" "$2"
    for f in identity journal.part-0001-of-0001; do
        NCHECKS=$((NCHECKS + 1))
        cmp "$1/.loxstream/$f" "$2/.loxstream/$f" || fail "$2: .loxstream/$f differs from $1's"
    done
}

# ---- --anchor base: the paper's rank-r reconstruction --------------------
expect_exit 0 lox -o "$TMP/rec3" --anchor base --alpha 1 --rank 3
LXCHECK_ANCHOR=base
export LXCHECK_ANCHOR
expect_exit 0 "$LXCHECK" "$B" "$A" "$TMP/rec3" 3 1 1e-3
expect_out '^model\.norm\.weight	-	copied$'
expect_exit 0 "$LXCHECK" "$B" "$A" "$TMP/rec3" 3 1.1 1e-1
expect_exit 1 "$LXCHECK" "$B" "$A" "$TMP/rec3" 3 1.1 1e-3
unset LXCHECK_ANCHOR
# against the aligned anchor it is far off: lxcheck has teeth
expect_exit 1 "$LXCHECK" "$B" "$A" "$TMP/rec3" 3 1 1e-3
expect_exit 0 "$LOXSTREAM" verify "$TMP/rec3"
# the side files come from the aligned model, the provenance names the anchor
for f in config.json tokenizer.json; do
    NCHECKS=$((NCHECKS + 1))
    cmp "$A/$f" "$TMP/rec3/$f" || fail "$f is not the aligned model's"
done
expect_exit 0 grep -c '^option anchor	base$' "$TMP/rec3/.loxstream/identity"
expect_exit 0 grep -ac '"loxstream_anchor":"base"' "$TMP/rec3/model-00001-of-00007.safetensors"
# the default records no anchor (its bytes are those of earlier versions)
expect_exit 0 lox -o "$TMP/def"
expect_exit 1 grep -c 'anchor' "$TMP/def/.loxstream/identity"
expect_exit 1 grep -ac 'loxstream_anchor' "$TMP/def/model-00001-of-00007.safetensors"
# a run with the other anchor is another run's output: refused
expect_exit 5 lox -o "$TMP/rec3" --alpha 1 --rank 3
expect_err 'other options or inputs.*anchor'
expect_exit 2 lox -o "$TMP/x" --anchor middle
expect_err "--anchor 'middle': expected base or aligned"

# ---- a sweep: every output is the single run with its values ----------------
expect_exit 0 lox -o "$TMP/sw/k%k-a%a" --alpha 0.5,1.25 --rank 3,6
expect_eq "sweep outputs" "$(ls "$TMP/sw" | tr '\n' ' ')" "k3-a0.5 k3-a1.25 k6-a0.5 k6-a1.25 "
for a in 0.5 1.25; do
    expect_exit 0 lox -o "$TMP/one/k3-a$a" --alpha "$a" --rank 3 --factor-rank 6
    same_run "$TMP/one/k3-a$a" "$TMP/sw/k3-a$a"
    expect_exit 0 lox -o "$TMP/one/k6-a$a" --alpha "$a" --rank 6 --factor-rank 6
    same_run "$TMP/one/k6-a$a" "$TMP/sw/k6-a$a"
    expect_exit 0 "$LOXSTREAM" verify "$TMP/sw/k3-a$a"
    expect_exit 0 "$LXCHECK" "$B" "$A" "$TMP/sw/k3-a$a" 3 "$a" 1e-3
done
# the rank-K output is not the plain run's: its rule (every rank certified)
# is recorded; the plain run records none
expect_exit 0 grep -c '^option factor-rank	6$' "$TMP/sw/k3-a0.5/.loxstream/identity"
expect_exit 0 grep -c '^option factor-rank	6$' "$TMP/sw/k6-a0.5/.loxstream/identity"
expect_exit 1 grep -c 'factor-rank' "$TMP/def/.loxstream/identity"
# the other ranks of a sweep do not change an output: rank 4 of {2,4,6} is
# the single run that certifies every rank up to 6
expect_exit 0 lox -o "$TMP/sw3/k%k" --rank 2,4,6 --tol 1e-5
expect_exit 0 lox -o "$TMP/one/k4" --rank 4 --factor-rank 6 --tol 1e-5
same_run "$TMP/one/k4" "$TMP/sw3/k4"
expect_exit 0 lox -o "$TMP/one/k2" --rank 2 --factor-rank 6 --tol 1e-5
same_run "$TMP/one/k2" "$TMP/sw3/k2"
# the same sweep again: each output found complete
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$B" -a "$A" -o "$TMP/sw/k%k-a%a" --alpha 0.5,1.25 --rank 3,6
expect_err "k3-a0\.5 is complete and intact"
expect_err "k6-a1\.25 is complete and intact"
# an alpha sweep with the anchor, with one report per output
expect_exit 0 lox -o "$TMP/swb-a%a" --anchor base --alpha 1,-1 --rank 3 --report "$TMP/r-%a.tsv"
same_run "$TMP/rec3" "$TMP/swb-a1"
expect_exit 0 grep -c '^model\.layers\.0\.mlp\.up_proj\.weight	0	172	64	F32	lowrank	3	' "$TMP/r--1.tsv"
LXCHECK_ANCHOR=base
export LXCHECK_ANCHOR
expect_exit 0 "$LXCHECK" "$B" "$A" "$TMP/swb-a-1" 3 -1 1e-3
unset LXCHECK_ANCHOR
# a single value with %a: the value as typed
expect_exit 0 lox -o "$TMP/single-a%a" --alpha 1.250
same_run "$TMP/def" "$TMP/single-a1.250"

# ---- a sweep killed at durability points, then resumed -----------------------
LOXSTREAM_TEST_TRACE=1 lox -o "$TMP/tr/k%k-a%a" --alpha 0.5,1.25 --rank 3,6 2>"$TMP/trace.err" ||
    fail "the traced sweep failed"
points=$(grep -c 'test: point' "$TMP/trace.err")
[ "$points" -gt 40 ] || fail "unexpected trace: $points points"
for frac in 1 3 5 7; do
    at=$((points * frac / 8))
    rm -rf "$TMP/k"
    set +e
    LOXSTREAM_TEST_KILL_AT=$at lox -o "$TMP/k/k%k-a%a" --alpha 0.5,1.25 --rank 3,6 2>/dev/null
    status=$?
    set -e
    [ "$status" -ne 0 ] || fail "the run to be killed at point $at ended with 0"
    expect_exit 0 lox -o "$TMP/k/k%k-a%a" --alpha 0.5,1.25 --rank 3,6
    for d in k3-a0.5 k3-a1.25 k6-a0.5 k6-a1.25; do
        same_output "$TMP/sw/$d" "$TMP/k/$d"
        expect_exit 0 "$LOXSTREAM" verify "$TMP/k/$d"
    done
done

# ---- the rules --------------------------------------------------------------
expect_exit 2 lox -o "$TMP/x" --alpha 0.5,1
expect_err "--alpha gives 2 values but --output '.*/x' has no %a"
expect_exit 2 lox -o "$TMP/x-a%a" --rank 2,4
expect_err "--rank gives 2 values but --output .* has no %k"
expect_exit 2 lox -o "$TMP/x-a%a" --alpha 1,1.0
expect_err "--alpha: the value 1.0 is given twice"
expect_exit 2 lox -o "$TMP/x-k%k" --rank 0,4
expect_err "0 \(full rank, no factorisation\) cannot be swept"
expect_exit 2 lox -o "$TMP/x" --rank 4 --factor-rank 3
expect_err "--factor-rank 3 is below --rank 4"
expect_exit 2 lox -o "$TMP/x-a%a" --alpha 1,2 --report -
expect_err "--report -: a sweep writes one report per output"
expect_exit 2 lox -o "$TMP/x-a%a" --alpha 1,2 --report "$TMP/r.tsv"
expect_err "--report '.*/r.tsv' names the same file for several outputs"
# expanded paths that collide (1 and 12, 11 and 2 both give 112): refused before any directory is made
expect_exit 2 lox -o "$TMP/c-%a%k" --alpha 1,11 --rank 12,2
expect_err "gives the directory '.*/c-112' for several outputs"
[ ! -e "$TMP/c-1112" ] && [ ! -e "$TMP/c-112" ] || fail "a colliding sweep made directories"
expect_exit 2 lox -o "$TMP/x-a%a" --alpha 1,2 --part 1/2
expect_err "--part with a sweep"
expect_exit 2 lox -o "$TMP/x-a%a" --alpha 1,,2
expect_err "expected a comma-separated list"
# the budget counts each output's buffers: one fits, eight do not
expect_exit 0 lox -o "$TMP/mem1" --max-memory 60M
expect_exit 2 lox -o "$TMP/mem-k%k-a%a" --max-memory 60M --alpha 0.5,1,1.5,2 --rank 3,6
expect_err "--max-memory 60.00 MiB is too small.*the sweep writes 8 outputs at once"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/x" ] && [ ! -e "$TMP/x-a1" ] && [ ! -e "$TMP/mem-k3-a0.5" ] ||
    fail "a refused run created its output"

pass

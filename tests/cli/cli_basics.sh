#!/bin/sh
# The command line itself: help, version, usage errors (exit 2) before any work.
. "$TESTS_SRCDIR/cli/lib.sh"

expect_exit 0 "$LOXSTREAM" --help
expect_out '^Usage: loxstream COMMAND'
expect_out 'apply'
expect_out 'inspect'
expect_out 'synth'
expect_exit 2 "$LOXSTREAM"
expect_err 'Usage'
expect_exit 2 "$LOXSTREAM" frobnicate
expect_err "unknown command 'frobnicate'"
expect_out_none() { [ ! -s "$TMP/out" ] || fail "stdout: $(head -3 "$TMP/out")"; }

# help [COMMAND]: the top-level help, or exactly COMMAND --help
"$LOXSTREAM" --help >"$TMP/top" || fail "--help"
grep -q "^Report bugs to .*License: BSD-2-Clause" "$TMP/top" || fail "--help: no bug-report or license line"
expect_exit 0 "$LOXSTREAM" help
cmp "$TMP/out" "$TMP/top" || fail "'help' differs from '--help'"
for c in analyze apply inspect lora synth verify; do
    "$LOXSTREAM" $c --help >"$TMP/want" || fail "$c --help"
    grep -q "Usage: loxstream $c" "$TMP/want" || fail "$c --help: no usage line"
    expect_exit 0 "$LOXSTREAM" help $c
    cmp "$TMP/out" "$TMP/want" || fail "'help $c' differs from '$c --help'"
done
expect_exit 2 "$LOXSTREAM" help frobnicate
expect_err "unknown command 'frobnicate'"
expect_out_none
expect_exit 2 "$LOXSTREAM" help apply lora
expect_err "one COMMAND at most"

expect_exit 0 "$LOXSTREAM" --version
expect_out '^loxstream [0-9]+\.[0-9]+\.[0-9]+'
expect_out '^BLIS [0-9.]+, kernels [a-z0-9]+ \((detected by BLIS|chosen by loxstream|set by BLIS_ARCH_TYPE)'
expect_exit 0 env BLIS_ARCH_TYPE=3 "$LOXSTREAM" --version
expect_out 'kernels haswell \(set by BLIS_ARCH_TYPE=3\)'

expect_exit 0 "$LOXSTREAM" apply --help
expect_out '--rank'
for opt in --base --aligned --output --rank --alpha --tol --power-iters --oversample --seed \
    --exact --include --exclude --max-memory --threads --report --quiet; do
    grep -q -- "$opt" "$TMP/out" || fail "apply --help does not mention $opt"
done

d="$TMP/x"
expect_exit 2 "$LOXSTREAM" apply --aligned "$d" --output "$d/o"
expect_err 'required'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --alpha nan
expect_err "--alpha: invalid number 'nan'"
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --alpha inf
expect_err '--alpha'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --rank -1
expect_err "--rank: invalid number '-1'"
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --rank 2x
expect_err '--rank'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --max-memory -5G
expect_err '--max-memory'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --tol 1e-3 --power-iters 2
expect_err 'exclude each other'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --threads 0
expect_err '--threads'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --bogus
expect_err "unknown option '--bogus'"
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" --include '('
expect_err 'invalid regular expression'
expect_exit 2 "$LOXSTREAM" apply -b "$d" -a "$d" -o "$d/o" extra
expect_err "unexpected argument 'extra'"
[ ! -e "$d" ] || fail "a usage error created $d"
pass

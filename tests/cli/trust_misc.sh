#!/bin/sh
# The smaller promises of issue 11, item 8: signals end with one line (and
# lora's unfinished file removed), lora after a kill, lora's and synth's
# free-space checks, the empty tensor name refused everywhere, report names
# escaped, one rank warning per 3-D tensor, parts of one output split one
# way, an empty --output a usage error.
. "$TESTS_SRCDIR/cli/lib.sh"
. "$TESTS_SRCDIR/cli/stlib.sh"

M="$TMP/m"
"$LOXSTREAM" synth -q --preset tiny --seed 7 --no-finetuned --shard-size 200K "$M" || fail "synth"
lox() { "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }
lora() { "$LOXSTREAM" lora -q -j 1 -b "$M/base" -a "$M/aligned" "$@"; }

# -o "": usage errors
expect_exit 2 lox -o ""
expect_err "apply: --output: the path is empty"
expect_exit 2 lora -o ""
expect_err "lora: --output: the path is empty"

# the empty tensor name: refused at input by every command
E="$TMP/empty.safetensors"
st_file "$E" '{"":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}' 8
for cmd in inspect apply lora analyze; do
    case $cmd in
    inspect) expect_exit 3 "$LOXSTREAM" inspect "$E" ;;
    apply) expect_exit 3 "$LOXSTREAM" apply -q -b "$E" -a "$E" -o "$TMP/eo" ;;
    lora) expect_exit 3 "$LOXSTREAM" lora -q -b "$E" -a "$E" -o "$TMP/el" ;;
    analyze) expect_exit 3 "$LOXSTREAM" analyze -q -b "$E" -a "$E" ;;
    esac
    expect_err "$E: a tensor has an empty name"
done

# a 3-D tensor of 5 matrices 2 x 3 at rank 6: one warning; a name with a
# tab: escaped in the report, one row, one field
ones=$(awk 'BEGIN { for (i = 0; i < 30; i++) printf "\\000\\000\\200\\077" }')
mkdir -p "$TMP/b3" "$TMP/a3"
J3='{"w3":{"dtype":"F32","shape":[5,2,3],"data_offsets":[0,120]},"x\ty":{"dtype":"F32","shape":[2],"data_offsets":[120,128]}}'
st_file "$TMP/b3/model.safetensors" "$J3" 128
{ le64 "$(nbytes "$J3")"; printf %s "$J3"; printf "$ones"; zeros 8; } >"$TMP/a3/model.safetensors"
expect_exit 0 "$LOXSTREAM" apply -j 1 -b "$TMP/b3" -a "$TMP/a3" -o "$TMP/o3" --report "$TMP/r3.tsv"
expect_eq "rank warnings for the 3-D tensor" "$(grep -c "tensor 'w3': rank 6 exceeds" "$TMP/err")" 1
expect_err "tensor 'w3': rank 6 exceeds min\(2, 3\): using rank 2 for each of its matrices"
expect_eq "report rows of the tab name" "$(grep -c '^x\\ty	' "$TMP/r3.tsv")" 1
expect_eq "fields of every report row" "$(awk -F '\t' '{ print NF }' "$TMP/r3.tsv" | sort -u)" 16

# parts: a split into 3 is refused while a split into 2 is under way
expect_exit 0 lox -o "$TMP/p" --part 1/2
expect_exit 5 lox -o "$TMP/p" --part 2/3
expect_err "--part 2/3: the output is being split into another number of parts \(it holds .loxstream/journal.part-0001-of-0002\)"
expect_exit 0 lox -o "$TMP/p" --part 2/2
lox -o "$TMP/ref" || fail "the fresh run"
same_output "$TMP/ref" "$TMP/p"

# free space: lora and synth refuse before anything is made
expect_exit 1 env LOXSTREAM_TEST_AVAIL=1000 "$LOXSTREAM" lora -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/l0"
expect_err "$TMP/l0: not enough free space"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/l0" ] || fail "lora made its output without the space for it"
expect_exit 1 env LOXSTREAM_TEST_AVAIL=1000 "$LOXSTREAM" synth -q --preset tiny "$TMP/s0"
expect_err "$TMP/s0: not enough free space"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/s0" ] || fail "synth wrote without the space for it"

# signal_at SIG CMD...: run CMD, paused at its second factorisation, send
# SIG and let it go on; status in rc, stderr in $TMP/err
signal_at() {
    sig=$1
    shift
    set +e
    LOXSTREAM_TEST_PAUSE_AT=factored:2 "$@" >/dev/null 2>"$TMP/err" &
    pid=$!
    set -e
    wait_stopped "$pid"
    kill -"$sig" "$pid"
    # after SIGKILL the shell may have reaped it already: nothing to wake
    kill -CONT "$pid" 2>/dev/null || true
    set +e
    wait "$pid"
    rc=$?
    set -e
}
[ -d /proc/self ] || skip_test "no /proc to see a paused process"

# apply: SIGTERM ends with one line; the same command resumes
signal_at TERM "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/t"
expect_eq "exit status after SIGTERM" "$rc" 143
expect_eq "last line after SIGTERM" "$(tail -n 1 "$TMP/err")" "loxstream: interrupted: rerun the same command to resume"
expect_eq "lines after the pause" "$(grep -vc '^loxstream: test:' "$TMP/err")" 1
expect_exit 0 lox -o "$TMP/t"
same_output "$TMP/ref" "$TMP/t"

# lora: SIGHUP removes its .partial.  A SIGHUP ignored when this test
# started (under nohup) stays ignored in its children, as loxstream leaves
# it: then SIGTERM stands in for it
lora -o "$TMP/lref" || fail "the fresh lora"
hup=HUP
hup_rc=129
if [ $(( 0x$(awk '/^SigIgn:/{print $2}' /proc/self/status) & 1 )) -ne 0 ]; then
    skipped "SIGHUP is ignored here (nohup): lora's SIGHUP case run with SIGTERM"
    hup=TERM
    hup_rc=143
fi
signal_at "$hup" "$LOXSTREAM" lora -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/lh"
expect_eq "exit status after SIG$hup" "$rc" "$hup_rc"
expect_err "^loxstream: interrupted: the unfinished adapter file was removed"
expect_eq "files left by the interrupted lora" "$(ls -A "$TMP/lh")" ""
expect_exit 0 lora -o "$TMP/lh"
cmp "$TMP/lref/adapter_model.safetensors" "$TMP/lh/adapter_model.safetensors" || fail "lora after SIGHUP"

# lora killed (SIGKILL: nothing can clean up): the rerun removes the
# leftover and writes the adapter
signal_at KILL "$LOXSTREAM" lora -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/lk"
NCHECKS=$((NCHECKS + 1))
[ -f "$TMP/lk/adapter_model.safetensors.partial" ] || fail "no leftover after SIGKILL"
expect_exit 0 lora -o "$TMP/lk"
expect_err "adapter_model.safetensors.partial: left by an interrupted run: removed"
cmp "$TMP/lref/adapter_model.safetensors" "$TMP/lk/adapter_model.safetensors" || fail "lora after SIGKILL"
expect_eq "files after the rerun" "$(ls -A "$TMP/lk" | tr '\n' ' ')" "README.md adapter_config.json adapter_model.safetensors "

# lora, as apply, never writes into an input directory (nor a factor
# store): exit 5, nothing made
sum_before=$(cat "$M"/aligned/* | cksum)
expect_exit 5 lora -o "$M/aligned/adapter"
expect_err "output directory is inside the input"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$M/aligned/adapter" ] || fail "lora made its output inside the aligned input"
expect_eq "aligned input after the refusal" "$(cat "$M"/aligned/* | cksum)" "$sum_before"
expect_exit 0 "$LOXSTREAM" factor -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/fac"
expect_exit 5 lora --factors "$TMP/fac" -o "$TMP/fac/sub"
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/fac/sub" ] || fail "lora made its output inside the factor store"
expect_exit 0 "$LOXSTREAM" verify -q "$TMP/fac"

# lora's create failing for another reason than a running lora: exit 1
if [ "$(id -u)" != 0 ]; then
    mkdir "$TMP/ro" && chmod 555 "$TMP/ro"
    expect_exit 1 lora -o "$TMP/ro"
    expect_err "adapter_model.safetensors.partial: cannot create: Permission denied"
else
    skipped "running as root: a directory cannot be made unwritable (lora's create error)"
fi

pass

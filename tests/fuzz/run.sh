#!/bin/sh
# run.sh - build the fuzz targets, replay the seeds and the recorded crash
# reproducers, then fuzz each target for FUZZ_SECONDS (default 60).
#
#   tests/fuzz/run.sh [OUTDIR]          (default: ./fuzz-build)
#   FUZZ_SECONDS=300 FUZZ_TARGETS="header index" tests/fuzz/run.sh /tmp/fz
#
# New inputs go to OUTDIR/corpus/<target> (kept between runs, never into the
# source tree); a crash is written to OUTDIR/crashes/<target>-crash-<sha1>
# and makes the script fail.  tests/fuzz/crashes/ holds open findings: they
# are not replayed (see tests/fuzz/README).  One summary line per target goes to stdout and
# to OUTDIR/summary.txt: executions, executions/s, coverage, corpus size.
set -u
export LC_ALL=C                    # the logs hold raw input bytes

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-fuzz-build}
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-header index checkpoint}

"$here/build.sh" "$out" || exit 1
out=$(cd "$out" && pwd)
mkdir -p "$out/crashes"
: >"$out/summary.txt"

# Only what libFuzzer reports counts: no leak is tolerated either.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in $targets; do
    bin=$out/fuzz_$t
    seeds=$here/corpus/$t
    work=$out/corpus/$t
    mkdir -p "$work"
    # 64 KiB covers every seed and a header of a few hundred tensors
    opts="-max_len=65536 -timeout=10 -rss_limit_mb=2048 -dict=$here/$t.dict"

    # 1. every seed once: the valid and invalid files, and the reproducers
    #    of fixed findings (regress-*), so that a regression shows at once
    # shellcheck disable=SC2086
    if ! "$bin" $opts -runs=0 "$seeds" >"$out/$t-replay.log" 2>&1; then
        tail -n 40 "$out/$t-replay.log"
        echo "fuzz: $t: a seed fails (log: $out/$t-replay.log)" >&2
        status=1
        continue
    fi

    # 2. fuzz
    start=$(date +%s)
    # shellcheck disable=SC2086
    "$bin" $opts -max_total_time="$seconds" -print_final_stats=1 \
        -artifact_prefix="$out/crashes/$t-" "$work" "$seeds" >"$out/$t.log" 2>&1
    rc=$?
    elapsed=$(($(date +%s) - start))
    runs=$(awk '/stat::number_of_executed_units:/{print $2}' "$out/$t.log")
    speed=$(awk '/stat::average_exec_per_sec:/{print $2}' "$out/$t.log")
    last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
    units=$(ls "$work" | wc -l)
    line="fuzz: $t: ${elapsed}s, ${runs:-?} executions, ${speed:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus $units"
    if [ $rc -ne 0 ]; then
        line="$line, FAILED (exit $rc; log: $out/$t.log)"
        grep -E 'ERROR|invariant failed|refuses|does not parse|Test unit written' "$out/$t.log" | head -n 5 >&2
        status=1
    fi
    echo "$line" | tee -a "$out/summary.txt"
done
exit $status

#!/bin/sh
# A real Slurm job array: a one-node cluster of this machine (munged,
# slurmctld and slurmd of Debian's slurm-wlm and munge, started here as
# root with a slurm.conf, key, state, spool and logs in a temporary
# directory) runs examples/loxstream-array.sbatch as `sbatch --array=1-4
# --mem=600M`; every task completes, the output verifies and is byte for
# byte a one-process run.  Then again into a new directory with part 2
# stopped midway and scancel'ed: the output is left incomplete, and the
# array submitted again completes it, the same bytes.  Every daemon started
# here is stopped by its pid, and the directory removed.  Installs
# nothing: SKIP without those programs or without root.
. "$TESTS_SRCDIR/cli/lib.sh"

[ "$(id -u)" = 0 ] || skip_test "not root (the test starts slurmctld and slurmd)"
for p in munged slurmctld slurmd sbatch squeue scontrol scancel; do
    have "$p" || [ -x "/usr/sbin/$p" ] || skip_test "$p not found (Debian packages slurm-wlm and munge)"
done
PATH=$PATH:/usr/sbin
SCRIPT="$TESTS_SRCDIR/../examples/loxstream-array.sbatch"
[ -r "$SCRIPT" ] || fail "$SCRIPT not found"

S="$TMP/slurm"
PIDS=
# the slurmstepd processes of this cluster (their environment names its
# slurm.conf): they end on their own once their job is done
stepds() {
    for e in /proc/[0-9]*/environ; do
        d=${e%/environ}
        { [ "$(cat "$d/comm")" = slurmstepd ] &&
            tr '\0' '\n' <"$e" | grep -qx "SLURM_CONF=$S/slurm.conf" &&
            echo "${d#/proc/}"; } 2>/dev/null
    done
    return 0
}
# (also from the EXIT trap: never stops halfway)
stop_daemons() {
    set +e
    w=0
    while [ -n "$PIDS" ] && [ -n "$(stepds)" ] && [ $w -lt 25 ]; do
        sleep 0.2
        w=$((w + 1))
    done
    PIDS="$(stepds) $PIDS"
    for p in $PIDS; do
        kill "$p" 2>/dev/null || true
    done
    for p in $PIDS; do
        w=0
        while kill -0 "$p" 2>/dev/null && [ $w -lt 50 ]; do
            sleep 0.1
            w=$((w + 1))
        done
        kill -9 "$p" 2>/dev/null || true
    done
    PIDS=
    set -e
}
trap 'stop_daemons; rm -rf "$TMP"' EXIT INT TERM

# ---- the cluster -----------------------------------------------------------
mkdir -p "$S/munge" "$S/ctld" "$S/spool" "$S/log" "$S/out"
chmod 700 "$S/munge"
dd if=/dev/urandom of="$S/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$S/munge/munge.key"
munged -F --force --key-file="$S/munge/munge.key" --socket="$S/munge/sock" \
    --pid-file="$S/munge/munged.pid" --seed-file="$S/munge/seed" \
    --log-file="$S/log/munged.log" >"$S/log/munged.out" 2>&1 &
PIDS="$!"
w=0
while [ ! -S "$S/munge/sock" ] && [ $w -lt 50 ]; do
    sleep 0.1
    w=$((w + 1))
done
[ -S "$S/munge/sock" ] || { cat "$S/log/munged.out" "$S/log/munged.log" >&2; fail "munged did not start"; }

host=$(hostname -s)
# this machine as slurmd sees it (CPUs, sockets, cores, RealMemory)
node=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
# ports of this run (two tests at once on one machine do not collide)
port=$((20000 + $$ % 20000))
cat >"$S/slurm.conf" <<EOF
ClusterName=lxtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/munge/sock
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=2
$node State=UNKNOWN
PartitionName=lx Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
SLURM_CONF="$S/slurm.conf"
export SLURM_CONF
slurmctld -D -i -f "$SLURM_CONF" >"$S/log/slurmctld.out" 2>&1 &
PIDS="$! $PIDS"
slurmd -D -f "$SLURM_CONF" -N "$host" >"$S/log/slurmd.out" 2>&1 &
PIDS="$! $PIDS"
logs() { tail -n 20 "$S"/log/* "$S"/out/* >&2; }
w=0
until [ "$(sinfo -h -n "$host" -o %t 2>/dev/null)" = idle ]; do
    w=$((w + 1))
    [ $w -lt 100 ] || { logs; fail "the node did not come up in 20 s"; }
    sleep 0.2
done

# ---- the job arrays --------------------------------------------------------
M="$TMP/m"
"$LOXSTREAM" synth -q --preset small --no-finetuned "$M" || fail "synth"
expect_exit 0 "$LOXSTREAM" apply -q -j 1 -b "$M/base" -a "$M/aligned" -o "$TMP/ref"
export LOXSTREAM

# submit OUT: the array of 4 over OUT; prints its job id
submit() {
    sbatch --parsable --array=1-4 --mem=600M --cpus-per-task=1 -o "$S/out/%x-%A_%a.out" \
        -J "${1##*/}" "$SCRIPT" "$M/base" "$M/aligned" "$1" -q
}
# wait_done JOB: until no task of JOB is pending, running or completing (40 s)
wait_done() {
    w=0
    while [ -n "$(squeue -h -j "$1" -t PD,R,CG,CF,S 2>/dev/null)" ]; do
        w=$((w + 1))
        [ $w -lt 200 ] || { logs; fail "job $1 not done in 40 s"; }
        sleep 0.2
    done
}
# states JOB: "TASK STATE EXIT" per task, sorted (scontrol: no accounting needed)
states() {
    scontrol -o show job "$1" | tr ' ' '\n' |
        awk -F= '$1 == "ArrayTaskId" { t = $2 } $1 == "JobState" { s = $2 }
                 $1 == "ExitCode" { print t, s, $2 }' | sort -n
}
all_completed() {
    NCHECKS=$((NCHECKS + 1))
    got=$(states "$1" | tr '\n' ';')
    [ "$got" = "1 COMPLETED 0:0;2 COMPLETED 0:0;3 COMPLETED 0:0;4 COMPLETED 0:0;" ] ||
        { cat "$S"/out/* >&2; fail "job $1: tasks $got"; }
}

j=$(submit "$TMP/lox") || { logs; fail "sbatch refused the array"; }
wait_done "$j"
all_completed "$j"
same_output "$TMP/ref" "$TMP/lox"
expect_exit 0 "$LOXSTREAM" verify "$TMP/lox"
# the task that found it complete verified it, in its output file
NCHECKS=$((NCHECKS + 1))
cat "$S"/out/lox-"$j"_*.out | grep -q 'complete and intact' ||
    { cat "$S"/out/* >&2; fail "no task of job $j verified the output"; }

# Part 2 stops itself (SIGSTOP at its second durable tensor, the test hook)
# and is cancelled there; the others finish.
LOXSTREAM_TEST_KILL_AT=data-sync:2 LOXSTREAM_TEST_KILL_SIGNAL=STOP
export LOXSTREAM_TEST_KILL_AT LOXSTREAM_TEST_KILL_SIGNAL
cat >"$TMP/stopping" <<EOF
#!/bin/sh
case "\$*" in
*"--part 2/4"*) echo \$\$ >"$TMP/part2.pid"; exec "$LOXSTREAM" "\$@" ;;
esac
unset LOXSTREAM_TEST_KILL_AT LOXSTREAM_TEST_KILL_SIGNAL
exec "$LOXSTREAM" "\$@"
EOF
chmod +x "$TMP/stopping"
real=$LOXSTREAM
LOXSTREAM="$TMP/stopping"
j=$(submit "$TMP/lox2") || fail "sbatch refused the second array"
LOXSTREAM=$real
unset LOXSTREAM_TEST_KILL_AT LOXSTREAM_TEST_KILL_SIGNAL
# until part 2 has stopped midway and the other tasks are done
stopped() {
    [ -s "$TMP/part2.pid" ] &&
        [ "$(awk '{print $3}' "/proc/$(cat "$TMP/part2.pid")/stat" 2>/dev/null)" = T ]
}
w=0
until stopped && [ "$(squeue -h -j "$j" -t PD,R,CG,CF,S | wc -l)" = 1 ]; do
    w=$((w + 1))
    [ $w -lt 200 ] || { logs; states "$j" >&2; fail "part 2 of job $j did not stop midway in 40 s"; }
    sleep 0.2
done
NCHECKS=$((NCHECKS + 1))
grep -q . "$TMP/lox2/.loxstream/journal.part-0002-of-0004" ||
    fail "part 2 stopped before it recorded a tensor"
scancel "${j}_2"
wait_done "$j"
NCHECKS=$((NCHECKS + 1))
got=$(states "$j" | tr '\n' ';')
[ "$got" = "1 COMPLETED 0:0;2 CANCELLED 0:15;3 COMPLETED 0:0;4 COMPLETED 0:0;" ] ||
    case $got in
    "1 COMPLETED 0:0;2 CANCELLED "*";3 COMPLETED 0:0;4 COMPLETED 0:0;") ;;
    *) fail "job $j with part 2 cancelled: tasks $got" ;;
    esac
NCHECKS=$((NCHECKS + 1))
[ ! -e "$TMP/lox2/.loxstream/complete" ] || fail "the output is complete without part 2"
expect_exit 4 "$LOXSTREAM" verify "$TMP/lox2"
expect_err 'incomplete loxstream output'
j=$(submit "$TMP/lox2") || fail "sbatch refused the array submitted again"
wait_done "$j"
all_completed "$j"
same_output "$TMP/ref" "$TMP/lox2"
expect_exit 0 "$LOXSTREAM" verify "$TMP/lox2"

stop_daemons
pass

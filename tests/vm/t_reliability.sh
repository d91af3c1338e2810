#!/usr/bin/env bash
# Reliability under the loads and faults that break sched_ext schedulers:
# a hostile load (CPU, fork, memory hog, affinity churn, fork/exit storm) that
# must not eject gthulhu and whose counters must explain every task; CPU
# hotplug (keep running or restart cleanly, and re-apply the strategies); a
# priority-0 strategy on a hog on every CPU (the host stays responsive); and
# SIGKILL / SIGSTOP under a systemd-style restart loop (the host falls back,
# gthulhu comes back with its strategies).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

NCPU=$(nproc)
SCRATCH=${TMPDIR:-/tmp}
CFG=$RESULTS/reliability.yaml

has_rule() { [ "$(rule_of "$1")" = "$2" ]; }

# write_config REGEX: one strategy, priority 0 with a 2 ms slice, selecting REGEX.
write_config() {
    cat >"$CFG" <<EOF
strategies:
  - name: reliability
    command_regex: "$1"
    priority: 0
    execution_time: 2000000
EOF
}
WANT_RULE="0 2000000"

# spinner NAME SECONDS PROCS: a process named NAME (comm is the file name run)
# that forks PROCS-1 children (same comm), each spinning for SECONDS.
spinner() {
    ln -sf "$(command -v python3)" "$SCRATCH/$1"
    "$SCRATCH/$1" -c '
import os, sys, time
end = time.time() + float(sys.argv[1])
for _ in range(int(sys.argv[2]) - 1):
    if os.fork() == 0:
        break
while time.time() < end:
    pass
' "$2" "$3" &
    SPIN_PID=$!
}

enable_seq() { cat "$SCX/enable_seq" 2>/dev/null || echo none; }
# kernel_scx_errors: sched_ext errors and stalls the kernel has logged so far.
kernel_scx_errors() { dmesg 2>/dev/null | grep -ci 'sched_ext.*\(error\|stall\|failed to run\)' || true; }
no_exit_line() { ! grep -q 'exit:' "$GLOG"; }

# a + e. Hostile load for 30 s: gthulhu stays attached (sampled every 0.2 s,
# enable_seq unchanged), logs no exit, keeps dispatching while the memory hog
# runs, stays under 16 MiB, and afterwards its counters account for every task.
case_hostile_load() {
    start_gthulhu
    local seq0 n0 spid t0 kerr0
    kerr0=$(kernel_scx_errors)
    seq0=$(enable_seq)
    n0=$(bss_lines)
    t0=$(now_ms)
    (cd "$SCRATCH" && timeout -k 5 60 stress-ng --cpu "$NCPU" --fork 2 --vm 1 --vm-bytes 40% \
        --timeout 30s --metrics-brief --temp-path "$SCRATCH") >"$RESULTS/stress-reliability.log" 2>&1 &
    spid=$!
    # Affinity churn: every second, move every stress-ng task to the next CPU.
    (
        i=0
        while kill -0 "$spid" 2>/dev/null; do
            for p in $(pgrep stress-ng); do taskset -a -p -c $((i % NCPU)) "$p" >/dev/null 2>&1 || true; done
            i=$((i + 1))
            sleep 1
        done
    ) &
    local churn=$!
    # Fork/exit storm: short-lived processes and threads.
    (
        while kill -0 "$spid" 2>/dev/null; do
            for _ in 1 2 3 4 5 6 7 8; do /bin/true & done
            wait
            python3 -c 'import threading as t; ts = [t.Thread(target=int) for _ in range(32)]; [x.start() for x in ts]; [x.join() for x in ts]'
        done
    ) &
    local storm=$!
    local left=0 rss=0 samples=0
    # Sampled with shell builtins only: forks are slow under this load.
    local state ops seq key val unit nap
    # read -t on a pipe nobody writes to: a 0.2 s pause without a fork.
    exec {nap}<> <(:)
    while kill -0 "$spid" 2>/dev/null; do
        read -r state <"$SCX/state" || state=missing
        read -r ops <"$SCX/root/ops" || ops=""
        seq=none
        [ ! -r "$SCX/enable_seq" ] || read -r seq <"$SCX/enable_seq"
        if [ "$state" != enabled ] || [ "$ops" != gthulhu ] || [ "$seq" != "$seq0" ]; then
            left=1
            break
        fi
        while read -r key val unit; do
            [ "$key" != VmRSS: ] || [ "$val" -le "$rss" ] || rss=$val
        done <"/proc/$GPID/status"
        samples=$((samples + 1))
        read -rt 0.2 -u "$nap" || true
    done
    exec {nap}>&-
    local rc=0
    wait "$spid" || rc=$?
    wait "$churn" "$storm" 2>/dev/null || true
    measure hostile_load_s $((($(now_ms) - t0) / 1000))
    measure hostile_attached_samples "$samples"
    measure gthulhu_peak_rss_kb "$rss"
    [ "$left" -eq 0 ] || fail "gthulhu left during the load (state $(scx_state), ops '$(scx_ops)', enable_seq $seq0 -> $(enable_seq))"
    measure ejections 0
    assert_eq "$rc" 0 "stress-ng exit code (the load finishes)"
    assert "gthulhu logged an exit during the load" no_exit_line
    assert "gthulhu process gone after the load" gthulhu_alive
    [ "$rss" -lt 16384 ] || fail "gthulhu's peak VmRSS is $rss kB (>= 16 MiB)"

    # It kept dispatching from user space during the memory hog: the
    # nr_user_dispatches of the lines logged during the load grew.
    local n1 first last
    n1=$(bss_lines)
    [ "$n1" -ge $((n0 + 2)) ] || fail "fewer than 2 'bss data:' lines during the load"
    first=$(bss_field nr_user_dispatches $((n0 + 1)))
    last=$(bss_field nr_user_dispatches "$n1")
    assert_gt "$last" "$first" "nr_user_dispatches during the memory hog"
    measure hostile_user_dispatches $((last - first))

    # A quiet moment: two more lines, then every task sent to user space is a
    # user dispatch, a cancel or a failure, up to the few in flight.
    wait_until 5 bss_after "$n1" 2 || fail "no 'bss data:' lines after the load"
    # Every counter from one line: new lines arrive while they are read.
    local q u c f b g k inflight at
    at=$(bss_lines)
    q=$(bss_field nr_queued "$at")
    u=$(bss_field nr_user_dispatches "$at")
    c=$(bss_field nr_cancel_dispatches "$at")
    f=$(bss_field nr_failed_dispatches "$at")
    b=$(bss_field nr_bounce_dispatches "$at")
    g=$(bss_field nr_sched_congested "$at")
    k=$(bss_field nr_kernel_dispatches "$at")
    inflight=$((q - u - c - f))
    measure queued "$q"
    measure user_dispatches "$u"
    measure kernel_dispatches "$k"
    measure cancel_dispatches "$c"
    measure bounce_dispatches "$b"
    measure failed_dispatches "$f"
    measure congested "$g"
    measure inflight_at_rest "$inflight"
    assert_eq "$f" 0 "nr_failed_dispatches"
    [ "$inflight" -ge 0 ] && [ "$inflight" -le $((4 * NCPU + 8)) ] ||
        fail "counters do not add up: queued $q != user $u + cancel $c + failed $f (+ $inflight in flight)"
    assert_eq "$(kernel_scx_errors)" "$kerr0" "sched_ext errors in the kernel log"
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code after the load"
}

# b. CPU hotplug: cpu1 goes offline and back while gthulhu runs a strategy.
# gthulhu keeps running or restarts itself (and says so); afterwards it is
# attached and the strategy's rule is in task_rules again.
case_cpu_hotplug() {
    local cpu=/sys/devices/system/cpu/cpu1/online
    [ -w "$cpu" ] || fail "$cpu is not writable: no CPU hotplug in this VM"
    write_config '^gthulhu-demo$'
    spinner gthulhu-demo 40 1
    local demo=$SPIN_PID
    start_gthulhu --config "$CFG"
    wait_until 10 has_rule "$demo" "$WANT_RULE" || fail "no rule for the demo before the hotplug"
    local seq0 t0
    seq0=$(enable_seq)
    t0=$(now_ms)
    echo 0 >"$cpu"
    wait_until 10 gthulhu_attached || fail "not attached after cpu1 went offline (state $(scx_state))"
    echo 1 >"$cpu"
    wait_until 10 grep -q 1 "$cpu" || fail "cpu1 did not come back online"
    # A restart may follow the online event too: wait for the log to settle.
    local restarts
    wait_until 15 gthulhu_attached || fail "not attached after cpu1 came back (state $(scx_state))"
    wait_until 15 has_rule "$demo" "$WANT_RULE" || fail "the strategy's rule was not re-applied after the hotplug"
    measure hotplug_recovered_ms $(($(now_ms) - t0))
    restarts=$(grep -c 'restarting as the kernel asked' "$GLOG" || true)
    measure hotplug_restarts "$restarts"
    if [ "$restarts" -eq 0 ]; then
        assert_eq "$(enable_seq)" "$seq0" "enable_seq without a logged restart"
        log "gthulhu kept running through the hotplug"
    else
        log "gthulhu restarted $restarts time(s), as its log says"
    fi
    assert "gthulhu process exited over the hotplug" gthulhu_alive
    # Attaching again raised the kept capabilities and lowered them after.
    assert_privileges_dropped
    if grep -q 'ERROR' "$GLOG"; then fail "error line in the log: $(grep ERROR "$GLOG" | head -n 1)"; fi
    kill "$demo" 2>/dev/null || true
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code after the hotplug"
}

# c. Priority misuse: priority 0 for a hog with 2 spinning processes per CPU.
# A probe that sleeps 10 ms at a time still wakes up in bounded time, and the
# watchdog (5 s) never ejects gthulhu.
case_priority_misuse() {
    write_config '^gthulhu-hog$'
    start_gthulhu --config "$CFG"
    local seq0
    seq0=$(enable_seq)
    # The hog outlives the probe by far; it is killed once the probe is done.
    spinner gthulhu-hog 60 $((2 * NCPU))
    local hog=$SPIN_PID
    # The strategy is in force once its tasks run (a bpftool dump here can take
    # over 10 s: everything not boosted waits behind the hog, this shell too).
    local n0 t0
    n0=$(bss_lines)
    t0=$(now_ms)
    wait_until 30 bss_after "$n0" 2 || fail "no 'bss data:' lines next to the hog"
    measure hog_shell_check_ms $(($(now_ms) - t0))
    assert_gt "$(bss_field nr_rule_runs)" 0 "runs of the hog's strategy"
    # 100 sleeps of 10 ms; the probe prints its worst wake-up overshoot in ms.
    local worst
    t0=$(now_ms)
    worst=$(timeout 60 python3 -c '
import time
worst = 0.0
for _ in range(100):
    t = time.monotonic()
    time.sleep(0.01)
    worst = max(worst, time.monotonic() - t - 0.01)
print(int(worst * 1000))
') || fail "the probe did not finish within 60 s next to the hog"
    measure probe_worst_wakeup_ms "$worst"
    measure probe_total_ms $(($(now_ms) - t0))
    assert "the hog ended before the probe: the probe proved nothing" kill -0 "$hog"
    assert "gthulhu ejected next to the priority-0 hog" gthulhu_attached
    assert_eq "$(enable_seq)" "$seq0" "enable_seq next to the hog"
    [ "$worst" -lt 1000 ] || fail "the probe's worst wake-up took $worst ms (>= 1 s)"
    assert "gthulhu logged an exit next to the hog" no_exit_line
    pkill -KILL -P "$hog" 2>/dev/null || true
    kill -KILL "$hog" 2>/dev/null || true
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code after the hog"
}

# d. systemd-style Restart=on-failure: when gthulhu dies it is started again
# after 1 s. SIGKILL: the host falls back (within 3 s) and gthulhu comes back
# with its rule. SIGSTOP: the watchdog ejects it; on SIGCONT it exits 1, and
# the loop brings it back with its rule.
LOOP_PID=""
PIDFILE=$RESULTS/reliability-gthulhu.pid
stop_loop() {
    [ -n "$LOOP_PID" ] && kill -KILL "$LOOP_PID" 2>/dev/null || true
    [ -s "$PIDFILE" ] && kill -KILL "$(cat "$PIDFILE")" 2>/dev/null || true
    kill -CONT "$(cat "$PIDFILE" 2>/dev/null || echo 0)" 2>/dev/null || true
    wait_until 10 scx_disabled || true
}
loop_pid() { cat "$PIDFILE" 2>/dev/null; }
# respawned OLD: the loop started a new gthulhu (not OLD) and it is attached.
respawned() { [ -n "$(loop_pid)" ] && [ "$(loop_pid)" != "$1" ] && gthulhu_attached; }

case_restart_loop() {
    write_config '^gthulhu-demo$'
    spinner gthulhu-demo 60 1
    local demo=$SPIN_PID
    GLOG=$RESULTS/gthulhu-$TEST_NAME-$CASE.log
    : >"$GLOG"
    : >"$PIDFILE"
    (
        while :; do
            "$GTHULHU_BIN" --interval 1 --watchdog-timeout-ms 3000 --config "$CFG" >>"$GLOG" 2>&1 &
            echo $! >"$PIDFILE"
            wait $! || true
            sleep 1
        done
    ) &
    LOOP_PID=$!
    trap 'stop_loop; cleanup_gthulhu' EXIT
    wait_until 20 respawned none || fail "the loop's gthulhu did not attach"
    wait_until 10 has_rule "$demo" "$WANT_RULE" || fail "no rule for the demo"

    local old t0 dt
    old=$(loop_pid)
    t0=$(now_ms)
    kill -KILL "$old"
    wait_until 5 scx_disabled || fail "state $(scx_state) 5 s after SIGKILL"
    dt=$(($(now_ms) - t0))
    measure restart_sigkill_fallback_ms "$dt"
    # t_basic holds an idle host to 1 s; with a priority-0 spinner the first
    # run here took 1.8 s under TCG, so this bound is looser (see README).
    [ "$dt" -le 3000 ] || fail "fallback after SIGKILL took $dt ms (> 3000 ms)"
    wait_until 20 respawned "$old" || fail "gthulhu not back 20 s after SIGKILL"
    wait_until 10 has_rule "$demo" "$WANT_RULE" || fail "rule not re-applied after SIGKILL"
    measure restart_sigkill_back_ms $(($(now_ms) - t0))

    old=$(loop_pid)
    t0=$(now_ms)
    kill -STOP "$old"
    wait_until 20 scx_disabled || fail "the watchdog did not eject the stopped gthulhu"
    measure restart_sigstop_eject_ms $(($(now_ms) - t0))
    kill -CONT "$old"
    wait_until 20 respawned "$old" || fail "gthulhu not back after SIGSTOP + SIGCONT"
    wait_until 10 has_rule "$demo" "$WANT_RULE" || fail "rule not re-applied after SIGSTOP"
    measure restart_sigstop_back_ms $(($(now_ms) - t0))
    grep -q 'exit: kind=' "$GLOG" || fail "the ejected gthulhu did not log the exit reason"
    kill "$demo" 2>/dev/null || true
}

run_case hostile_load case_hostile_load
run_case cpu_hotplug case_cpu_hotplug
run_case priority_misuse case_priority_misuse
run_case restart_loop case_restart_loop
finish

#!/usr/bin/env bash
# Basic life cycle of gthulhu on a sched_ext kernel: it schedules a CPU + fork load,
# detaches cleanly on SIGTERM, and the kernel falls back to its default scheduler
# when gthulhu is killed (SIGKILL) or stops making progress (SIGSTOP -> watchdog).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# stress_ng NAME ARGS...: run stress-ng bounded in time, its output in results.
stress_ng() {
    local name=$1
    shift
    # stress-ng needs a writable temp path; the guest's cwd (the repo) is read-only.
    local tmp
    tmp=$(mktemp -d 2>/dev/null || echo "$RESULTS")
    (cd "$tmp" && timeout -k 5 120 stress-ng "$@" --metrics-brief --temp-path "$tmp") \
        >"$RESULTS/stress-$TEST_NAME-$name.log" 2>&1
}

# a. Under a CPU + fork load the scheduler stays attached and dispatches from user space.
case_load() {
    start_gthulhu
    local n0 n1 spid rc=0 left=0
    n0=$(bss_lines)
    stress_ng load --cpu 4 --fork 2 --timeout 15s &
    spid=$!
    # Sample the state while the load runs: sched_ext must not eject us.
    # Also keep the scheduler's largest resident size.
    local rss=0 r
    while kill -0 "$spid" 2>/dev/null; do
        scx_enabled || { left=1; break; }
        r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$GPID/status" 2>/dev/null || echo 0)
        [ "${r:-0}" -le "$rss" ] || rss=$r
        sleep 0.2
    done
    measure gthulhu_max_rss_kb "$rss"
    wait "$spid" || rc=$?
    [ "$left" -eq 0 ] || fail "sched_ext left enabled during the load (state $(scx_state))"
    assert_eq "$rc" 0 "stress-ng exit code"
    assert "gthulhu exited during the load" gthulhu_alive
    # Two bss lines logged during the load, and the user-space dispatch count grew.
    wait_until 5 bss_after "$n0" 2 || fail "fewer than 2 'bss data:' lines during the load"
    n1=$(bss_lines)
    local first last
    first=$(bss_field nr_user_dispatches $((n0 + 1)))
    last=$(bss_field nr_user_dispatches "$n1")
    [ -n "$first" ] && [ -n "$last" ] || fail "no nr_user_dispatches in 'bss data:' lines"
    assert_gt "$last" "$first" "nr_user_dispatches must grow during the load"
    measure user_dispatches_during_load $((last - first))
    measure kernel_dispatches_total "$(bss_field nr_kernel_dispatches)"
    measure failed_dispatches_total "$(bss_field nr_failed_dispatches)"
    measure cancel_dispatches_total "$(bss_field nr_cancel_dispatches)"
    measure congested_total "$(bss_field nr_sched_congested)"
    # CPU time the scheduler used per task it dispatched (utime + stime, in ticks).
    local ticks
    ticks=$(awk '{ print $14 + $15 }' "/proc/$GPID/stat")
    measure gthulhu_cpu_us_per_dispatch $((ticks * 1000000 / $(getconf CLK_TCK) / (last > 0 ? last : 1)))
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code after the load"
}

# b. SIGTERM: gthulhu detaches, logs why, exits 0, and the kernel is back to default.
case_sigterm() {
    start_gthulhu
    local t0
    t0=$(now_ms)
    stop_gthulhu
    measure sigterm_exit_ms $(($(now_ms) - t0))
    assert_eq "$GRC" 0 "gthulhu exit code on SIGTERM"
    wait_until 5 scx_disabled || fail "state is $(scx_state) 5 s after SIGTERM"
    measure sigterm_disabled_ms $(($(now_ms) - t0))
    assert "no 'exit: kind=' line in the log" grep -q 'exit: kind=' "$GLOG"
}

# c. SIGKILL: the kernel notices the closed struct_ops link and falls back within 1 s.
case_sigkill() {
    start_gthulhu
    local t0 dt
    t0=$(now_ms)
    kill -KILL "$GPID"
    # Poll every 50 ms for up to 5 s so that a slow fallback is still measured.
    wait_until 5 scx_disabled || fail "state is $(scx_state) 5 s after SIGKILL"
    dt=$(($(now_ms) - t0))
    measure sigkill_fallback_ms "$dt"
    wait "$GPID" 2>/dev/null || true
    GPID=""
    [ "$dt" -le 1000 ] || fail "fallback after SIGKILL took $dt ms (> 1000 ms)"
    assert_eq "$(timeout 10 sh -c 'echo alive')" alive "a trivial command after SIGKILL"
}

# d. SIGSTOP: a stopped scheduler leaves tasks runnable; the sched_ext watchdog
# (3 s here) must eject it, and the load must still complete on the default scheduler.
case_sigstop() {
    start_gthulhu --watchdog-timeout-ms 3000
    local spid t0 dt rc=0
    stress_ng sigstop --cpu 2 --fork 1 --timeout 10s &
    spid=$!
    sleep 1
    # If the scheduler was already ejected, SIGSTOP would prove nothing.
    gthulhu_attached || fail "gthulhu was ejected before SIGSTOP (state $(scx_state)): it let a task wait over 3 s"
    # Clock read with a builtin: anything forked now waits on the stopped scheduler.
    t0=$((${EPOCHREALTIME/./} / 1000))
    kill -STOP "$GPID"
    wait_until 30 scx_disabled || fail "watchdog did not eject the stopped scheduler in 30 s"
    dt=$(($(now_ms) - t0))
    measure sigstop_eject_ms "$dt"
    dmesg 2>/dev/null | grep -i sched_ext | tail -n 5 >"$RESULTS/dmesg-$TEST_NAME-sigstop.txt" || true
    # The kernel says how long the starved task waited. No longer than the time
    # since SIGSTOP (plus the watchdog's check period) means the stop caused the
    # stall, not a task that gthulhu kept waiting before.
    local stall
    stall=$(sed -n 's/.*failed to run for \([0-9]*\)\.\([0-9]*\)s.*/\1 \2/p' \
        "$RESULTS/dmesg-$TEST_NAME-sigstop.txt" | tail -n 1 | awk '{ printf "%d", $1 * 1000 + substr($2 "000", 1, 3) }')
    [ -n "$stall" ] || fail "no 'failed to run' line from the sched_ext watchdog"
    measure sigstop_kernel_stall_ms "$stall"
    [ "$stall" -le $((dt + 500)) ] ||
        fail "the stalled task waited ${stall} ms, longer than the ${dt} ms since SIGSTOP"
    wait "$spid" || rc=$?
    assert_eq "$rc" 0 "stress-ng exit code after the ejection"
    kill -KILL "$GPID"
    wait "$GPID" 2>/dev/null || true
    GPID=""
}

run_case load case_load
run_case sigterm case_sigterm
run_case sigkill case_sigkill
run_case sigstop case_sigstop
finish

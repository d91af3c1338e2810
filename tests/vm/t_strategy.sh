#!/usr/bin/env bash
# Strategies in a real kernel: the example config's rule reaches the BPF map
# task_rules for the process it selects (and for a process that execs into a
# matching name), the process's threads run with the strategy's time slice, and
# editing the file removes and re-adds the rule without restarting gthulhu.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

CFG_DIR=$RESULTS/strategy-cfg
CFG=$CFG_DIR/gthulhu.yaml
DEMO=$RESULTS/gthulhu-demo
# What config/gthulhu.yaml gives the processes it selects.
WANT_RULE="0 2000000"

# A process named gthulhu-demo (comm comes from the file name run) whose two
# threads spin for $1 seconds.
start_demo() {
    ln -sf "$(command -v python3)" "$DEMO"
    "$DEMO" -c '
import sys, threading, time
end = time.time() + float(sys.argv[1])
def spin():
    while time.time() < end:
        pass
for _ in range(2):
    threading.Thread(target=spin).start()
' "$1" &
    DEMO_PID=$!
}

has_rule() { [ "$(rule_of "$1")" = "$WANT_RULE" ]; }

# write_config STRATEGIES_YAML: replace the strategies of the example config.
example_without_strategies() { sed '/^strategies:/,$d' config/gthulhu.yaml; }

case_rule_applied_and_edited_live() {
    command -v "$BPFTOOL" >/dev/null || fail "bpftool not found (BPFTOOL=$BPFTOOL)"
    mkdir -p "$CFG_DIR"
    cp config/gthulhu.yaml "$CFG"
    start_demo 60
    start_gthulhu --config "$CFG"
    local gpid=$GPID

    wait_until 10 has_rule "$DEMO_PID" ||
        fail "task_rules[$DEMO_PID] is '$(rule_of "$DEMO_PID")', want '$WANT_RULE'"

    # Under contention, the demo's threads run with the strategy's 2 ms slice.
    local n0 r0 r1
    n0=$(bss_lines)
    timeout 10 stress-ng --cpu 2 --timeout 4s --temp-path "${TMPDIR:-/tmp}" >/dev/null 2>&1 || true
    wait_until 5 bss_after "$n0" 1 || fail "no 'bss data:' line during the load"
    r0=$(bss_field nr_rule_slice_runs "$((n0 + 1))")
    wait_until 5 bss_after "$n0" 2 || fail "only one 'bss data:' line during the load"
    r1=$(bss_field nr_rule_slice_runs)
    assert_gt "$r1" 0 "runs with the strategy's slice"
    measure rule_slice_runs "$r1"
    grep -q 'strategies applied: 1 strategies select' "$GLOG" ||
        fail "no 'strategies applied' log line"

    # In-place edit without the strategy: the rule goes, gthulhu stays.
    example_without_strategies >"$CFG"
    local t0
    t0=$(now_ms)
    wait_until 10 no_rule "$DEMO_PID" || fail "rule still present after removing the strategy"
    measure rule_removed_ms $(($(now_ms) - t0))

    # Editor-style temp file + rename with the strategy back: the rule returns.
    cp config/gthulhu.yaml "$CFG.tmp"
    mv "$CFG.tmp" "$CFG"
    t0=$(now_ms)
    wait_until 10 has_rule "$DEMO_PID" || fail "rule not restored after re-adding the strategy"
    measure rule_added_ms $(($(now_ms) - t0))

    # A process that execs into a matching name is selected too.
    sh -c "sleep 1; exec '$DEMO' -c 'import time; time.sleep(30)'" &
    local exec_pid=$!
    no_rule "$exec_pid" || fail "task_rules has the shell before it exec'd"
    wait_until 10 has_rule "$exec_pid" || fail "no rule for a process that exec'd into gthulhu-demo"

    # A broken file changes nothing and says why in one line.
    echo 'strategies: [ {name: broken, priority: 99' >"$CFG"
    wait_until 5 grep -q 'config not reloaded' "$GLOG" || fail "no error line for a broken file"
    has_rule "$DEMO_PID" || fail "a broken file removed the rule"

    assert_eq "$GPID" "$gpid" "gthulhu pid (no restart)"
    assert "gthulhu left sched_ext during the edits" gthulhu_attached
    # All of the above (rule map updates included) ran without capabilities.
    assert_privileges_dropped
    kill "$exec_pid" "$DEMO_PID" 2>/dev/null || true
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code"
}

run_case rule_applied_and_edited_live case_rule_applied_and_edited_live
finish

# Shared helpers for the in-guest tests (sourced by tests/vm/t_*.sh).
# Conventions: cwd is the repo; $RESULTS is writable; a case is a function run by
# `run_case NAME FUNC` in a subshell with `set -e`, so an assertion fails a case by
# exiting that subshell, and the other cases still run.

RESULTS=${GTHULHU_RESULTS:-results}
GTHULHU_BIN=${GTHULHU_BIN:-target/release/gthulhu}
SCX=/sys/kernel/sched_ext
TEST_NAME=${TEST_NAME:-$(basename "${0%.sh}")}
mkdir -p "$RESULTS"

now_ms() { date +%s%3N; }
log() { echo "[$TEST_NAME${CASE:+/$CASE}] $*" >&2; }

# fail MSG: fail the current case.
fail() {
    log "FAIL: $*"
    exit 1
}
assert() { # assert MSG CMD...: CMD must succeed
    local msg=$1
    shift
    "$@" || fail "$msg"
}
assert_eq() { # assert_eq GOT WANT MSG
    [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"
}
assert_gt() { # assert_gt A B MSG: integers, A > B
    [ "$1" -gt "$2" ] 2>/dev/null || fail "$3: $1 is not greater than $2"
}

# measure KEY VALUE: print a number the lead can quote, and keep it in results.
measure() {
    echo "measure: $1=$2"
    echo "$TEST_NAME${CASE:+/$CASE} $1=$2" >>"$RESULTS/measures.txt"
}

# wait_until TIMEOUT_S CMD...: poll CMD every 50 ms; 0 when it succeeds in time.
wait_until() {
    local deadline=$(($(now_ms) + ${1%.*} * 1000))
    shift
    while :; do
        "$@" && return 0
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

scx_state() { cat "$SCX/state" 2>/dev/null || echo missing; }
scx_ops() { cat "$SCX/root/ops" 2>/dev/null || true; }
scx_enabled() { [ "$(scx_state)" = enabled ]; }
scx_disabled() { [ "$(scx_state)" = disabled ]; }
gthulhu_attached() { scx_enabled && [ "$(scx_ops)" = gthulhu ]; }

GPID=""
GLOG=""
# start_gthulhu ARGS...: start the scheduler (stderr to a log in results) and wait
# until the kernel reports it as the active sched_ext scheduler.
start_gthulhu() {
    [ -x "$GTHULHU_BIN" ] || fail "no scheduler binary at $GTHULHU_BIN (make build)"
    wait_until 10 scx_disabled || fail "sched_ext busy before start (state $(scx_state))"
    GLOG=$RESULTS/gthulhu-$TEST_NAME${CASE:+-$CASE}.log
    : >"$GLOG"
    local t0
    t0=$(now_ms)
    "$GTHULHU_BIN" --interval 1 "$@" >>"$GLOG" 2>&1 &
    GPID=$!
    if ! wait_until 20 gthulhu_attached; then
        tail -n 10 "$GLOG" >&2 || true
        fail "gthulhu did not attach within 20 s (state $(scx_state), ops '$(scx_ops)')"
    fi
    measure attach_ms $(($(now_ms) - t0))
}

gthulhu_alive() { [ -n "$GPID" ] && kill -0 "$GPID" 2>/dev/null; }

# stop_gthulhu: SIGTERM and wait (bounded); the exit code is left in GRC. Not in
# $(...): a subshell cannot wait for gthulhu.
GRC=""
stop_gthulhu() {
    GRC=0
    kill -TERM "$GPID" 2>/dev/null || true
    wait_until 15 gthulhu_exited || { kill -KILL "$GPID" 2>/dev/null || true; }
    wait "$GPID" 2>/dev/null || GRC=$?
    GPID=""
}
gthulhu_exited() { ! kill -0 "$GPID" 2>/dev/null || [[ "$(ps -o stat= -p "$GPID")" == Z* ]]; }

# cleanup: never leave a scheduler (or a stopped one) behind for the next case.
cleanup_gthulhu() {
    if gthulhu_alive; then
        kill -KILL "$GPID" 2>/dev/null || true
        wait "$GPID" 2>/dev/null || true
    fi
    GPID=""
    wait_until 10 scx_disabled || log "warning: sched_ext still $(scx_state) after cleanup"
}

# bss_lines: number of `bss data:` lines logged so far.
# Capabilities gthulhu holds once attached: its scheduling thread keeps
# CAP_SYS_ADMIN, CAP_BPF and CAP_PERFMON permitted (to attach again) but none
# effective; every helper thread holds none at all.
ATTACH_CAPS=000000c000200000
NO_CAPS=0000000000000000
cap_of() { awk -v k="$2:" '$1 == k { print $2 }' "$1"; } # cap_of STATUS_FILE CapEff
assert_privileges_dropped() {
    local status tid name
    for status in /proc/"$GPID"/task/*/status; do
        tid=${status%/status}
        tid=${tid##*/}
        name=$(awk '$1 == "Name:" { print $2 }' "$status")
        assert_eq "$(cap_of "$status" CapEff)" "$NO_CAPS" "effective capabilities of thread $tid ($name)"
        if [ "$tid" = "$GPID" ]; then
            assert_eq "$(cap_of "$status" CapPrm)" "$ATTACH_CAPS" "permitted capabilities of the scheduling thread"
        else
            assert_eq "$(cap_of "$status" CapPrm)" "$NO_CAPS" "permitted capabilities of thread $tid ($name)"
        fi
    done
    measure threads_checked_for_capabilities "$(ls /proc/"$GPID"/task | wc -l)"
}

bss_lines() { grep -c 'bss data:' "$GLOG" 2>/dev/null || true; }
# bss_after N K: at least K more `bss data:` lines than N have been logged.
bss_after() { [ "$(bss_lines)" -ge $(($1 + $2)) ]; }
# bss_field NAME [N]: counter NAME from the N-th `bss data:` line (default: last).
bss_field() {
    local line
    if [ -n "${2:-}" ]; then
        line=$(grep 'bss data:' "$GLOG" | sed -n "${2}p")
    else
        line=$(grep 'bss data:' "$GLOG" | tail -n 1)
    fi
    printf '%s\n' "$line" | sed -n "s/.*\"$1\":\([0-9][0-9]*\).*/\1/p"
}

# run_case NAME FUNC: run one case in a subshell, record PASS/FAIL and its time.
run_case() {
    local name=$1 fn=$2 t0 rc=0
    # CASES="load sigkill" runs only those cases (debugging).
    if [ -n "${CASES:-}" ] && [[ " $CASES " != *" $name "* ]]; then return 0; fi
    t0=$(now_ms)
    log "case $name"
    set +e
    (
        set -e
        CASE=$name
        trap cleanup_gthulhu EXIT
        "$fn"
    )
    rc=$?
    set -e
    local dt=$(($(now_ms) - t0))
    local verdict=PASS
    [ "$rc" -eq 0 ] || verdict=FAIL
    echo "$verdict $TEST_NAME/$name $dt" >>"$RESULTS/cases.txt"
    log "$verdict ($dt ms)"
    [ "$rc" -eq 0 ] || CASES_FAILED=$((${CASES_FAILED:-0} + 1))
}

# finish: exit status of the test file.
finish() { [ "${CASES_FAILED:-0}" -eq 0 ]; }

# Strategy rules as BPF holds them (scripts/bpftool.sh gives a recent bpftool).
BPFTOOL=${BPFTOOL:-bpftool}
# rule_of ID: "priority slice_ns" of task_rules[ID], empty when absent.
rule_of() {
    "$BPFTOOL" -j map dump name task_rules 2>/dev/null | python3 -c '
import json, sys
want = int(sys.argv[1])
for e in json.load(sys.stdin):
    f = e.get("formatted")
    if f:
        key, val = f["key"], f["value"]
        prio, slice_ns = val["priority"], val["slice_ns"]
    else:
        b = lambda xs: bytes(int(x, 16) for x in xs)
        key = int.from_bytes(b(e["key"]), "little", signed=True)
        v = b(e["value"])
        prio, slice_ns = int.from_bytes(v[0:4], "little"), int.from_bytes(v[8:16], "little")
    if key == want:
        print(prio, slice_ns)
' "$1"
}
no_rule() { [ -z "$(rule_of "$1")" ]; }

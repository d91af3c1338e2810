#!/usr/bin/env bash
# Runs inside the VM for `make bench`: for each scheduler (none = the kernel's
# EEVDF, scx_rustland if available, gthulhu, gthulhu with a strategy for the
# probe) and on an idle system, REPS times: the wake-up latency of a periodic
# probe (cyclictest) while stress-ng saturates every CPU, hackbench completion
# time, fork throughput, and the scheduler's own cost. One JSON line per
# measurement goes to $OUT/raw.jsonl; scripts/bench-report.py makes the table.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${BENCH_OUT:-results/bench}
REPS=${BENCH_REPS:-3}
RUSTLAND=${SCX_RUSTLAND:-}
mkdir -p "$OUT"
: >"$OUT/raw.jsonl"
. scripts/guest-scratch.sh
use_scratch "$OUT/tmp"
NCPU=$(nproc)
HOGS=$((NCPU * 2 + 2))

emit() { echo "{\"config\":\"$1\",\"rep\":$2,\"metric\":\"$3\",\"value\":$4}" >>"$OUT/raw.jsonl"; }

# The probe's latency has two parts: the timer interrupt reaching its CPU,
# which the emulator decides (under single-threaded TCG a busy vCPU waits for
# its turn), and the scheduler's part, from the wake-up to the probe running.
# tracefs gives the second: sched_waking and sched_switch of the probe only.
TRACE=/sys/kernel/tracing
trace_probe() { # trace_probe on|off
    if [ "$1" = on ]; then
        mountpoint -q "$TRACE" || mount -t tracefs nodev "$TRACE"
        echo 0 >"$TRACE/tracing_on"
        echo >"$TRACE/trace"
        echo 'comm == "cyclictest"' >"$TRACE/events/sched/sched_waking/filter"
        echo 'next_comm == "cyclictest"' >"$TRACE/events/sched/sched_switch/filter"
        echo 1 >"$TRACE/events/sched/sched_waking/enable"
        echo 1 >"$TRACE/events/sched/sched_switch/enable"
        echo 1 >"$TRACE/tracing_on"
    else
        echo 0 >"$TRACE/tracing_on"
        echo 0 >"$TRACE/events/sched/sched_waking/enable"
        echo 0 >"$TRACE/events/sched/sched_switch/enable"
        cat "$TRACE/trace" >"$TMPDIR/trace.txt"
    fi
}

# latency CONFIG REP LOADED: cyclictest for 6 s (2 ms period), optionally under load.
latency() {
    local spid=""
    if [ "$3" = 1 ]; then
        stress-ng --cpu "$HOGS" --timeout 9s --temp-path "$TMPDIR" >/dev/null 2>&1 &
        spid=$!
        sleep 1
    fi
    trace_probe on
    cyclictest -q -D 6 -i 2000 -h 100000 -m >"$TMPDIR/cyc.txt" 2>/dev/null || true
    trace_probe off
    [ -z "$spid" ] || wait "$spid" || true
    python3 - "$TMPDIR/trace.txt" <<'PY' | while read -r m v; do emit "$1" "$2" "$m" "$v"; done
import re, sys
woken, waits = {}, []
for line in open(sys.argv[1]):
    m = re.search(r" ([0-9.]+): (sched_waking|sched_switch): (.*)", line)
    if not m:
        continue
    t, event, rest = float(m.group(1)), m.group(2), m.group(3)
    if event == "sched_waking":
        woken.setdefault(int(re.search(r" pid=(\d+)", rest).group(1)), t)
    else:
        pid = int(re.search(r"next_pid=(\d+)", rest).group(1))
        if pid in woken:
            waits.append((t - woken.pop(pid)) * 1e6)
waits.sort()
pick = lambda q: waits[min(len(waits) - 1, int(q * len(waits)))] if waits else 0
print("wake_p50_us", round(pick(0.50)))
print("wake_p99_us", round(pick(0.99)))
print("wake_max_us", round(waits[-1]) if waits else 0)
PY
    python3 - "$TMPDIR/cyc.txt" <<'PY' | while read -r m v; do emit "$1" "$2" "$m" "$v"; done
import sys
hist, total, maxv = {}, 0, 0
for line in open(sys.argv[1]):
    if line.startswith("# Max Latencies"):
        maxv = max(int(x) for x in line.split(":")[1].split())
    if line.startswith("#") or not line.strip():
        continue
    us, n = (int(x) for x in line.split()[:2])
    if n:
        hist[us] = hist.get(us, 0) + n
        total += n
def pct(q):
    seen = 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= q * total:
            return us
    return 0
print("lat_p50_us", pct(0.50))
print("lat_p99_us", pct(0.99))
print("lat_max_us", maxv)
print("lat_samples", total)
PY
}

# throughput CONFIG REP: hackbench time and fork ops/s.
throughput() {
    local t0 t1 ops
    t0=${EPOCHREALTIME/./}
    hackbench -g 4 -l 100 >/dev/null 2>&1 || true
    t1=${EPOCHREALTIME/./}
    emit "$1" "$2" hackbench_ms $(((t1 - t0) / 1000))
    ops=$(cd "$TMPDIR" && stress-ng --fork 2 --timeout 5s --metrics-brief --temp-path "$TMPDIR" 2>&1 |
        awk '$4 == "fork" { print $9 }')
    emit "$1" "$2" fork_ops_s "${ops:-0}"
}

SPID=""
start_sched() {
    case "$1" in
        eevdf) return 0 ;;
        rustland) "$RUSTLAND" >"$OUT/rustland.log" 2>&1 & ;;
        gthulhu) target/release/gthulhu --interval 1 >"$OUT/gthulhu.log" 2>&1 & ;;
        gthulhu-strategy)
            target/release/gthulhu --interval 1 --config tests/bench/probe-strategy.yaml \
                >"$OUT/gthulhu-strategy.log" 2>&1 & ;;
    esac
    SPID=$!
    for _ in $(seq 200); do
        [ "$(cat /sys/kernel/sched_ext/state)" = enabled ] && return 0
        sleep 0.1
    done
    echo "bench: $1 did not attach" >&2
    return 1
}

stop_sched() {
    [ -n "$SPID" ] || return 0
    kill -TERM "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=""
}

# cost CONFIG: CPU time per user dispatch, peak RSS and the counters (gthulhu).
cost() {
    local log=$OUT/$1.log stat ticks rss line disp
    stat=$(cat "/proc/$SPID/stat")
    ticks=$(echo "$stat" | awk '{ print $14 + $15 }')
    rss=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SPID/status")
    emit "$1" 0 rss_kb "$rss"
    line=$(grep 'bss data:' "$log" | tail -n 1 | sed 's/.*bss data: //')
    [ -n "$line" ] || return 0
    disp=$(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["nr_user_dispatches"])')
    emit "$1" 0 cpu_us_per_dispatch $((ticks * 1000000 / $(getconf CLK_TCK) / (disp > 0 ? disp : 1)))
    echo "$line" | python3 -c '
import json, sys
c = json.load(sys.stdin)
for k in ("nr_user_dispatches", "nr_kernel_dispatches", "nr_sched_congested", "nr_cancel_dispatches"):
    print(k, c[k])' | while read -r m v; do emit "$1" 0 "$m" "$v"; done
}

for rep in $(seq "$REPS"); do
    echo "bench: idle, rep $rep" >&2
    latency idle "$rep" 0
done
configs="eevdf"
[ -n "$RUSTLAND" ] && [ -x "$RUSTLAND" ] && configs="$configs rustland"
configs="$configs gthulhu gthulhu-strategy"
for c in $configs; do
    start_sched "$c" || continue
    for rep in $(seq "$REPS"); do
        echo "bench: $c, rep $rep" >&2
        latency "$c" "$rep" 1
        throughput "$c" "$rep"
    done
    case "$c" in gthulhu*) cost "$c" ;; esac
    stop_sched
done
echo "bench: done" >&2

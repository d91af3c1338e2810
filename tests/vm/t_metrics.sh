#!/usr/bin/env bash
# /metrics in a real kernel: gthulhu serves the Prometheus text format, which
# prometheus_client's parser reads; under a load, the latency histogram and the
# dispatch count of a strategy's tasks grow between two scrapes; a client that
# connects and sends nothing does not stop the next scrape; gthulhu stats
# shows the strategy.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PY=${PROM_PYTHON:-python3}
ADDR=127.0.0.1:9464
URL=http://$ADDR/metrics
CFG=$RESULTS/metrics-cfg.yaml
DEMO=$RESULTS/gthulhu-demo

# scrape: the body of /metrics (fails on any HTTP error), within 10 s.
scrape() {
    "$PY" -c '
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    ct = r.headers["Content-Type"]
    if not ct.startswith("text/plain; version=0.0.4"):
        sys.exit("Content-Type " + ct)
    sys.stdout.write(r.read().decode())
' "$URL"
}
summary() { scrape | "$PY" tests/metrics/summarize.py; }
# field JSON PATH...: a value from a summary, "" when absent.
field() {
    "$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2:]:
    v = v.get(k, {}) if isinstance(v, dict) else {}
print("" if v == {} else (int(v) if isinstance(v, float) and v.is_integer() else v))
' "$@"
}
demo_selected() { [ "$(field "$(summary)" strategies demo tasks)" -ge 1 ] 2>/dev/null; }

case_strategy_latency_and_dispatches_move() {
    "$PY" -c 'import prometheus_client.parser' ||
        fail "no prometheus_client for $PY (PROM_PYTHON from scripts/prom-parser.sh)"
    cat >"$CFG" <<YAML
scheduler: {interval: 1}
strategies:
  - {name: demo, command_regex: "^gthulhu-demo", priority: 0, execution_time: 2000000}
metrics: {listen: "$ADDR"}
YAML
    ln -sf "$(command -v python3)" "$DEMO"
    # A process of two spinning threads (three tasks with the main thread).
    "$DEMO" -c '
import threading, time
end = time.time() + 120
def spin():
    while time.time() < end:
        time.sleep(0.0005)
        x = 0
        for _ in range(20000):
            x += 1
t = threading.Thread(target=spin); t.start(); spin()
' &
    local demo=$!
    start_gthulhu --config "$CFG"
    wait_until 15 demo_selected || fail "/metrics never showed strategy demo selecting a task"

    timeout 15 stress-ng --cpu 2 --timeout 8s --temp-path "${TMPDIR:-/tmp}" >/dev/null 2>&1 &
    local load=$!
    sleep 2
    local s1 s2
    s1=$(summary) || fail "first scrape did not parse"
    echo "$s1" >"$RESULTS/metrics-scrape1.json"
    sleep 3
    # A client that connects and says nothing holds the server at most 5 s.
    "$PY" -c 'import socket, time; s = socket.create_connection(("127.0.0.1", 9464)); time.sleep(8)' &
    local silent=$!
    sleep 0.5
    local t0
    t0=$(now_ms)
    s2=$(summary) || fail "second scrape (behind a silent client) did not parse"
    measure scrape_behind_silent_client_ms $(($(now_ms) - t0))
    echo "$s2" >"$RESULTS/metrics-scrape2.json"
    kill "$silent" 2>/dev/null || true
    wait "$load" 2>/dev/null || true

    local c1 c2 d1 d2 n1 n2
    c1=$(field "$s1" strategies demo count)
    c2=$(field "$s2" strategies demo count)
    d1=$(field "$s1" strategies demo dispatches)
    d2=$(field "$s2" strategies demo dispatches)
    n1=$(field "$s1" strategies none count)
    n2=$(field "$s2" strategies none count)
    assert_gt "$c2" "$c1" "demo latency histogram count"
    assert_gt "$d2" "$d1" "demo dispatches"
    assert_gt "$n2" "$n1" "unmatched latency histogram count"
    assert_gt "$(field "$s2" counters gthulhu_queued_total)" 0 "gthulhu_queued_total"
    measure demo_runs_between_scrapes $((c2 - c1))
    for s in demo none; do
        measure "${s}_lat_p50_us" "$(field "$s2" strategies $s p50_us)"
        measure "${s}_lat_p90_us" "$(field "$s2" strategies $s p90_us)"
        measure "${s}_lat_p99_us" "$(field "$s2" strategies $s p99_us)"
    done
    measure demo_cpu_s "$(field "$s2" strategies demo cpu_seconds)"

    # gthulhu stats reads the same endpoint into a table with a demo row.
    timeout 5 "$GTHULHU_BIN" stats "$ADDR" >"$RESULTS/stats.txt" 2>&1 || true
    grep -q '^demo ' "$RESULTS/stats.txt" || fail "gthulhu stats shows no demo row: $(head -c 500 "$RESULTS/stats.txt")"

    kill "$demo" 2>/dev/null || true
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code"
}

run_case strategy_latency_and_dispatches_move case_strategy_latency_and_dispatches_move
finish

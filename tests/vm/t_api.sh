#!/usr/bin/env bash
# The Gthulhu API client against a fake server (tests/vm/fake_gthulhu_api.py) in a
# real kernel: gthulhu gets an RS256 token with its public key, fetches the
# strategies with it and the served pid strategy reaches the BPF map task_rules;
# it posts the 11 Gthulhu counters as metrics; an empty list removes the rule;
# while the server is dead the last strategies stay in force and gthulhu stays
# attached; a restarted server (which refuses the old token: 401) is used again
# after a new token, and its strategies replace the old ones.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FAKE=tests/vm/fake_gthulhu_api.py
DIR=$RESULTS/api-cfg
CFG=$DIR/gthulhu.yaml
SERVED=$DIR/strategies.json
REQS=$DIR/requests.jsonl
PORT_FILE=$DIR/port

rule_is() { [ "$(rule_of "$1")" = "$2" ]; }

# serve JSON: the strategy list the server answers from now on (atomic rename).
serve() {
    printf '%s\n' "$1" >"$SERVED.tmp"
    mv "$SERVED.tmp" "$SERVED"
}

SRV_PID=""
# start_server [ARGS...]: start the fake server (port from $PORT_FILE when it exists).
start_server() {
    local port=0
    [ -s "$PORT_FILE" ] && port=$(cat "$PORT_FILE")
    python3 "$FAKE" --strategies "$SERVED" --log "$REQS" --port "$port" \
        --port-file "$PORT_FILE.new" --private-key "$DIR/server_private.pem" "$@" \
        2>>"$DIR/server.stderr" &
    SRV_PID=$!
    wait_until 30 test -s "$PORT_FILE.new" || fail "fake API server did not start within 30 s"
    mv "$PORT_FILE.new" "$PORT_FILE"
}
stop_server() {
    [ -n "$SRV_PID" ] || return 0
    kill -TERM "$SRV_PID" 2>/dev/null || true
    wait "$SRV_PID" 2>/dev/null || true
    SRV_PID=""
}

# api_log CHECK [ARG]: questions about the server's request log ($REQS).
#   count METHOD PATH [STATUS]  number of such requests
#   token_ok PEMFILE           a token request sent exactly that public key, as JSON
#   bearer_ok                  every strategies GET / metrics POST carried a Bearer JWT
#   metrics                    "N BAD MAXUSER": posts, posts without exactly the 11
#                              counters, highest nr_user_dispatches after the first post
#   secrets_absent LOGFILE     no bearer token gthulhu sent, nor its signature, is in LOGFILE
api_log() {
    python3 - "$REQS" "$@" <<'EOF'
import json, sys
path, check, args = sys.argv[1], sys.argv[2], sys.argv[3:]
reqs = [json.loads(l) for l in open(path) if l.strip()] if __import__("os").path.exists(path) else []
FIELDS = {"usersched_last_run_at", "nr_queued", "nr_scheduled", "nr_running",
          "nr_online_cpus", "nr_user_dispatches", "nr_kernel_dispatches",
          "nr_cancel_dispatches", "nr_bounce_dispatches", "nr_failed_dispatches",
          "nr_sched_congested"}
hdr = lambda r, name: next((v for k, v in r["headers"].items() if k.lower() == name), "")
if check == "count":
    m, p = args[0], args[1]
    st = int(args[2]) if len(args) > 2 else None
    print(sum(1 for r in reqs if r["method"] == m and r["path"] == p
              and (st is None or r["status"] == st)))
elif check == "token_ok":
    pem = open(args[0]).read()
    ok = False
    for r in reqs:
        if r["method"] == "POST" and r["path"] == "/api/v1/auth/token":
            try:
                body = json.loads(r["body"])
            except ValueError:
                continue
            ok = ok or (body == {"public_key": pem}
                        and hdr(r, "content-type").startswith("application/json"))
    sys.exit(0 if ok else 1)
elif check == "bearer_ok":
    use = [r for r in reqs if r["path"] in ("/api/v1/scheduling/strategies", "/api/v1/metrics")]
    bad = [r for r in use if not (hdr(r, "authorization").startswith("Bearer ")
                                  and hdr(r, "authorization")[7:].count(".") == 2)]
    sys.exit(0 if use and not bad else 1)
elif check == "metrics":
    posts = [r for r in reqs if r["method"] == "POST" and r["path"] == "/api/v1/metrics"]
    bad, users = 0, []
    for r in posts:
        try:
            body = json.loads(r["body"])
        except ValueError:
            bad += 1
            continue
        if (not isinstance(body, dict) or set(body) != FIELDS
                or not all(isinstance(v, int) and v >= 0 for v in body.values())):
            bad += 1
        elif r is not posts[0]:
            users.append(body["nr_user_dispatches"])
    print(len(posts), bad, max(users, default=0))
elif check == "secrets_absent":
    log = open(args[0], errors="replace").read()
    tokens = {hdr(r, "authorization")[7:] for r in reqs
              if hdr(r, "authorization").startswith("Bearer ")}
    leaked = [t for t in tokens if t in log or t.rsplit(".", 1)[-1] in log]
    print(len(tokens))
    sys.exit(1 if leaked or not tokens else 0)
else:
    sys.exit("api_log: unknown check " + check)
EOF
}
metrics_ready() { # at least 2 posts, and a later one counted user dispatches
    local n bad user
    read -r n bad user <<<"$(api_log metrics)"
    [ "$n" -ge 2 ] && [ "$user" -gt 0 ]
}
count_after() { [ "$(api_log count "$1" "$2" ${4:+"$4"})" -ge "$3" ]; }

cleanup_api() {
    stop_server
    [ -z "${TARGET_PID:-}" ] || kill "$TARGET_PID" 2>/dev/null || true
}

case_strategies_from_api() {
    trap 'cleanup_api; cleanup_gthulhu' EXIT
    command -v "$BPFTOOL" >/dev/null || fail "bpftool not found (BPFTOOL=$BPFTOOL)"
    command -v openssl >/dev/null || fail "openssl not found (needed for the test key pair)"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    openssl genrsa -out "$DIR/server_private.pem" 2048 2>/dev/null
    openssl rsa -in "$DIR/server_private.pem" -pubout -out "$DIR/public.pem" 2>/dev/null
    chmod 600 "$DIR/server_private.pem"
    chmod 644 "$DIR/public.pem"

    sleep 300 &
    TARGET_PID=$!
    local want="0 3000000"
    local strategy="[{\"priority\": 0, \"execution_time\": 3000000, \"pid\": $TARGET_PID, \"selectors\": [], \"command_regex\": \"\"}]"
    serve "$strategy"
    start_server
    local port
    port=$(cat "$PORT_FILE")
    cat >"$CFG" <<EOF
# written by tests/vm/t_api.sh: no file strategies, strategies from the fake API
strategies: []
api:
  enabled: true
  url: "http://127.0.0.1:$port/api/v1/scheduling/strategies"
  interval: 1
  auth_enabled: true
  public_key_path: "$DIR/public.pem"
  connect_timeout_ms: 500
  timeout_ms: 2000
EOF

    # 1. The served strategy reaches task_rules.
    local t0 gpid
    t0=$(now_ms)
    # Debug level: not even a debug line may show a token.
    start_gthulhu --config "$CFG" --log-level debug
    gpid=$GPID
    wait_until 10 rule_is "$TARGET_PID" "$want" ||
        fail "task_rules[$TARGET_PID] is '$(rule_of "$TARGET_PID")', want '$want'"
    measure api_rule_ms $(($(now_ms) - t0))
    grep -q 'Gthulhu API: 1 strategies now in force' "$GLOG" || fail "no 'strategies now in force' line"

    # 2. What went over the wire: token with our public key, Bearer on every
    # call, metrics with exactly the 11 counters and user dispatches counted.
    assert "no token request with the configured public key" api_log token_ok "$DIR/public.pem"
    count_after GET /api/v1/scheduling/strategies 1 200 || fail "no successful strategies GET"
    wait_until 10 metrics_ready || fail "metrics posts (n bad max_user): $(api_log metrics)"
    local n bad user
    read -r n bad user <<<"$(api_log metrics)"
    assert_eq "$bad" 0 "metrics posts without exactly the 11 counters"
    measure api_metrics_posts "$n"
    measure api_metrics_user_dispatches "$user"
    assert "a strategies GET or metrics POST without a Bearer JWT" api_log bearer_ok
    assert_eq "$(api_log count POST /api/v1/auth/token)" 1 "token requests (one token is reused)"

    # 3. An empty list removes the rule; the strategy back restores it.
    serve '[]'
    t0=$(now_ms)
    wait_until 10 no_rule "$TARGET_PID" || fail "rule still present after the server sent []"
    measure api_rule_removed_ms $(($(now_ms) - t0))
    serve "$strategy"
    t0=$(now_ms)
    wait_until 10 rule_is "$TARGET_PID" "$want" || fail "rule not restored by the server"
    measure api_rule_added_ms $(($(now_ms) - t0))

    # 4. Server dead: one warning, the last strategies stay, gthulhu stays attached.
    stop_server
    t0=$(now_ms)
    wait_until 10 grep -q 'Gthulhu API unavailable' "$GLOG" || fail "no 'unavailable' line"
    measure api_unavailable_logged_ms $(($(now_ms) - t0))
    sleep 5 # attempts at +0, +1, +3 s with the doubling backoff
    assert "gthulhu left sched_ext while the server was dead" gthulhu_attached
    rule_is "$TARGET_PID" "$want" ||
        fail "rule '$(rule_of "$TARGET_PID")' after the server died, want '$want' kept"
    assert_eq "$(grep -c 'Gthulhu API unavailable' "$GLOG")" 1 "'unavailable' lines (one per change)"

    # 5. Server back on the same port, with new strategies and the newer token
    # shape; it refuses the old token (401), gthulhu gets a new one.
    local want2="2 4000000"
    serve "[{\"priority\": 2, \"execution_time\": 4000000, \"pid\": $TARGET_PID}]"
    local tokens0
    tokens0=$(api_log count POST /api/v1/auth/token)
    start_server --token-shape new
    t0=$(now_ms)
    wait_until 25 rule_is "$TARGET_PID" "$want2" ||
        fail "task_rules[$TARGET_PID] is '$(rule_of "$TARGET_PID")' after the server came back, want '$want2'"
    measure api_recovered_ms $(($(now_ms) - t0))
    wait_until 5 grep -q 'Gthulhu API reachable again' "$GLOG" || fail "no 'reachable again' line"
    assert_gt "$(api_log count GET /api/v1/scheduling/strategies 401)" 0 "401s for the old token"
    assert_gt "$(api_log count POST /api/v1/auth/token)" "$tokens0" "token requests after the 401"
    assert "a request without a Bearer JWT after the restart" api_log bearer_ok

    ! grep -qi 'panick' "$GLOG" || fail "gthulhu panicked"
    local tokens
    tokens=$(api_log secrets_absent "$GLOG") || fail "a bearer token (of ${tokens:-0} sent) is in gthulhu's log"
    measure api_tokens_checked_absent_from_log "$tokens"
    assert_eq "$GPID" "$gpid" "gthulhu pid (no restart)"
    assert "gthulhu left sched_ext during the API test" gthulhu_attached
    cleanup_api
    stop_gthulhu
    assert_eq "$GRC" 0 "gthulhu exit code"
}

run_case strategies_from_api case_strategies_from_api
finish

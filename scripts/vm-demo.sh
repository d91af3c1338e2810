#!/usr/bin/env bash
# Runs inside the VM for `make run`: start gthulhu, show its log live while a ~20 s
# stress-ng load runs, then detach it with SIGTERM. The log is kept in results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${GTHULHU_BIN:-target/release/gthulhu}
[ -x "$bin" ] || { echo "demo: no $bin (make build)" >&2; exit 1; }
args=(--interval 2)
[ -f config/gthulhu.yaml ] && args+=(--config config/gthulhu.yaml)
mkdir -p results
# stress-ng needs a scratch dir ($TMPDIR).
. scripts/guest-scratch.sh
use_scratch results/demo-tmp
"$bin" "${args[@]}" 2> >(tee results/demo-gthulhu.log >&2) &
pid=$!
for _ in $(seq 200); do
    [ "$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)" = gthulhu ] && break
    kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; echo "demo: gthulhu exited" >&2; exit 1; }
    sleep 0.1
done
echo "demo: sched_ext state=$(cat /sys/kernel/sched_ext/state) ops=$(cat /sys/kernel/sched_ext/root/ops 2>/dev/null)" >&2
(cd "$TMPDIR" && stress-ng --cpu 4 --fork 2 --timeout 20s --metrics-brief --temp-path "$TMPDIR") || true
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
echo "demo: gthulhu exited $rc; sched_ext state=$(cat /sys/kernel/sched_ext/state)" >&2
exit "$rc"

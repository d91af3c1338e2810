#!/usr/bin/env bash
# Runs inside the test VM (or directly on a host with sched_ext): every
# tests/vm/t_*.sh, each bounded in time. Per-case verdicts go to
# $GTHULHU_RESULTS/cases.txt ("PASS|FAIL test/case ms"), numbers to measures.txt,
# logs beside them. Exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
export GTHULHU_RESULTS=${GTHULHU_RESULTS:-results}
RESULTS=$GTHULHU_RESULTS
mkdir -p "$RESULTS"
rm -f "$RESULTS"/cases.txt "$RESULTS"/measures.txt "$RESULTS"/*.log "$RESULTS"/*.txt

# Tests and stress-ng need a scratch dir ($TMPDIR).
. scripts/guest-scratch.sh
use_scratch "$RESULTS/tmp"

# Guest uptime when the tests start = how long the boot took.
echo "measure: boot_s=$(cut -d' ' -f1 /proc/uptime)" | tee -a "$RESULTS/measures.txt"
uname -r >"$RESULTS/kernel.txt"

if [ ! -d /sys/kernel/sched_ext ]; then
    echo "run: /sys/kernel/sched_ext is missing: kernel $(uname -r) has no sched_ext" >&2
    echo "FAIL run/sched_ext-present 0" >>"$RESULTS/cases.txt"
    exit 1
fi

failed=0
for t in tests/vm/t_${TESTS:-*}.sh; do
    [ -f "$t" ] || continue
    name=$(basename "${t%.sh}")
    echo "run: $name" >&2
    t0=$(date +%s%3N)
    # timeout kills the test's whole process group, gthulhu included.
    set +e
    TEST_NAME=$name timeout -k 10 "${TEST_TIMEOUT:-300}" bash "$t" 2>&1 | tee "$RESULTS/$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    dt=$(($(date +%s%3N) - t0))
    if [ "$rc" -ne 0 ]; then
        failed=1
        # A crash or timeout may have left no FAIL line: record one for the file.
        grep -q "^FAIL $name/" "$RESULTS/cases.txt" 2>/dev/null \
            || echo "FAIL $name/exit-$rc $dt" >>"$RESULTS/cases.txt"
    fi
done

echo "run: results in $RESULTS/cases.txt:" >&2
cat "$RESULTS/cases.txt" >&2 || true
exit "$failed"

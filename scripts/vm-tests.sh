#!/usr/bin/env bash
# vm-tests.sh KERNEL...: run tests/vm/run.sh on each kernel, where KERNEL is a
# channel of fetch-kernel.sh (backports, sid) or a path to a vmlinuz. On a host whose
# own kernel has sched_ext, run the tests right here instead (once).
# Results: results/<kernel>/cases.txt; the last line printed is
# "vm: N passed, N failed" (cases over all kernels).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
[ $# -ge 1 ] || set -- backports sid
# The tests read BPF maps with bpftool; the guest sees the host's cache.
BPFTOOL=$("$here/bpftool.sh")
export BPFTOOL
# The metrics test parses /metrics with prometheus_client from a cached venv.
PROM_PYTHON=$("$here/prom-parser.sh")
export PROM_PYTHON

passed=0
failed=0
# tally DIR RC LABEL: add DIR's case verdicts; a run that failed without recording a
# FAIL (boot failure, crash) counts as one failed case.
tally() {
    local dir=$1 rc=$2 label=$3 p=0 f=0
    if [ -f "$dir/cases.txt" ]; then
        p=$(grep -c '^PASS ' "$dir/cases.txt" || true)
        f=$(grep -c '^FAIL ' "$dir/cases.txt" || true)
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "FAIL $label/run-exit-$rc 0" >>"$dir/cases.txt"
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "vm-tests: $label: $p passed, $f failed ($dir/cases.txt)" >&2
    grep '^FAIL ' "$dir/cases.txt" 2>/dev/null | sed 's/^/vm-tests:   /' >&2 || true
}

if [ -d /sys/kernel/sched_ext ]; then
    echo "vm-tests: this host has sched_ext; running the tests here, not in a VM" >&2
    [ "$(id -u)" = 0 ] || { echo "vm-tests: must be root to load a scheduler" >&2; exit 1; }
    dir=results/host
    mkdir -p "$dir"
    rc=0
    GTHULHU_RESULTS=$dir tests/vm/run.sh || rc=$?
    tally "$dir" "$rc" "host-$(uname -r)"
else
    for k in "$@"; do
        rc=0
        case "$k" in
            */*) vmlinuz=$k ;;
            *) vmlinuz=$("$here/fetch-kernel.sh" "$k") || rc=$? ;;
        esac
        if [ "$rc" -ne 0 ]; then
            mkdir -p "results/$k"
            : >"results/$k/cases.txt"
            tally "results/$k" "$rc" "$k(fetch)"
            continue
        fi
        # Label = kernel version: .../modules/<version>/vmlinuz (the cache's layout)
        # or /boot/vmlinuz-<version>.
        label=$(basename "$vmlinuz")
        if [ "$label" = vmlinuz ]; then label=$(basename "$(dirname "$vmlinuz")"); fi
        label=${label#vmlinuz-}
        dir=results/$label
        rm -rf "$dir"
        mkdir -p "$dir"
        t0=$(date +%s)
        # The guest console (VM_VERBOSE) goes whole to console.log, to diagnose a VM
        # that dies; the terminal gets the tests' output and the kernel's sched_ext
        # lines and oopses only.
        set +e
        {
            VM_VERBOSE=1 "$here/vm.sh" "$vmlinuz" "GTHULHU_RESULTS=$dir BPFTOOL=$BPFTOOL PROM_PYTHON=$PROM_PYTHON tests/vm/run.sh" \
                2>&1 1>&3 3>&- | tee "$dir.console.log" \
                | grep --line-buffered -vP '^\[\s*\d+\.\d+\] (?!sched_ext|.*(BUG|Oops|panic|RIP:|Call Trace|hung|stall))' >&2
        } 3>&1
        rc=${PIPESTATUS[0]}
        set -e
        mv "$dir.console.log" "$dir/console.log" 2>/dev/null || true
        echo "vm-tests: $label: VM run took $(($(date +%s) - t0)) s (exit $rc)" >&2
        tally "$dir" "$rc" "$label"
    done
fi

echo "vm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# vm.sh VMLINUZ COMMAND...: boot VMLINUZ with virtme-ng over a read-only view of the
# host root, run COMMAND as root in the repo directory, and exit with its exit code.
# Only <repo>/results is writable in the guest. A single COMMAND argument is a shell
# command line; several are quoted and run as one command.
#
# Environment: VM_CPUS (2), VM_MEMORY (2G), VM_TIMEOUT seconds (1200), VM_VERBOSE=1,
# VM_TCG_THREAD=single|multi,
# GTHULHU_VM_ACCEL=auto|kvm|tcg (auto: try KVM once, remember the verdict).
set -euo pipefail

die() { echo "vm: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: vm.sh VMLINUZ COMMAND..."
kernel=$1
shift
[ -f "$kernel" ] || die "no kernel at $kernel (run scripts/fetch-kernel.sh)"
kernel=$(cd "$(dirname "$kernel")" && pwd)/$(basename "$kernel")
command -v vng >/dev/null 2>&1 || die "vng not found (run scripts/host-deps.sh)"

repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$repo/results"
cache=${GTHULHU_CACHE:-$HOME/.cache/gthulhu}
mkdir -p "$cache"

if [ $# -eq 1 ]; then
    cmd=$1
else
    cmd=$(printf '%q ' "$@")
fi

base=(vng --run "$kernel" --cpus "${VM_CPUS:-2}" --memory "${VM_MEMORY:-2G}"
    --cwd "$repo" --rwdir "$repo/results")
# VM_VERBOSE=1 shows the guest kernel's console (boot messages, oopses).
[ -z "${VM_VERBOSE:-}" ] || base+=(--verbose)

# KVM: /dev/kvm may exist and still fail ("KVM internal error", or qemu aborting on an
# MSR), so the only reliable test is booting once. The verdict is cached per host
# kernel and qemu version because the trial costs a boot when KVM hangs.
kvm_works() {
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
    local key verdict_file out
    key="$(uname -r) $(qemu-system-x86_64 --version 2>/dev/null | head -n1)"
    verdict_file=$cache/kvm-verdict
    if [ -f "$verdict_file" ] && [ "$(sed -n 2p "$verdict_file")" = "$key" ]; then
        [ "$(sed -n 1p "$verdict_file")" = yes ]
        return
    fi
    echo "vm: checking whether KVM works (once)" >&2
    out=$(timeout -k 5 90 vng --run "$kernel" --cpus 1 --memory 512M \
        --exec 'echo gthulhu-kvm-ok' </dev/null 2>/dev/null || true)
    if [[ "$out" == *gthulhu-kvm-ok* ]]; then
        printf 'yes\n%s\n' "$key" >"$verdict_file"
        return 0
    fi
    printf 'no\n%s\n' "$key" >"$verdict_file"
    return 1
}

# TCG: one host thread for all vCPUs (VM_TCG_THREAD=single, the default). With one
# thread per vCPU, QEMU lets a vCPU run stale code while another patches the
# kernel's text (static keys toggled when a sched_ext scheduler attaches or
# detaches): the guest then dies with "Oops: int3" in scx_tick, seen here in
# about one detach in ten.
# (--qemu-opts=...: argparse would take a separate "-accel ..." for an option.)
tcg=(--disable-kvm "--qemu-opts=-accel tcg,thread=${VM_TCG_THREAD:-single}")
case "${GTHULHU_VM_ACCEL:-auto}" in
    kvm) accel=() ;;
    tcg) accel=("${tcg[@]}") ;;
    auto) if kvm_works; then accel=(); else accel=("${tcg[@]}"); fi ;;
    *) die "GTHULHU_VM_ACCEL must be auto, kvm or tcg" ;;
esac
echo "vm: booting $(basename "$(dirname "$kernel")") ($([ ${#accel[@]} -eq 0 ] && echo kvm || echo tcg))" >&2

timeout_s=${VM_TIMEOUT:-1200}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# vng/qemu reopen the host's stderr with truncation, which wipes earlier output (CI
# logs included) when it is a regular file: hand them pipes instead.
mkfifo "$tmp/out" "$tmp/err"
cat "$tmp/out" &
cat_out=$!
cat "$tmp/err" >&2 &
cat_err=$!
# vng runs in its own session so that stopping it reaches qemu and virtiofsd too:
# on timeout, and on INT/TERM to this script (Ctrl-C would otherwise leave qemu behind).
# stdin from /dev/null: CI has none, and vng must not wait on a terminal.
setsid "${base[@]}" "${accel[@]}" --exec "$cmd" </dev/null >"$tmp/out" 2>"$tmp/err" &
vng_pid=$!
kill_vm() {
    kill -TERM -- "-$vng_pid" 2>/dev/null || true
    sleep 5
    kill -KILL -- "-$vng_pid" 2>/dev/null || true
}
(
    trap 'kill $sleeper 2>/dev/null; exit 0' TERM
    sleep "$timeout_s" &
    sleeper=$!
    wait $sleeper
    echo "vm: timed out after ${timeout_s}s" >&2
    kill_vm
) &
watchdog=$!
trap 'echo "vm: interrupted" >&2; kill $watchdog 2>/dev/null; kill_vm; exit 130' INT TERM
rc=0
wait "$vng_pid" || rc=$?
kill "$watchdog" 2>/dev/null || true
wait "$cat_out" "$cat_err" 2>/dev/null || true
exit "$rc"

#!/usr/bin/env bash
# bench.sh: `make bench`. Boots the test VM (backports kernel, or KERNEL=) and
# runs tests/bench/guest.sh there: EEVDF, scx_rustland (when SCX_RUSTLAND
# points at its binary, or it was installed into the cache by
# BENCH_RUSTLAND=1), gthulhu and gthulhu with the probe prioritized; then
# writes results/bench/table.md and latency.png.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
. "$here/lib/apt.sh"

rustland=${SCX_RUSTLAND:-$GTHULHU_CACHE/scx/bin/scx_rustland}
if [ ! -x "$rustland" ] && [ "${BENCH_RUSTLAND:-0}" = 1 ]; then
    echo "bench: building scx_rustland (several minutes)" >&2
    PATH=/usr/lib/llvm-19/bin:$PATH cargo install scx_rustland --locked --root "$GTHULHU_CACHE/scx" >&2
fi
[ -x "$rustland" ] || { echo "bench: no scx_rustland (BENCH_RUSTLAND=1 builds it); measuring without it" >&2; rustland=""; }

vmlinuz=${KERNEL:-$("$here/fetch-kernel.sh" backports)}
rm -rf results/bench
mkdir -p results/bench
"$here/vm.sh" "$vmlinuz" "SCX_RUSTLAND=$rustland BENCH_REPS=${BENCH_REPS:-3} tests/bench/guest.sh"

venv=$repo/.cache/bench-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q matplotlib==3.10.* >&2
fi
"$venv/bin/python" "$here/bench-report.py" results/bench
echo "bench: kernel $(basename "$(dirname "$vmlinuz")"), $(nproc) host CPUs; results/bench/table.md, results/bench/latency.png" >&2

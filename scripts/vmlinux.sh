#!/usr/bin/env bash
# vmlinux.sh [OUT]: regenerate bpf/vmlinux.h (or OUT) from the BTF of the current
# trixie-backports cloud kernel, the newest sched_ext kernel we test on.
# bpftool comes from scripts/bpftool.sh (bookworm's own is too old for this BTF).
set -euo pipefail

die() { echo "vmlinux: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../bpf/vmlinux.h}
command -v zstd >/dev/null 2>&1 || die "zstd not found (run scripts/host-deps.sh)"

vmlinuz=$("$here/fetch-kernel.sh" backports)
kdir=$(dirname "$vmlinuz")

bpftool=$("$here/bpftool.sh")

# The vmlinuz is a boot stub followed by a zstd stream holding the ELF vmlinux.
# zstd stops at the trailing bytes after the stream ("unsupported format") but has
# written the whole ELF by then, so its exit code is ignored and the ELF is checked.
elf=$kdir/vmlinux
if [ ! -s "$elf" ] || [ "$elf" -ot "$vmlinuz" ]; then
    off=$(LC_ALL=C grep -obUaP '\x28\xb5\x2f\xfd' "$vmlinuz" | head -n1 | cut -d: -f1)
    [ -n "$off" ] || die "no zstd stream in $vmlinuz"
    tail -c +$((off + 1)) "$vmlinuz" | zstd -d -c 2>/dev/null >"$elf.tmp" || true
    [ "$(head -c 4 "$elf.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ] \
        || die "no ELF image after the zstd magic in $vmlinuz"
    mv "$elf.tmp" "$elf"
fi

"$bpftool" btf dump file "$elf" format c >"$out.tmp" || die "bpftool btf dump failed"
grep -q 'struct sched_ext_ops {' "$out.tmp" || die "no struct sched_ext_ops in the BTF of $elf"
mv "$out.tmp" "$out"
echo "vmlinux: wrote $out ($(wc -c <"$out") bytes) from $(basename "$kdir")" >&2

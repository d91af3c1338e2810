#!/usr/bin/env bash
# bpftool.sh: print the path of a bpftool recent enough for sched_ext kernels'
# BTF (7.5 from bookworm-backports; bookworm's own 7.1 is too old), unpacked into
# the cache and never installed. Used by vmlinux.sh and by the VM tests, which
# read BPF maps with it.
set -euo pipefail

die() { echo "bpftool: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/apt.sh"

bt_root=$GTHULHU_CACHE/bpftool
if apt_setup bpftool bookworm-backports; then
    ver=$(apt_candidate bpftool)
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no bpftool in bookworm-backports"
    dir=$bt_root/$ver
    if [ ! -x "$dir/usr/sbin/bpftool" ]; then
        echo "bpftool: fetching $ver" >&2
        tmp=$bt_root/.tmp
        rm -rf "$tmp"
        mkdir -p "$tmp"
        (cd "$tmp" && apt-get "${APT_OPTS[@]}" download "bpftool=$ver" >download.log 2>&1) \
            || die "apt-get download bpftool=$ver failed (see $tmp/download.log)"
        dpkg -x "$tmp"/bpftool_*.deb "$tmp/root" || die "dpkg -x bpftool failed"
        rm -rf "$dir"
        mv "$tmp/root" "$dir"
        rm -rf "$tmp"
    fi
    bpftool=$dir/usr/sbin/bpftool
else
    # Offline: any bpftool fetched before will do.
    bpftool=$(ls -d "$bt_root"/*/usr/sbin/bpftool 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$bpftool" ] || die "cannot reach bookworm-backports and no cached bpftool"
fi
"$bpftool" version >/dev/null 2>&1 || die "$bpftool does not run"
echo "$bpftool"

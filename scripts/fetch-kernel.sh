#!/usr/bin/env bash
# fetch-kernel.sh CHANNEL: fetch the current Debian cloud kernel of CHANNEL
# (backports = trixie-backports, sid) into the cache and print its vmlinuz path.
# The host kernel has no sched_ext, so tests boot one of these in a VM. Versions move,
# so the version is resolved from the linux-image-cloud-amd64 metapackage each day,
# never pinned. Only the vmlinuz path goes to stdout; progress goes to stderr.
set -euo pipefail

die() { echo "fetch-kernel: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/apt.sh"

channel=${1:-}
case "$channel" in
    backports) suite=trixie-backports ;;
    sid) suite=sid ;;
    *) die "usage: fetch-kernel.sh backports|sid" ;;
esac

kdir=$GTHULHU_CACHE/kernels
mkdir -p "$kdir"
# Two concurrent make runs must not unpack into the same directory.
exec 9>"$kdir/.lock"
flock 9

current=$kdir/$channel.current # last version resolved for this channel

# vmlinuz_of VER: print the vmlinuz of an unpacked, verified kernel, or fail.
vmlinuz_of() {
    local root=$kdir/$1/root
    [ -e "$kdir/$1/.ok" ] || return 1
    for f in "$root/usr/lib/modules/$1/vmlinuz" "$root/boot/vmlinuz-$1"; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 1
}

if ! apt_setup "kernel-$channel" "$suite"; then
    # Offline: fall back to the kernel we fetched last time, if any.
    if [ -s "$current" ] && vmlinuz_of "$(cat "$current")"; then
        echo "fetch-kernel: using cached $(cat "$current") (could not refresh lists)" >&2
        exit 0
    fi
    die "cannot reach the $suite package lists and no cached $channel kernel"
fi

# linux-image-cloud-amd64 depends on linux-image-<ver>-cloud-amd64.
depends_of() {
    apt-cache "${APT_OPTS[@]}" show --no-all-versions "$1" 2>/dev/null \
        | awk '/^Depends:/ { sub(/^Depends:[ \t]*/, ""); print; exit }' | tr ',|' '\n\n' \
        | awk '{ print $1 }'
}
image=$(depends_of linux-image-cloud-amd64 | grep -m1 -E '^linux-image-.*-cloud-amd64$' || true)
[ -n "$image" ] || die "linux-image-cloud-amd64 not found in $suite"
ver=${image#linux-image-}

if path=$(vmlinuz_of "$ver"); then
    echo "$ver" >"$current"
    echo "$path"
    exit 0
fi

echo "fetch-kernel: downloading $ver from $suite" >&2
tmp=$kdir/.tmp-$ver
rm -rf "$tmp"
mkdir -p "$tmp/debs"
# New packaging: linux-image-<ver> is a metapackage; the vmlinuz is in
# linux-binary-<ver>, config and System.map in linux-base-<ver>. Older kernels carry
# everything in linux-image-<ver>; taking the image and those deps covers both.
pkgs=("$image")
while read -r dep; do
    pkgs+=("$dep")
done < <(depends_of "$image" | grep -E "^linux-(binary|base)-$(printf '%s' "$ver" | sed 's/[.+]/\\&/g')\$" || true)
(cd "$tmp/debs" && apt-get "${APT_OPTS[@]}" download "${pkgs[@]}" >"$tmp/download.log" 2>&1) \
    || die "apt-get download ${pkgs[*]} failed (see $tmp/download.log)"
for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
done

config=""
for f in "$tmp/root/usr/lib/modules/$ver/config" "$tmp/root/boot/config-$ver"; do
    [ -f "$f" ] && { config=$f; break; }
done
[ -n "$config" ] || die "no kernel config in ${pkgs[*]}"
grep -qx 'CONFIG_SCHED_CLASS_EXT=y' "$config" \
    || die "kernel $ver has no CONFIG_SCHED_CLASS_EXT=y, cannot run sched_ext"

rm -rf "$tmp/debs" "$kdir/$ver"
touch "$tmp/.ok"
mv "$tmp" "$kdir/$ver"
path=$(vmlinuz_of "$ver") || die "no vmlinuz in ${pkgs[*]}"
echo "$ver" >"$current"
echo "$path"

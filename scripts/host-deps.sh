#!/usr/bin/env bash
# Install what building gthulhu and booting test kernels need on a Debian 12 host.
# Idempotent and fast (< 2 s) when everything is already present, so `make test`
# can call it every time.
set -euo pipefail

die() { echo "host-deps: $*" >&2; exit 1; }
log() { echo "host-deps: $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (installs apt packages)"

# clang-19/llvm-19: bookworm's default clang 14 is too old for sched_ext BPF.
# libelf/zlib/pkg-config: libbpf-sys links them dynamically.
# qemu/kmod/udev: virtme-ng needs them on the host (without udev the guest's
#   virtio-serial ports are missing and the command's output and exit code are lost).
# libseccomp/libcap-ng: to build virtiofsd (the cloud kernels have no 9p).
# stress-ng/rt-tests: loads used inside the guest, which sees the host root.
# zstd: to unpack the vmlinuz for BTF (make vmlinux).
APT_PKGS=(clang-19 llvm-19 libelf-dev zlib1g-dev pkg-config qemu-system-x86 kmod udev
    libseccomp-dev libcap-ng-dev stress-ng zstd rt-tests python3-pip)

missing=()
while read -r pkg status; do
    [ "$status" = "installed" ] || missing+=("$pkg")
done < <(for p in "${APT_PKGS[@]}"; do
    printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo missing)"
done)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
fi

# virtme-ng (vng) boots a kernel over a read-only view of the host root.
if ! command -v vng >/dev/null 2>&1; then
    log "installing virtme-ng with pip"
    py=$(command -v python3) || die "python3 not found"
    # Debian's own python refuses plain pip installs (PEP 668); a pyenv one does not.
    "$py" -m pip install -q virtme-ng 2>/dev/null \
        || "$py" -m pip install -q --break-system-packages virtme-ng \
        || die "pip install virtme-ng failed"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null || true
    command -v vng >/dev/null 2>&1 || die "virtme-ng installed but vng is not on PATH"
fi

# virtiofsd: vng looks for it on PATH, then /usr/libexec, /usr/lib/virtiofsd, and
# last /usr/lib/qemu. Bookworm's qemu ships the old C daemon there, which must not be
# used (vng's flags assume the Rust one). Debian 12 has no Rust virtiofsd package, so
# build it with cargo and link it into /usr/libexec, which vng searches whatever PATH
# the caller (CI, sudo) has.
system_virtiofsd() {
    local p
    for p in /usr/libexec/virtiofsd /usr/lib/virtiofsd/virtiofsd /usr/lib/virtiofsd; do
        [ -f "$p" ] && [ -x "$p" ] && return 0
    done
    return 1
}
if ! system_virtiofsd; then
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    src=$(command -v virtiofsd 2>/dev/null || true)
    if [ -z "$src" ] && [ -x "$cargo_home/bin/virtiofsd" ]; then src=$cargo_home/bin/virtiofsd; fi
    if [ -z "$src" ]; then
        command -v cargo >/dev/null 2>&1 || die "cargo not found (needed to build virtiofsd)"
        log "building virtiofsd with cargo install (about 2 minutes)"
        cargo install --locked --quiet virtiofsd >&2 || die "cargo install virtiofsd failed"
        src=$cargo_home/bin/virtiofsd
    fi
    ln -sf "$src" /usr/libexec/virtiofsd
    system_virtiofsd || die "virtiofsd not usable at /usr/libexec/virtiofsd"
fi

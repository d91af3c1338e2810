# Sourced inside the VM: use_scratch DIR gives the guest a writable scratch
# directory and points TMPDIR at it. The guest's /tmp is the host's, read-only
# (virtme-ng would overlay it with overlayfs, a module these kernels lack), and
# mounting a tmpfs over /tmp would hide a repository cloned under /tmp, so the
# tmpfs goes on DIR, inside the writable results directory. On a host whose
# /tmp is writable, nothing changes.
use_scratch() {
    touch "${TMPDIR:-/tmp}/.gthulhu-w" 2>/dev/null && { rm -f "${TMPDIR:-/tmp}/.gthulhu-w"; return 0; }
    mkdir -p "$1"
    if [ "$(id -u)" = 0 ] && ! mountpoint -q "$1"; then
        mount -t tmpfs -o mode=1777 tmpfs "$1" || echo "scratch: cannot mount a tmpfs on $1" >&2
    fi
    TMPDIR=$(cd "$1" && pwd)
    export TMPDIR
}

#!/usr/bin/env bash
# Build the gthulhu container image (`make image`).
#
# 1. Builds a fully static gthulhu: glibc with crt-static, and libbpf, libelf
#    and zlib linked statically (Cargo feature `static`, static libraries
#    from libelf-dev and zlib1g-dev).
# 2. Builds Containerfile (FROM scratch) with docker when a docker engine
#    answers, else with buildah (vfs storage, chroot isolation: works without
#    a daemon, inside containers and without overlay support).
#
# Environment:
#   IMAGE   image name and tag (default 127.0.0.1:32000/gthulhu:latest)
#   PUSH=1  push IMAGE after building (plain http allowed for 127.0.0.1 and
#           localhost registries)
#   CLANG   clang used for the BPF object (default clang-19)
set -euo pipefail

IMAGE=${IMAGE:-127.0.0.1:32000/gthulhu:latest}
export CLANG=${CLANG:-clang-19}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

say() { printf 'image: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libdir=/usr/lib/$multiarch
target=$(rustc -vV | sed -n 's/^host: //p')

# Static libraries and the probe's busybox come from Debian packages.
need=()
[[ -f $libdir/libelf.a ]] || need+=(libelf-dev)
[[ -f $libdir/libz.a ]] || need+=(zlib1g-dev)
if [[ ! -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then
	need+=(busybox-static)
fi
if ((${#need[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing ${need[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
	else
		die "missing packages: ${need[*]} (install them, then rerun)"
	fi
fi

say "building a static gthulhu for $target"
LIBBPF_SYS_LIBRARY_PATH=$libdir \
	RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release --features static --target "$target"
binary=target/$target/release/gthulhu
# Fully static means no program interpreter and no shared library at all
# (a static-pie binary, which keeps ASLR; ldd calls it "statically linked").
if readelf -lW "$binary" | grep -q 'INTERP' || readelf -dW "$binary" | grep -q 'NEEDED'; then
	die "$binary is not fully static: $(readelf -dW "$binary" | grep NEEDED | tr -s ' ' | tr '\n' ' ')"
fi

context=target/image
rm -rf "$context"
mkdir -p "$context"
cp "$binary" "$context/gthulhu"
strip "$context/gthulhu"
cp /bin/busybox "$context/busybox"
say "static binary: $(stat -c %s "$context/gthulhu") bytes stripped ($(stat -c %s "$binary") unstripped)"

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
	say "building $IMAGE with docker"
	docker build -f Containerfile -t "$IMAGE" "$context"
	size="$(docker image inspect -f '{{.Size}}' "$IMAGE") bytes"
	push() { docker push "$IMAGE"; }
elif command -v buildah >/dev/null; then
	say "building $IMAGE with buildah"
	bah() { buildah --storage-driver vfs "$@"; }
	bah bud --isolation chroot --layers=false -f Containerfile -t "$IMAGE" "$context" >&2
	size=$(bah images --format '{{.Size}}' "$IMAGE")
	push() {
		local tls=true
		[[ $IMAGE == 127.0.0.1[:/]* || $IMAGE == localhost[:/]* ]] && tls=false
		bah push --tls-verify=$tls "$IMAGE"
	}
else
	die "neither a docker engine nor buildah found (apt-get install buildah)"
fi
say "image $IMAGE: $size"

if [[ ${PUSH:-0} == 1 ]]; then
	say "pushing $IMAGE"
	push
fi

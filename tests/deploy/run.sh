#!/usr/bin/env bash
# Deployment tests (`make test`): lint, render and validate the Helm chart,
# verify the systemd unit. Needs no cluster, no helm binary and no docker:
# Helm's engine comes as a Python library (helm-python-sdk) in a venv kept
# under .cache/, so reruns start in about two seconds.
#
# Environment:
#   GTHULHU_CACHE  where the venv lives (default <repo>/.cache)
#   GTHULHU_BIN    gthulhu binary for the config round trip
#                  (default target/release/gthulhu; skipped when missing)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${GTHULHU_CACHE:-$root/.cache}
venv=$cache/deploy-venv
# Pinned so a new release cannot change what the tests accept.
requirements=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4)

say() { printf 'deploy: %s\n' "$*" >&2; }

apt_install() {
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		say "installing $*"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
	else
		say "missing $*: install it and rerun"
		exit 1
	fi
}

command -v systemd-analyze >/dev/null || apt_install systemd
[[ -x /bin/busybox ]] || apt_install busybox-static

stamp=$venv/.requirements
if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "${requirements[*]}" ]]; then
	rm -rf "$venv"
	mkdir -p "$cache"
	if ! python3 -m venv "$venv" 2>/dev/null; then
		rm -rf "$venv"
		apt_install python3-venv
		python3 -m venv "$venv"
	fi
	say "installing ${requirements[*]} into $venv"
	"$venv/bin/pip" install -q --disable-pip-version-check "${requirements[@]}"
	echo "${requirements[*]}" >"$stamp"
fi

exec "$venv/bin/python" "$root/tests/deploy/test_deploy.py"

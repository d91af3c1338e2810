#!/usr/bin/env bash
# prom-parser.sh: print the path of a python with prometheus_client, the
# Prometheus project's own Python client, whose text-format parser the tests
# use to read /metrics. Installed once into a venv in the cache; nothing is
# installed system-wide.
set -euo pipefail

venv=${GTHULHU_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gthulhu}/prom-venv
if ! "$venv/bin/python" -c 'import prometheus_client.parser' 2>/dev/null; then
    echo "prom-parser: installing prometheus-client into $venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q 'prometheus-client==0.26.0' >&2
fi
echo "$venv/bin/python"

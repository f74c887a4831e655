#!/usr/bin/env bash
# Make sure this machine can build the virtualenv: Python 3.11 with venv, and a C compiler with the Python
# headers (durable_rules is published as source only). On Debian, as root, install what is missing.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}

missing=()
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3.11)
if command -v "$PYTHON" >/dev/null 2>&1; then
    "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3.11-venv)
    include=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
    [ -f "$include/Python.h" ] || missing+=(python3.11-dev)
fi
command -v gcc >/dev/null 2>&1 || missing+=(gcc)

[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "bootstrap: missing ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]}) and retry" >&2
    exit 1
fi

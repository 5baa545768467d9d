#!/usr/bin/env bash
# Creates the virtual environment and installs the locked dependencies (requirements-dev.lock).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
root=$(cd "$(dirname "$0")/.." && pwd)

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: Python 3.11 or newer is needed as '$python' (set PYTHON=...)" >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing python3-venv with apt-get"
    apt-get update -qq && apt-get install -y -qq python3-venv
  else
    echo "bootstrap: the venv module is missing; install python3-venv" >&2
    exit 1
  fi
fi
echo "bootstrap: creating $venv and installing dependencies (a minute on a fresh machine)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# A person at a terminal sees pip at work, package by package with its progress bars; a log (CI,
# a pipe) gets pip's warnings and errors alone.
if [ -t 1 ]; then
  output=(--progress-bar on)
else
  output=(--quiet --progress-bar off)
fi
# Every package, transitive ones too, pinned with its hashes: a changed or substituted file fails.
"$venv/bin/python" -m pip install "${output[@]}" --require-hashes -r "$root/requirements-dev.lock"
# The project's own packages are imported from the checkout: services/, the generated gen/ and the
# Python client (clients/python, which users install with pip).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n%s\n' "$root" "$root/gen" "$root/clients/python/src" > "$site/videogen-checkout.pth"
echo "bootstrap: ready"

#!/usr/bin/env bash
# The system tools the tests run for real: Prometheus and promtool (Debian's `prometheus`).
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "tools: installing Prometheus and promtool with apt-get (Debian package 'prometheus')"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  # The package may start its own server on :9090; the tests start theirs on free ports.
  if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
  echo "tools: ready"
elif command -v apt-get >/dev/null; then
  echo "tools: promtool and prometheus are missing: sudo apt-get install prometheus" >&2
  exit 1
else
  echo "tools: promtool and prometheus are missing: install Prometheus 2.x so that both are on PATH" >&2
  exit 1
fi

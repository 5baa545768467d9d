#!/usr/bin/env bash
# The system tools the tests run for real: Prometheus and promtool (Debian's `prometheus`), and
# the headless browser of the console's tests (Debian's `chromium` with `chromium-driver`).
set -euo pipefail
missing=()
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  missing+=(prometheus)
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  missing+=(chromium chromium-driver)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "tools: installing ${missing[*]} with apt-get (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
  # The prometheus package may start its own server on :9090; the tests start theirs on free ports.
  if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
  echo "tools: ready"
elif command -v apt-get >/dev/null; then
  echo "tools: missing: sudo apt-get install ${missing[*]}" >&2
  exit 1
else
  echo "tools: missing ${missing[*]}: install Prometheus 2.x (prometheus and promtool) and Chromium with its" \
    "ChromeDriver (chromium and chromedriver) so that each is on PATH" >&2
  exit 1
fi

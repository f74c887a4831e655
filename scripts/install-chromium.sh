#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; no browser is
# ever downloaded by Playwright). Safe to run repeatedly: does nothing when /usr/bin/chromium exists.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-chromium: $CHROMIUM is missing and this is not root, so it cannot be installed here." >&2
    echo "install-chromium: run 'sudo apt-get install -y chromium' once; until then the browser tests are" >&2
    echo "install-chromium: skipped (or fail when the CI environment variable is set)." >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: $CHROMIUM is missing and apt-get is not available (not Debian?)." >&2
    echo "install-chromium: install Debian's chromium package by other means; browser tests need it." >&2
    exit 0
fi

echo "install-chromium: installing Debian's chromium package (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ -x "$CHROMIUM" ]; then
    echo "install-chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed at $CHROMIUM" >&2
else
    echo "install-chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi

#!/usr/bin/env bash
# Debian's Chromium and its driver, for the web page's real-browser test (tests/test_serve_page.py).
# Installed where this machine can (root + apt-get); elsewhere nothing is said, and that test skips.
set -u
pkgs="chromium chromium-driver"
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium for the web page's browser test ($pkgs)..."
    (apt-get install -y -qq $pkgs >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $pkgs >/dev/null 2>&1; })
fi
exit 0

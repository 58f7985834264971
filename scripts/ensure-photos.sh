#!/usr/bin/env bash
# Real colour photographs for the photo-path tests: Debian's wallpaper packages (mate, gnome, sway).
# Installed where this machine can (root + apt-get); elsewhere a warning, and the tests that need them skip.
set -u
pkgs="mate-backgrounds gnome-backgrounds sway-backgrounds"
have() { [ -d /usr/share/backgrounds/mate/nature ] && [ -d /usr/share/backgrounds/gnome ] && [ -d /usr/share/backgrounds/sway ]; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing the wallpaper photographs the photo tests use ($pkgs)..."
    (apt-get install -y -qq $pkgs >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq $pkgs >/dev/null 2>&1; })
    have && exit 0
fi
echo "warning: the photo tests need Debian's $pkgs ('sudo apt-get install $pkgs'); they will skip"
exit 0

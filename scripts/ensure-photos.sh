#!/usr/bin/env bash
# Real colour photographs for the photo-path tests and `minwa make-dataset small-objects`: Debian's wallpaper
# packages (mate, gnome, sway; plasma's, under /usr/share/wallpapers, only adds photographs to small-objects).
# Installed where this machine can (root + apt-get); elsewhere a warning, and the tests that need them skip.
set -u
pkgs="mate-backgrounds gnome-backgrounds sway-backgrounds"
extra="plasma-workspace-wallpapers"
have() { [ -d /usr/share/backgrounds/mate/nature ] && [ -d /usr/share/backgrounds/gnome ] && [ -d /usr/share/backgrounds/sway ]; }
have_extra() { [ -d /usr/share/wallpapers/Path ]; }
have && have_extra && exit 0
install() { apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "$@" >/dev/null 2>&1; }; }
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing the wallpaper photographs the photo tests use ($pkgs $extra)..."
    have || install $pkgs
    have_extra || install $extra
fi
have_extra || echo "warning: no $extra: 'minwa make-dataset small-objects' will use fewer background photographs"
have && exit 0
echo "warning: the photo tests need Debian's $pkgs ('sudo apt-get install $pkgs'); they will skip"
exit 0

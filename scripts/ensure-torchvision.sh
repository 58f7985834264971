#!/usr/bin/env bash
# torchvision's own code for tests/test_import_weights.py: Debian's python3-torchvision (with python3-torch and
# python3-pil) under the system python3, never minwa's venv. Installed where this machine can (root + apt-get);
# elsewhere a warning, and the logit checks against torchvision skip.
set -u
pkgs="python3-torchvision python3-pil"
have() { /usr/bin/python3 -c "import torchvision, PIL" >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing torchvision for the system python3, to check imported weights against it ($pkgs)..."
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null 2>&1; })
    have && exit 0
fi
echo "warning: the checks of imported weights against torchvision need Debian's $pkgs ('sudo apt-get install $pkgs'); they will skip"
exit 0

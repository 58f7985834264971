#!/usr/bin/env bash
# Make sure the Fashion-MNIST IDX files are at $1; install Debian's dataset-fashion-mnist when we can.
# With --optional, a machine that cannot install it only gets a warning (the tests that need it skip).
set -u
dir="${1:-/usr/share/datasets/fashion-mnist}"
optional="${2:-}"
have() { ls "$dir"/train-images-idx3-ubyte* >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && [ "$dir" = "/usr/share/datasets/fashion-mnist" ]; then
    echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; })
    have && exit 0
fi
msg="Fashion-MNIST not found in $dir: install it with 'sudo apt-get install dataset-fashion-mnist', or download the four *-ubyte.gz files from github.com/zalandoresearch/fashion-mnist into a folder and pass DATA=that/folder (or --data that/folder)."
if [ "$optional" = "--optional" ]; then echo "warning: $msg (tests that need it will skip)"; exit 0; fi
echo "error: $msg" >&2
exit 1

#!/usr/bin/env bash
# Install Debian packages a set of tests needs, where this machine can (root + apt-get); elsewhere one warning
# saying which tests will skip. Never fails: the tests skip by themselves, saying why.
#   ensure-debian.sh "WHAT THEY ARE FOR" "SHELL TEST THAT THEY ARE THERE" "WHICH TESTS SKIP" PACKAGE...
set -u
why="$1"; check="$2"; skips="$3"; shift 3
have() { bash -c "$check" >/dev/null 2>&1; }
have && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing $why ($*)..."
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1; })
    have && exit 0
fi
echo "warning: $skips need Debian's $* ('sudo apt-get install $*'); they will skip"
exit 0

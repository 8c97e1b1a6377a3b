#!/bin/sh
# deps.sh — install the Debian packages kasi builds and tests with, if any
# are missing. As root it runs apt-get; otherwise it prints the command.
set -e
PKGS="build-essential pkg-config libevent-dev libluajit2-5.1-dev luajit2 libyaml-dev
libssl-dev libcrypt-dev python3 swaks postfix clang libclang-rt-14-dev openssl
libc-ares-dev dnsmasq-base spamassassin spamd spamc testssl.sh
debhelper dpkg-dev chromium prometheus libhiredis-dev redis-server haproxy"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
else
    echo "missing packages:$missing" >&2
    echo "run: sudo apt-get install$missing" >&2
    exit 1
fi

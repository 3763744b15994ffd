#!/bin/sh
# Install Debian's haproxy and serf (real peers for the integration tests),
# keepalived (lbadapter --vip) and iproute2 (the namespace lab) when
# they are missing. Needs root on Debian; otherwise say what to install.
missing=""
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v serf >/dev/null 2>&1 || missing="$missing serf"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"   # the namespace lab
command -v keepalived >/dev/null 2>&1 || [ -x /usr/sbin/keepalived ] || missing="$missing keepalived"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq $missing >/dev/null \
        || echo "warning: could not install$missing; tests that need them will be skipped"
else
    echo "note: integration tests need$missing; install with: sudo apt-get install$missing"
fi
exit 0

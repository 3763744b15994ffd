#!/bin/sh
# Install Debian's haproxy and serf (real peers for the integration tests),
# keepalived (lbadapter --vip) and iproute2 (the namespace lab) when
# they are missing. Needs root on Debian; otherwise say what to install.
missing=""
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v serf >/dev/null 2>&1 || missing="$missing serf"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"   # the namespace lab
command -v keepalived >/dev/null 2>&1 || [ -x /usr/sbin/keepalived ] || missing="$missing keepalived"
# The container lab test starts its own dockerd and builds its base image with mmdebstrap.
docker_missing=""
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || docker_missing="docker.io"
command -v docker-compose >/dev/null 2>&1 || docker_missing="$docker_missing docker-compose"
command -v mmdebstrap >/dev/null 2>&1 || docker_missing="$docker_missing mmdebstrap"
[ -z "$missing$docker_missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian packages:$missing $docker_missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    if [ -n "$missing" ]; then
        apt-get install -y -qq $missing >/dev/null \
            || echo "warning: could not install$missing; tests that need them will be skipped"
    fi
    if [ -n "$docker_missing" ]; then
        # Without recommends (git, apparmor, ...), and without starting the system's
        # Docker service: its iptables rules would cut the namespace labs' bridges.
        noservice=""
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
            noservice=1
        fi
        apt-get install -y -qq --no-install-recommends $docker_missing >/dev/null \
            || echo "warning: could not install $docker_missing; the container lab test will be skipped"
        [ -n "$noservice" ] && rm -f /usr/sbin/policy-rc.d
    fi
else
    echo "note: integration tests need$missing $docker_missing; install with: sudo apt-get install$missing $docker_missing"
fi
exit 0

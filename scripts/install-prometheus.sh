#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's `prometheus` package) for tests/observability:
# `promtool check metrics|rules|config`, `promtool test rules`, and a real Prometheus server
# that the dashboard test queries. Idempotent: does nothing when both are already on PATH.
#
# The Debian package starts a `prometheus` service on :9090. The tests never use it (they run
# their own server on a free port), so it is stopped and disabled here: nothing of ours runs
# in the background after this script.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    echo "prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}') and promtool already on PATH"
    exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
    echo "install-prometheus: promtool/prometheus not on PATH and not root;" \
         "run 'sudo apt-get install -y prometheus' (or put both binaries on PATH) and try again" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d exit 101: no service is started by the package's maintainer scripts
restore_policy=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    restore_policy=1
fi
trap '[[ -n "$restore_policy" ]] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Belt and braces, where a service manager started it anyway.
service prometheus stop >/dev/null 2>&1 || true
if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null && command -v prometheus >/dev/null
echo "installed $(prometheus --version 2>&1 | head -1)"

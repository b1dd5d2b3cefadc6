"""The checkers of deploy/ (installed by ``make install``: scripts/install-deploy-tools.sh) and
the files they check. A missing checker fails the test that needs it, with the fix."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
COMPOSE = DEPLOY / "compose.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
TOOLS_BIN = ROOT / ".tools" / "deploy" / "bin"


def tool(name: str) -> str:
    """``.tools/deploy/bin/<name>``, else ``<name>`` on PATH; a failing test when neither exists."""
    local = TOOLS_BIN / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `make install` (scripts/install-deploy-tools.sh)")
    return found


def run(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL
    )


def kustomize_build() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/kubernetes``: the resources it renders (failing the test if it cannot)."""
    res = run(tool("kubectl"), "kustomize", str(KUSTOMIZE_DIR))
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def by_kind(resources: list[dict[str, Any]], kind: str, name: str = "cxstream") -> dict[str, Any]:
    """The one resource of ``kind`` named ``name`` (the workers' are ``cxstream``, the Profile
    API's ``cxstream-api``)."""
    (found,) = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def settings_of(resources: list[dict[str, Any]]) -> dict[str, str]:
    """The data of the settings ConfigMap (its name carries a hash suffix)."""
    (cm,) = [
        r
        for r in resources
        if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith("cxstream-settings")
    ]
    data: dict[str, str] = cm["data"]
    return data


def pod(resources: list[dict[str, Any]], deployment: str = "cxstream") -> dict[str, Any]:
    """The pod template of a Deployment: the workers' by default, ``cxstream-api`` the API's."""
    spec: dict[str, Any] = by_kind(resources, "Deployment", deployment)["spec"]["template"]
    return spec


def secret_refs(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Variable name -> ``secretKeyRef`` of a container's variables read from Secrets."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def compose_config() -> dict[str, Any]:
    """``docker-compose config`` of deploy/compose.yaml: the file as Compose reads it."""
    res = run(tool("docker-compose"), "-f", str(COMPOSE), "config", cwd=DEPLOY)
    assert res.returncode == 0, res.stdout + res.stderr
    config: dict[str, Any] = yaml.safe_load(res.stdout)
    return config

"""deploy/kubernetes, the Profile API (``cxstream api``): a Deployment of its own from the worker
image, with its Service, PodDisruptionBudget and HorizontalPodAutoscaler; probes on its port,
the worker's security context, the workers' Redis and pepper, tokens from a Secret of its own;
and no selector of the workers picks its pods, nor one of its resources theirs; the
NetworkPolicy docs/operations.md suggests is valid and fits. kubernetes-validate --strict runs
on these resources in test_kubernetes.py, which validates every core resource of the build."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.tools import (
    KUSTOMIZE_DIR,
    ROOT,
    by_kind,
    kustomize_build,
    pod,
    run,
    secret_refs,
    settings_of,
    tool,
)

from streams.settings import Settings

API = "cxstream-api"
Resources = list[dict[str, Any]]


@pytest.fixture(scope="module")
def resources() -> Resources:
    return kustomize_build()


def container(resources: Resources, deployment: str) -> dict[str, Any]:
    (c,) = pod(resources, deployment)["spec"]["containers"]
    return c


def env_of(c: dict[str, Any], settings: dict[str, str]) -> dict[str, str]:
    """The plain values a container sees: the settings ConfigMap, then its own ``value`` entries."""
    out = dict(settings) if c.get("envFrom") else {}
    out.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector picks a pod with ``labels`` (every pair present)."""
    return bool(selector) and selector.items() <= labels.items()


def selectors(resources: Resources) -> dict[str, dict[str, str]]:
    """``Kind/name`` -> the pod selector of every resource that selects pods, the pod templates'
    topology spread included."""
    out: dict[str, dict[str, str]] = {}
    for r in resources:
        key, spec = f"{r['kind']}/{r['metadata']['name']}", r.get("spec", {})
        if r["kind"] == "Service":
            out[key] = spec["selector"]
        elif r["kind"] in ("Deployment", "PodDisruptionBudget", "PodMonitor"):
            out[key] = spec["selector"]["matchLabels"]
        if r["kind"] == "Deployment":
            for i, t in enumerate(spec["template"]["spec"].get("topologySpreadConstraints", [])):
                out[f"{key}/topologySpread{i}"] = t["labelSelector"]["matchLabels"]
    return out


def overlaps(resources: Resources) -> list[str]:
    """Selectors of either Deployment's resources that miss its own pods or pick the other's."""
    labels = {d: pod(resources, d)["metadata"]["labels"] for d in ("cxstream", API)}
    wrong = []
    for key, sel in selectors(resources).items():
        own = API if key.split("/")[1] == API else "cxstream"
        other = "cxstream" if own == API else API
        if not selects(sel, labels[own]) or selects(sel, labels[other]):
            wrong.append(key)
    return wrong


def test_the_api_is_the_worker_image_running_cxstream_api(resources: Resources) -> None:
    dep = by_kind(resources, "Deployment", API)
    c = container(resources, API)
    assert c["image"] == container(resources, "cxstream")["image"]
    assert c["args"] == ["api"] and "command" not in c  # the image's ENTRYPOINT is cxstream
    assert dep["spec"]["replicas"] >= 2
    assert pod(resources, API)["metadata"]["labels"]["app.kubernetes.io/component"] == "api"


def test_the_api_probes_healthz_on_the_port_it_listens_on(resources: Resources) -> None:
    c = container(resources, API)
    env = env_of(c, settings_of(resources))
    listen = int(env.get("CXSTREAM_API_PORT", Settings.model_fields["api_port"].default))
    (port,) = c["ports"]
    assert port == {"name": "http", "containerPort": listen, "protocol": "TCP"}
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
        assert probe["timeoutSeconds"] < probe["periodSeconds"]
    assert env.get("CXSTREAM_API_HOST", "0.0.0.0") == "0.0.0.0", "a probe must reach it on the pod IP"
    service = by_kind(resources, "Service", API)["spec"]
    assert service["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    # SIGTERM comes after the preStop sleep; both fit in the grace period
    (_, seconds) = c["lifecycle"]["preStop"]["exec"]["command"]
    assert int(seconds) + 10 <= pod(resources, API)["spec"]["terminationGracePeriodSeconds"]


def test_the_api_runs_as_non_root_on_a_read_only_root_like_the_workers(resources: Resources) -> None:
    spec, worker = pod(resources, API)["spec"], pod(resources, "cxstream")["spec"]
    assert spec["securityContext"] == worker["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    c = container(resources, API)
    assert c["securityContext"] == container(resources, "cxstream")["securityContext"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["automountServiceAccountToken"] is False
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])


def test_the_api_reads_the_workers_redis_and_pepper_and_its_tokens_from_its_secret(
    resources: Resources,
) -> None:
    api, worker = container(resources, API), container(resources, "cxstream")
    secrets, worker_secrets = secret_refs(api), secret_refs(worker)
    # the same Redis and the same pepper, or look-ups by email or phone never match
    for name in ("CXSTREAM_REDIS_URL", "CXSTREAM_IDENTITY_PEPPER"):
        assert secrets[name] == worker_secrets[name], name
    assert secrets["CXSTREAM_API_TOKENS"] == {"name": API, "key": "tokens"}  # required: not optional
    # the same settings (Redis prefix, app id, Cluster flag), and nothing it does not need
    assert api["envFrom"] == worker["envFrom"]
    assert set(secrets) == {"CXSTREAM_REDIS_URL", "CXSTREAM_IDENTITY_PEPPER", "CXSTREAM_API_TOKENS"}
    fields = {f"CXSTREAM_{f.upper()}" for f in Settings.model_fields}
    assert {e["name"] for e in api["env"]} <= fields
    assert not any(k in settings_of(resources) for k in secrets), "a secret in the ConfigMap"
    plain = env_of(api, settings_of(resources))
    # consent "as of now" needs the policy: mounted where CXSTREAM_POLICY_FILE points, as for workers
    policy = Path(plain["CXSTREAM_POLICY_FILE"])
    here = plain | {"CXSTREAM_POLICY_FILE": str(KUSTOMIZE_DIR / policy.name)}  # the mounted file
    Settings(**{k.removeprefix("CXSTREAM_").lower(): v for k, v in here.items()})  # valid values
    (mount,) = [m for m in api["volumeMounts"] if Path(m["mountPath"]) == policy.parent]
    volumes = {v["name"]: v for v in pod(resources, API)["spec"]["volumes"]}
    worker_volumes = {v["name"]: v for v in pod(resources, "cxstream")["spec"]["volumes"]}
    assert volumes[mount["name"]] == worker_volumes[mount["name"]] and mount["readOnly"]


def test_worker_and_api_selectors_are_disjoint(resources: Resources) -> None:
    found = selectors(resources)
    assert {
        "Service/cxstream",
        "Service/cxstream-api",
        "PodDisruptionBudget/cxstream",
        "PodDisruptionBudget/cxstream-api",
        "PodMonitor/cxstream",
        "Deployment/cxstream",
        "Deployment/cxstream-api",
    } <= set(found)
    assert overlaps(resources) == []
    # the autoscalers each scale their own Deployment
    assert by_kind(resources, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == "cxstream"
    assert by_kind(resources, "HorizontalPodAutoscaler", API)["spec"]["scaleTargetRef"]["name"] == API


def test_the_disjointness_check_can_fail(resources: Resources) -> None:
    """An API pod labelled like a worker is picked by the workers' Service, PDB and PodMonitor."""
    broken = kustomize_build()
    pod(broken, API)["metadata"]["labels"]["app.kubernetes.io/component"] = "worker"
    wrong = overlaps(broken)
    for key in ("Service/cxstream", "PodDisruptionBudget/cxstream", "PodMonitor/cxstream"):
        assert key in wrong, wrong


def test_the_api_scales_on_cpu_between_two_and_its_max(resources: Resources) -> None:
    hpa = by_kind(resources, "HorizontalPodAutoscaler", API)
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert 2 <= spec["minReplicas"] <= by_kind(resources, "Deployment", API)["spec"]["replicas"]
    assert spec["minReplicas"] < spec["maxReplicas"]
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert 0 < metric["resource"]["target"]["averageUtilization"] <= 100
    # utilization is measured against the request: there must be one
    assert container(resources, API)["resources"]["requests"]["cpu"]


def test_a_drain_keeps_api_pods_answering(resources: Resources) -> None:
    pdb = by_kind(resources, "PodDisruptionBudget", API)["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": by_kind(resources, "Deployment", API)["spec"]["selector"]}
    strategy = by_kind(resources, "Deployment", API)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_network_policy_the_guide_suggests_is_valid_and_fits_the_api(
    resources: Resources, tmp_path: Path
) -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind: NetworkPolicy" in b]
    f = tmp_path / "networkpolicy.yaml"
    f.write_text(block)
    res = run(tool("kubernetes-validate"), "--strict", "-k", "1.28.0", str(f))
    assert res.returncode == 0 and "passed" in res.stdout, res.stdout + res.stderr
    policy = yaml.safe_load(block)["spec"]
    sel = policy["podSelector"]["matchLabels"]
    assert selects(sel, pod(resources, API)["metadata"]["labels"])
    assert not selects(sel, pod(resources, "cxstream")["metadata"]["labels"])
    assert policy["ingress"][0]["ports"] == [{"port": "http"}]

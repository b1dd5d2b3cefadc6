"""deploy/kubernetes: kustomize builds it; the core resources pass kubernetes-validate (strict);
the custom resources (PodMonitor, PrometheusRule, ScaledObject), which kubernetes-validate has no
schema for, are checked here field by field; and they all fit together and with the settings."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.tools import (
    ALERTS,
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

CORE = {"ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
CUSTOM = {
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
}


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return kustomize_build()


def test_the_base_renders_every_resource_the_issue_asks_for(resources: list[dict[str, Any]]) -> None:
    names = sorted((r["kind"], r["metadata"]["name"]) for r in resources if r["kind"] != "ConfigMap")
    workers = [(kind, "cxstream") for kind in ("Deployment", "Service", "PodDisruptionBudget", *CUSTOM)]
    api = [
        (kind, "cxstream-api")
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler")
    ]
    assert names == sorted(workers + api)
    assert sum(r["kind"] == "ConfigMap" for r in resources) == 2  # settings and policy


@pytest.mark.parametrize("version", ["1.28.0", "1.37.0"])  # an older cluster, and the newest schema here
def test_core_resources_pass_kubernetes_validate_strictly(
    resources: list[dict[str, Any]], tmp_path: Path, version: str
) -> None:
    core = [r for r in resources if r["kind"] in CORE]
    files = []
    for i, r in enumerate(core):
        f = tmp_path / f"{i}-{r['kind']}.yaml"
        f.write_text(yaml.safe_dump(r))
        files.append(str(f))
    res = run(tool("kubernetes-validate"), "--strict", "-k", version, *files)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("passed") == len(core), res.stdout
    assert "WARN" not in res.stdout + res.stderr, res.stdout + res.stderr


def test_kubernetes_validate_really_rejects_a_broken_deployment(tmp_path: Path) -> None:
    """The check above can fail: an unknown field under the container is refused."""
    dep = by_kind(kustomize_build(), "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(dep))
    res = run(tool("kubernetes-validate"), "--strict", str(f))
    assert res.returncode != 0, res.stdout


def test_custom_resources_have_their_api_and_required_fields(resources: list[dict[str, Any]]) -> None:
    for kind, api in CUSTOM.items():
        r = by_kind(resources, kind)
        assert r["apiVersion"] == api and r["metadata"]["name"] == "cxstream" and r["spec"], kind
    labels = pod(resources)["metadata"]["labels"]
    container = pod(resources)["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = settings_of(resources)

    mon = by_kind(resources, "PodMonitor")["spec"]
    assert mon["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = mon["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics" and ports[endpoint["port"]] == int(
        settings["CXSTREAM_METRICS_PORT"]
    )
    # the alert rules select job="cxstream"
    assert {"targetLabel": "job", "replacement": "cxstream"} in endpoint["relabelings"]

    scaled = by_kind(resources, "ScaledObject")["spec"]
    target = scaled["scaleTargetRef"]
    assert (
        target["kind"] == "Deployment"
        and target["name"] == by_kind(resources, "Deployment")["metadata"]["name"]
    )
    s = Settings(app_id=settings["CXSTREAM_APP_ID"], partitions=int(settings["CXSTREAM_PARTITIONS"]))
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= s.partitions
    assert scaled["triggers"]
    for trig in scaled["triggers"]:
        meta = trig["metadata"]
        assert trig["type"] == "kafka"
        assert meta["consumerGroup"] == s.app_id
        assert meta["topic"] in (s.topic_raw, s.topic_profiled)
        assert meta["bootstrapServers"] == settings["CXSTREAM_KAFKA_BOOTSTRAP"]
        assert int(meta["lagThreshold"]) > 0


def test_the_prometheusrule_holds_exactly_the_alert_rules(resources: list[dict[str, Any]]) -> None:
    rule = by_kind(resources, "PrometheusRule")
    assert rule["spec"] == {"groups": yaml.safe_load(ALERTS.read_text())["groups"]}
    res = run("python3", str(ROOT / "scripts" / "gen-prometheusrule.py"), "--check")
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_generator_notices_drift() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_prometheusrule", ROOT / "scripts" / "gen-prometheusrule.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = (KUSTOMIZE_DIR / "prometheusrule.yaml").read_text()
    alerts = ALERTS.read_text()
    assert gen.render(alerts) == current
    assert gen.render(alerts.replace("for: 10m", "for: 11m", 1)) != current


def test_the_workers_probe_health_and_stop_within_their_grace_period(resources: list[dict[str, Any]]) -> None:
    settings = settings_of(resources)
    spec = pod(resources)["spec"]
    (c,) = spec["containers"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert port[probe["httpGet"]["port"]] == int(settings["CXSTREAM_METRICS_PORT"])
    assert spec["terminationGracePeriodSeconds"] > float(settings["CXSTREAM_SHUTDOWN_TIMEOUT"])
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert by_kind(resources, "Deployment")["spec"]["replicas"] >= 2


def test_the_workers_run_as_non_root_on_a_read_only_root(resources: list[dict[str, Any]]) -> None:
    spec = pod(resources)["spec"]
    (c,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])


def test_settings_come_from_the_configmap_and_credentials_from_secrets(
    resources: list[dict[str, Any]],
) -> None:
    settings = settings_of(resources)
    fields = {f"CXSTREAM_{f.upper()}" for f in Settings.model_fields}
    assert set(settings) <= fields, set(settings) - fields
    spec = pod(resources)["spec"]
    (c,) = spec["containers"]
    assert [e["configMapRef"]["name"] for e in c["envFrom"]] == [
        r["metadata"]["name"]
        for r in resources
        if r["kind"] == "ConfigMap" and "settings" in r["metadata"]["name"]
    ]
    secrets = secret_refs(c)
    assert {"CXSTREAM_REDIS_URL", "CXSTREAM_KAFKA_SASL_USERNAME", "CXSTREAM_KAFKA_SASL_PASSWORD"} <= set(
        secrets
    )
    assert set(secrets) <= fields
    assert not any(k in settings for k in secrets), "a secret in the ConfigMap"
    # the policy file: mounted from the policy ConfigMap where CXSTREAM_POLICY_FILE points
    policy = Path(settings["CXSTREAM_POLICY_FILE"])
    mount = next(m for m in c["volumeMounts"] if policy.parent == Path(m["mountPath"]))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    (cm,) = [
        r
        for r in resources
        if r["kind"] == "ConfigMap" and r["metadata"]["name"] == volume["configMap"]["name"]
    ]
    assert policy.name in cm["data"]
    from streams.consent.policy import load_policy

    assert load_policy(KUSTOMIZE_DIR / policy.name).version


def test_service_and_disruption_budget_select_the_workers(resources: list[dict[str, Any]]) -> None:
    labels = pod(resources)["metadata"]["labels"]
    assert by_kind(resources, "Service")["spec"]["selector"].items() <= labels.items()
    pdb = by_kind(resources, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1


def test_on_the_whole_build_only_the_custom_resources_lack_a_schema(tmp_path: Path) -> None:
    res = run(tool("kubectl"), "kustomize", str(KUSTOMIZE_DIR))
    f = tmp_path / "all.yaml"
    f.write_text(res.stdout)
    res = run(tool("kubernetes-validate"), "--strict", str(f))
    assert res.returncode == 0, res.stdout + res.stderr
    warnings = [line for line in (res.stdout + res.stderr).splitlines() if "WARN" in line]
    assert sorted(w.split("kind ")[1].split()[0] for w in warnings) == sorted(CUSTOM), warnings


def test_the_policy_configmap_ships_the_documented_example() -> None:
    """kustomize reads files below the base only, so the base holds a copy: keep it the example."""
    example = (ROOT / "deploy" / "policy.example.toml").read_text()
    same = (KUSTOMIZE_DIR / "policy.toml").read_text() == example
    assert same, "run: cp deploy/policy.example.toml deploy/kubernetes/policy.toml"

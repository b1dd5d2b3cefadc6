"""deploy/compose.yaml: Docker Compose accepts it, and it is the whole product on one host."""

from __future__ import annotations

import re
from typing import Any

import yaml
from deploy.tools import COMPOSE, DEPLOY, compose_config, run

from streams.kafka import topic_names
from streams.settings import Settings


def duration_s(text: str) -> float:
    """A Compose duration (``45s``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's bind mounts and volumes, as Compose resolved them."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            src, target = v.split(":")[:2]
            out[target] = src
        else:
            out[v["target"]] = v["source"]
    return out


def test_docker_compose_accepts_it() -> None:
    config = compose_config()
    assert set(config["services"]) == {
        "kafka",
        "topics",
        "redis",
        "worker-1",
        "worker-2",
        "api",
        "prometheus",
        "grafana",
    }


def test_kafka_runs_kraft_from_the_official_image_and_topics_are_made_once() -> None:
    services = compose_config()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller" and "ZOOKEEPER" not in str(env)
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "/var/lib/kafka/data" in mounts(kafka)
    topics = services["topics"]
    assert topics["restart"] == "no"
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = mounts(topics)["/create-topics.sh"]
    text = (DEPLOY / "kafka" / "create-topics.sh").read_text()
    assert script.endswith("deploy/kafka/create-topics.sh")
    assert run("bash", "-n", script).returncode == 0
    defaults = Settings()
    for name in topic_names(defaults):  # every topic the app uses, with a retention of its own
        assert name in text or name.replace(defaults.app_id, "$APP_ID") in text, name


def test_redis_7_keeps_an_append_only_file_and_never_evicts() -> None:
    redis = compose_config()["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert mounts(redis).get("/data")


def test_two_workers_with_real_settings_and_time_to_stop_gracefully() -> None:
    services = compose_config()["services"]
    for name in ("worker-1", "worker-2"):
        w = services[name]
        assert w["build"]["dockerfile"] == "deploy/Dockerfile"
        env = w["environment"]
        assert set(env) <= {f"CXSTREAM_{f.upper()}" for f in Settings.model_fields}, set(env)
        Settings(**{k.removeprefix("CXSTREAM_").lower(): v for k, v in env.items()})  # valid values
        assert duration_s(w["stop_grace_period"]) > float(env["CXSTREAM_SHUTDOWN_TIMEOUT"])
        assert w["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_prometheus_loads_our_rules_and_scrapes_both_workers() -> None:
    from observability.prom import promtool

    prom = compose_config()["services"]["prometheus"]
    src = mounts(prom)["/etc/cxstream/prometheus"]
    assert src.endswith("deploy/prometheus")
    (config_flag,) = [c for c in prom["command"] if c.startswith("--config.file=")]
    config_file = DEPLOY / "prometheus" / config_flag.split("/")[-1]
    res = promtool("check", "config", str(config_file))
    assert res.returncode == 0, res.stdout + res.stderr
    config = yaml.safe_load(config_file.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "cxstream"  # what the alerts select
    assert job["static_configs"][0]["targets"] == ["worker-1:9464", "worker-2:9464"]


def test_grafana_provisions_the_datasource_and_our_dashboard() -> None:
    grafana = compose_config()["services"]["grafana"]
    m = mounts(grafana)
    assert m["/etc/grafana/provisioning"].endswith("deploy/grafana/provisioning")
    dash_target = next(t for t, s in m.items() if s.endswith("deploy/grafana/cxstream.json"))
    prov = DEPLOY / "grafana" / "provisioning"
    (ds,) = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and ds["isDefault"]
    (provider,) = yaml.safe_load((prov / "dashboards" / "cxstream.yml").read_text())["providers"]
    assert dash_target.startswith(provider["options"]["path"] + "/")


def test_the_profile_api_serves_the_workers_redis_on_8080_with_a_healthcheck() -> None:
    services = compose_config()["services"]
    api, worker = services["api"], services["worker-1"]
    assert (api["image"], api["build"]) == (worker["image"], worker["build"])
    assert api["command"] == ["api"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "kafka" not in api["depends_on"] and "topics" not in api["depends_on"]  # Redis only
    env = api["environment"]
    assert set(env) <= {f"CXSTREAM_{f.upper()}" for f in Settings.model_fields}, set(env)
    settings = Settings(**{k.removeprefix("CXSTREAM_").lower(): v for k, v in env.items()})
    # what the workers wrote, read the way they wrote it
    for name in (
        "CXSTREAM_REDIS_URL",
        "CXSTREAM_IDENTITY_PEPPER",
        "CXSTREAM_APP_ID",
        "CXSTREAM_REDIS_PREFIX",
    ):
        assert env.get(name) == worker["environment"].get(name), name
    assert settings.api_token_list(), "no token: every request would be 401"
    # published on the host's loopback, on the port it listens on
    (port,) = api["ports"]
    host_ip, published, target = port.removesuffix("/tcp").split(":")
    assert (host_ip, published) == ("127.0.0.1", "8080") and int(target) == settings.api_port
    # the image's HEALTHCHECK asks the metrics port: the API's asks /healthz on the API port
    check = api["healthcheck"]
    assert check["test"][0] == "CMD" and "curl" not in check["test"]
    code = check["test"][-1]
    assert "/healthz" in code and "CXSTREAM_API_PORT" in code and str(settings.api_port) in code
    assert api["read_only"] is True and "no-new-privileges:true" in api["security_opt"]


def test_the_default_api_token_is_marked_for_development_only() -> None:
    """Compose needs a token to start the API; the one in the file is public, and says so."""
    text = COMPOSE.read_text()
    (default,) = re.findall(r"\$\{CXSTREAM_API_TOKENS:-([^}]*)\}", text.split("\nservices:")[1])
    assert "dev" in default.lower() and "not-for-production" in default.lower(), default
    assert Settings(api_tokens=default).api_token_list() == [default.encode()]  # >= 16 characters
    assert "DEV-ONLY" in text.split("\nservices:")[0], "the header says how to set a real token"

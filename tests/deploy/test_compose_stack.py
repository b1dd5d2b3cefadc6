"""Optional: the compose stack for real. Needs a Docker engine (skips without one: the build
machines have none); builds the image, starts Kafka, Redis, the topics, two workers,
Prometheus, Grafana and the Profile API, replays the demo into it, waits for a trigger on
cx.activations and reads a demo customer's profile from the API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy.tools import COMPOSE, DEPLOY, run, tool

DEMO_IN_IMAGE = "/opt/cxstream/lib/python3.11/site-packages/streams/demo/journeys.jsonl"
DEMO = Path(__file__).resolve().parents[2] / "streams" / "demo" / "journeys.jsonl"
API_TOKEN = f"stack-test-{uuid.uuid4().hex}"  # not the compose file's dev default


def engine_reachable() -> bool:
    try:
        res = subprocess.run(["docker", "info"], capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


pytestmark = [
    pytest.mark.skipif(not engine_reachable(), reason="no Docker engine reachable"),
    pytest.mark.timeout(1800),
]


@pytest.fixture(scope="module")
def project() -> Iterator[list[str]]:
    """``docker-compose -p <fresh> -f deploy/compose.yaml``, up with the event clock; always taken down."""
    name = f"cxstream-test-{uuid.uuid4().hex[:8]}"
    compose = [tool("docker-compose"), "-p", name, "-f", str(COMPOSE)]
    full_env = {
        **os.environ,
        "CXSTREAM_CLOCK": "event",
        "CXSTREAM_IMAGE_TAG": name,
        "CXSTREAM_API_TOKENS": API_TOKEN,
    }

    def sh(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], capture_output=True, text=True, cwd=DEPLOY, env=full_env, timeout=timeout
        )

    try:
        up = sh("up", "-d", "--build")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        yield compose
    finally:
        logs = sh("logs", "--no-color", "--tail", "50")
        print(logs.stdout[-5000:])
        sh("down", "-v", "--rmi", "local", timeout=300)


def test_the_stack_turns_the_demo_into_triggers(project: list[str]) -> None:
    res = run(
        *project, "run", "--rm", "--no-deps", "worker-1", "replay", DEMO_IN_IMAGE, cwd=DEPLOY, timeout=600
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    consume = [
        *project,
        "exec",
        "-T",
        "kafka",
        "/opt/kafka/bin/kafka-console-consumer.sh",
        "--bootstrap-server",
        "kafka:9092",
        "--topic",
        "cx.activations",
        "--from-beginning",
        "--max-messages",
        "1",
        "--timeout-ms",
        "300000",
    ]
    res = run(*consume, cwd=DEPLOY, timeout=360)
    assert res.returncode == 0 and '"specversion"' in res.stdout, res.stdout[-2000:] + res.stderr[-2000:]
    # both workers healthy, Prometheus scraping them with our rules loaded
    deadline = time.monotonic() + 120
    while True:
        url = "http://127.0.0.1:9090/api/v1/query?query=up%7Bjob%3D%22cxstream%22%7D"
        with urllib.request.urlopen(url, timeout=10) as r:
            result = json.loads(r.read())["data"]["result"]
        if sorted(float(s["value"][1]) for s in result) == [1.0, 1.0]:
            break
        assert time.monotonic() < deadline, result
        time.sleep(5)


def api_get(path: str, token: str | None) -> int:
    """The status of ``GET http://127.0.0.1:8080<path>`` (the compose file publishes the API there)."""
    req = urllib.request.Request("http://127.0.0.1:8080" + path)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError):
        return 0  # not listening (yet)


def test_the_profile_api_serves_a_demo_customer(project: list[str]) -> None:
    """After the replay above (same module, runs after it), a customer of the demo is found."""
    with DEMO.open() as f:
        user = next(u for line in f if (u := json.loads(line).get("userId")))
    path = f"/v1/profiles/user_id:{user}"
    deadline = time.monotonic() + 120
    while api_get("/healthz", None) != 200:
        assert time.monotonic() < deadline, "the API's /healthz never answered 200"
        time.sleep(2)
    assert api_get(path, None) == 401
    while (status := api_get(path, API_TOKEN)) != 200:
        assert status == 404 and time.monotonic() < deadline, status
        time.sleep(5)

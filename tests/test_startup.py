"""``cxstream worker`` start-up: a wrong setting, rule or Redis credential stops it in one line,
fast, before it waits on Kafka; an unreachable Redis is waited for, not a crash loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_redis_io import Server

from streams.stack import free_port

CXSTREAM = str(Path(sys.executable).parent / "cxstream")


def env(**settings: str) -> dict[str, str]:
    """The environment of a worker: nothing of ours from the shell, Kafka and Redis unreachable."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    out.update(
        CXSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",  # nothing listens there
        CXSTREAM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        CXSTREAM_METRICS_PORT="0",
        CXSTREAM_APP_ID="startup-test",
    )
    out.update({f"CXSTREAM_{k.upper()}": v for k, v in settings.items()})
    return out


def worker(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    res = subprocess.run(
        [CXSTREAM, "worker"], env=env(**settings), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    res.args = time.monotonic() - start  # the run time, for the assertions
    return res


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[Server]:
    d = tmp_path / "redis"
    d.mkdir()
    srv = Server(d, "--requirepass", "right-horse-battery")
    try:
        yield srv
    finally:
        srv.stop()


def test_an_unknown_rule_stops_start_up_before_kafka_is_tried(tmp_path: Path) -> None:
    res = worker(tmp_path, rules="cart_abandoned,no_such_rule")
    assert res.returncode == 2, res.stderr
    assert res.args < 15  # not the 30 s of waiting for an unreachable Kafka
    assert "no_such_rule" in one_line(res)


def test_a_wrong_redis_password_stops_start_up_in_one_line(
    tmp_path: Path, redis_with_password: Server
) -> None:
    res = worker(tmp_path, redis_url=redis_with_password.url(":wrong-staple-9981"))
    assert res.returncode != 0
    assert res.args < 15
    line = one_line(res)
    assert "WRONGPASS" in line and "CXSTREAM_REDIS_URL" in line, line
    assert "wrong-staple" not in res.stderr + res.stdout and "right-horse" not in res.stderr + res.stdout


def test_a_redis_url_with_a_bad_port_is_one_line(tmp_path: Path) -> None:
    res = worker(tmp_path, redis_url="redis://:hunter2-secret@host:notaport")
    assert res.returncode == 2
    line = one_line(res)
    assert "CXSTREAM_REDIS_URL" in line and "notaport" in line, line
    assert "hunter2" not in res.stderr + res.stdout


def test_an_unreachable_redis_is_waited_for(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [CXSTREAM, "worker"],
        env=env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(5)
        assert proc.poll() is None, "an unreachable Redis is an outage to wait out, not a crash"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=10)
    said = [line for line in err.splitlines() if "redis unavailable" in line]
    assert len(said) == 1, err  # logged once, not once per retry

"""A Redis outage slows the worker down; it does not drop events or crash-loop."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from helpers import consume, json_values, produce, running_worker

from streams.intake import ms_to_iso
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.stack import _wait_redis, free_port, redis_binary
from streams.testing import at

pytestmark = pytest.mark.stack
DAY = 86_400_000


class OwnRedis:
    """A redis-server of this test alone, with an append-only file so a restart keeps the data."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_redis(self.port, 10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def loan_checks(user: str, start: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(3):
        ev = {
            "type": "track",
            "event": "Loan Eligibility Checked",
            "messageId": f"{user}-c{i}",
            "userId": user,
            "timestamp": ms_to_iso(start + i * DAY),
            "properties": {"product": "auto_loan"},
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "traits": {"email": f"{user}@example.com"},
            },
        }
        out.append((user.encode(), orjson.dumps(ev)))
    return out


def test_a_redis_outage_delays_triggers_but_loses_none(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    own_redis: OwnRedis,
) -> None:
    s = make_settings(redis_url=f"redis://127.0.0.1:{own_redis.port}/0", rules=("loan_eligibility_repeat",))
    topics(s)
    t0 = at("2026-06-01T08:00:00Z")
    before = [f"early{i:02d}" for i in range(40)]
    during = [f"late{i:02d}" for i in range(40)]
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        produce(s, s.topic_raw, [r for u in before for r in loan_checks(u, t0)])
        assert len(consume(s, s.topic_activations, want=len(before), timeout=60, idle=1)) == len(before)
        own_redis.stop()
        produce(s, s.topic_raw, [r for u in during for r in loan_checks(u, t0)])
        time.sleep(6)  # the worker retries with backoff meanwhile
        assert proc.poll() is None, "the worker must not crash while Redis is away"
        assert len(consume(s, s.topic_activations, want=len(before) + 1, timeout=2)) == len(before)
        own_redis.start()
        msgs = consume(s, s.topic_activations, want=len(before) + len(during), timeout=90, idle=2)
        assert proc.poll() is None, log.read_text()[-3000:]
    ids = {ce["id"] for ce in json_values(msgs)}
    assert ids == {trigger_id("loan_eligibility_repeat", 1, f"{u}-c2") for u in before + during}
    assert "redis" in log.read_text().lower()  # the outage was noticed and logged, not silent

"""A Redis outage slows the worker down; it does not drop events or crash-loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import OwnRedis, consume, json_values, loan_checks, produce, running_worker

from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.testing import at

pytestmark = pytest.mark.stack


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path, durable=True)
    r.start()
    try:
        yield r
    finally:
        r.stop()


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

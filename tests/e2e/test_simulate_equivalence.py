"""`cxstream simulate` and the worker on the local stack give the same triggers and decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import consume, person_keys, running_worker

from streams.demo import DEMO_FILE
from streams.replay import replay_file
from streams.settings import Settings
from streams.simulate import simulate_file

pytestmark = pytest.mark.stack


def test_the_demo_journeys_give_identical_triggers_through_simulate_and_the_worker(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(clock="event", watermark_idle_timeout=4.0)
    sim = asyncio.run(simulate_file(s, DEMO_FILE))
    assert len(sim.activations) > 100 and len(sim.decisions) > len(sim.activations)
    keys = person_keys(DEMO_FILE)
    topics(s)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        asyncio.run(replay_file(s, DEMO_FILE, key=keys.get))
        decisions = consume(s, s.topic_decisions, want=len(sim.decisions), timeout=180, idle=4)
        activations = consume(s, s.topic_activations, want=len(sim.activations), timeout=30, idle=1)
        assert proc.poll() is None, log.read_text()[-3000:]

    def by_id(values: list[bytes]) -> dict[str, bytes]:
        out = {orjson.loads(v)["id"]: v for v in values}
        assert len(out) == len(values), "a trigger id appeared twice"
        return out

    sim_d, kafka_d = by_id(sim.decisions), by_id([m.value() for m in decisions])
    sim_a, kafka_a = by_id(sim.activations), by_id([m.value() for m in activations])
    assert sorted(kafka_d) == sorted(sim_d)
    assert sorted(kafka_a) == sorted(sim_a)
    assert [i for i in sim_d if sim_d[i] != kafka_d[i]] == []  # byte-identical payloads
    assert [i for i in sim_a if sim_a[i] != kafka_a[i]] == []

"""On the event clock, the timers a batch makes due fire with the batch, in its produce and commit
(``Runtime.decide_batch``): the same records, in the same order, and the same stores as the
batch committed first and then a round of due timers, as before."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import REGISTRY

from bench.bench_pipeline import consumed, journeys
from streams.engine.state import MemoryStateStore
from streams.engine.timers import MemoryTimerStore
from streams.pipeline.envelope import batched
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.testing import FakeClock


def runtime() -> Runtime:
    s = Settings(partitions=4, clock="event")
    rt = Runtime(s, Stores.memory(s))
    rt.event_clock.idle_timeout_ms = 2**62  # the sources are never idle: the clock is their marks
    rt.decide.wall = FakeClock(1_800_000_000_000)  # leases: the same in both runs
    return rt


Produced = list[tuple[str, bytes | None, bytes]]


async def run(rt: Runtime, events: Sequence[bytes], with_batch: bool) -> tuple[Produced, int, int]:
    """What the decide stage produced, in order; how many batches; how many produce calls."""
    s = rt.settings
    produced: Produced = []
    offsets: dict[int, int] = {}
    calls = batches = 0

    async def produce(records: Sequence[OutRecord]) -> None:
        nonlocal calls
        calls += 1
        produced.extend((r.topic, r.key, r.value) for r in records)

    for i in range(0, len(events), 1000):  # ~3 h of the journeys' time: carts set and due within one
        recs = [
            InRecord(s.topic_raw, j % s.partitions, i + j, None, v)
            for j, v in enumerate(events[i : i + 1000])
        ]
        out = batched(
            await rt.intake.process(recs, 1_800_000_000_000), s.topic_profiled, s.kafka_max_request_size
        )
        batch = consumed(out, s.topic_profiled, offsets)
        parts = {r.partition for r in batch}
        batches += 1
        await rt.adopt(set(offsets))
        if with_batch:
            await rt.decide_batch(batch, produce, parts)
        else:  # the batch, then rounds of due timers, each produced and committed on its own
            await rt.run_decide(await rt.decide.process(batch), produce)
            while await rt.fire_round(parts, produce):
                pass
    return produced, batches, calls


def stores(rt: Runtime) -> tuple[object, ...]:
    states, timers = rt.stores.states, rt.stores.timers
    assert isinstance(states, MemoryStateStore) and isinstance(timers, MemoryTimerStore)
    return states.data, timers.due, timers.data, timers.claims, timers.marks, timers.waits


@pytest.mark.parametrize("seed", [1, 2])
def test_timers_fired_with_the_batch_give_what_a_round_after_its_commit_gives(seed: int) -> None:
    events = journeys(3000, seed=seed)
    before, after = runtime(), runtime()

    def lateness_observed() -> float:
        return REGISTRY.get_sample_value("cxstream_timer_lateness_seconds_count") or 0.0

    start = lateness_observed()
    old, batches, old_calls = asyncio.run(run(before, events, with_batch=False))
    middle = lateness_observed()
    new, _, new_calls = asyncio.run(run(after, events, with_batch=True))
    assert lateness_observed() - middle == middle - start > 0  # every fired timer's, once
    s = before.settings
    # not a comparison of nothing: timers fired (carts abandoned) and triggers were decided
    decided = [orjson.loads(v) for t, _, v in new if t == s.topic_decisions]
    assert sum(1 for d in decided if d["rule"]["name"] == "cart_abandoned") > 50
    assert new == old
    assert stores(after) == stores(before)
    # one produce (and one commit) per batch: before, one more for each round that fired
    assert new_calls == batches < old_calls

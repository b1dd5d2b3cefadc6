"""A decide batch's commit lands behind it (``Runtime.decide_batch`` with ``done``, as the worker
runs it): the next batch is computed while that commit is in flight, from the states it writes
(``DecideStage.carried``) and the store's for the other profiles (on a Redis Cluster too:
``tests/cluster/test_commit_behind.py``). The records, their order and
the stored states are the same as with every commit awaited in turn; a batch is acked only once
its commit has landed, and the next batch's records are produced only after that."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import pytest
import redis.asyncio as aioredis

from bench.bench_pipeline import consumed, journeys
from streams.engine.state import MemoryStateStore
from streams.pipeline.envelope import batched
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Produce, Runtime, Stores
from streams.settings import Settings
from streams.stack import LocalStack
from streams.testing import FakeClock

NOW = 1_800_000_000_000
Produced = list[tuple[str, bytes | None, bytes]]


def runtime(s: Settings, stores: Stores) -> Runtime:
    rt = Runtime(s, stores)
    rt.event_clock.idle_timeout_ms = 2**62  # the sources are never idle: the clock is their marks
    rt.decide.wall = FakeClock(NOW)  # leases and hand-off waits: the same in every run
    return rt


async def repartitioned(rt: Runtime, events: Sequence[bytes], size: int = 500) -> list[list[InRecord]]:
    """The decide stage's batches for ``events``, intake done first: decide then runs batch after
    batch, as a worker draining a backlog does."""
    s = rt.settings
    offsets: dict[int, int] = {}
    out = []
    for i in range(0, len(events), size):
        recs = [
            InRecord(s.topic_raw, j % s.partitions, i + j, None, v)
            for j, v in enumerate(events[i : i + size])
        ]
        made = batched(await rt.intake.process(recs, NOW), s.topic_profiled, s.kafka_max_request_size)
        out.append(consumed(made, s.topic_profiled, offsets))
    return out


async def decide(rt: Runtime, batches: list[list[InRecord]], behind: bool) -> tuple[Produced, int]:
    """What the decide stage produced, in order, and how many profiles a batch shared with the
    one before while that one's commit was in flight (``behind``: their states were carried)."""
    produced: Produced = []
    acked: list[int] = []
    shared = 0

    async def produce(records: Sequence[OutRecord]) -> None:
        produced.extend((r.topic, r.key, r.value) for r in records)

    for n, batch in enumerate(batches):
        parts = {r.partition for r in batch}
        await rt.adopt(rt.known_partitions | parts)
        if not behind:
            await rt.decide_batch(batch, produce, parts)
            continue
        before = set(rt.decide.carried)  # the profiles the last batch's commit writes
        await rt.decide_batch(batch, produce, parts, lambda n=n: acked.append(n))  # type: ignore[misc]
        shared += len(before & set(rt.decide.carried))
        # the batch before has landed and was acked (the batch's own records came after it); this
        # one is in flight, unless its timers left more due (then it landed at once)
        assert acked in (list(range(n)), list(range(n + 1)))
    await rt.settle()
    assert not behind or acked == list(range(len(batches)))
    return produced, shared


async def states_of(stores: Stores, pids: list[str]) -> dict[str, bytes]:
    return {p: s.to_json() for p, s in (await stores.states.load(pids)).items()}


def check(want: Produced, got: Produced, shared: int, settings: Settings) -> None:
    assert got == want
    decided = [v for t, _, v in got if t == settings.topic_decisions]
    assert len(decided) > 200  # not a comparison of nothing: timers fired, triggers were decided
    assert shared > 50  # and the carried states were used (profiles in two batches in a row)


@pytest.mark.parametrize("seed", [1, 2])
def test_in_memory_a_batch_computed_while_the_last_commit_lands_gives_the_same(seed: int) -> None:
    s = Settings(partitions=4, clock="event")
    events = journeys(4000, seed=seed)

    async def run(behind: bool) -> tuple[Produced, int, dict[str, bytes]]:
        rt = runtime(s, Stores.memory(s))
        produced, shared = await decide(rt, await repartitioned(rt, events), behind)
        states = rt.stores.states
        assert isinstance(states, MemoryStateStore)
        return produced, shared, dict(states.data)

    want, _, want_states = asyncio.run(run(behind=False))
    got, shared, got_states = asyncio.run(run(behind=True))
    check(want, got, shared, s)
    assert got_states == want_states


async def on_redis(
    s: Settings, events: list[bytes]
) -> tuple[Produced, int, Produced, dict[str, bytes], dict[str, bytes]]:
    """Awaited commits over the in-memory stores, against commits landing behind on Redis."""
    mem = runtime(s, Stores.memory(s))
    want, _ = await decide(mem, await repartitioned(mem, events), behind=False)
    stores = Stores.redis(s)
    try:
        rt = runtime(s, stores)
        got, shared = await decide(rt, await repartitioned(rt, events), behind=True)
        states = mem.stores.states
        assert isinstance(states, MemoryStateStore)
        pids = sorted(states.data)
        return want, shared, got, await states_of(mem.stores, pids), await states_of(stores, pids)
    finally:
        await stores.states.client.aclose()  # type: ignore[attr-defined]


@pytest.mark.stack
def test_on_redis_a_batch_computed_while_the_last_commit_lands_gives_the_same(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(clock="event")
    want, shared, got, want_states, got_states = asyncio.run(on_redis(s, journeys(4000, seed=3)))
    check(want, got, shared, s)
    assert got_states == want_states


@pytest.mark.stack
def test_a_batch_is_acked_once_its_commit_lands_and_the_next_is_produced_after_that(
    make_settings: Callable[..., Settings], stack: LocalStack
) -> None:
    """Redis holds every write for 0.5 s (``CLIENT PAUSE ... WRITE``) right after a batch returned:
    its commit waits, the next batch's state reads do not, and its records wait for the commit."""
    s = make_settings(clock="event")

    async def go() -> list[tuple[str, float]]:
        stores = Stores.redis(s)
        admin = aioredis.from_url(stack.redis_url)
        seen: list[tuple[str, float]] = []

        def produce(name: str) -> Produce:
            async def send(records: Sequence[OutRecord]) -> None:
                seen.append((name, time.monotonic()))

            return send

        try:
            await admin.ping()  # connected: the pause goes out in one write
            rt = runtime(s, stores)
            first, second = (await repartitioned(rt, journeys(2000, seed=5), size=1000))[:2]
            for n, batch in enumerate((first, second)):
                parts = {r.partition for r in batch}
                await rt.adopt(rt.known_partitions | parts)
                done = lambda n=n: seen.append((f"acked {n}", time.monotonic()))  # noqa: E731
                await rt.decide_batch(batch, produce(f"produced {n}"), parts, done)
                if n == 0:
                    await admin.client_pause(500, all=False)  # CLIENT PAUSE 500 WRITE
                    seen.append(("paused", time.monotonic()))
            await rt.settle()
        finally:
            await admin.aclose()
            await stores.states.client.aclose()  # type: ignore[attr-defined]
        return seen

    seen = asyncio.run(go())
    order = [name for name, _ in seen]
    assert order == ["produced 0", "paused", "acked 0", "produced 1", "acked 1"]
    at = dict(seen)
    assert at["acked 0"] - at["paused"] > 0.4  # the commit waited for the pause to end

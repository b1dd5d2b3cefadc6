"""messageId dedupe: duplicates within the TTL dropped once and counted; redeliveries kept."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.constants import Keys
from streams.intake import DedupeStore, MemoryDedupeStore, RedisDedupeStore, ms_to_iso
from streams.pipeline.records import InRecord, OutRecord
from streams.redis_io import connect
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.stack import LocalStack
from streams.testing import FakeClock, at

# (messageId, source coordinate) per batch: fresh, duplicate in the batch, redelivery, later duplicate
BATCHES: list[list[tuple[str, str]]] = [
    [("m1", "raw/0/0"), ("m2", "raw/0/1"), ("m1", "raw/1/5")],
    [("m1", "raw/0/0"), ("m3", "raw/0/2")],  # m1 at raw/0/0 again: a redelivery after a crash
    [("m2", "raw/2/9"), ("m3", "raw/0/2"), ("m4", "raw/0/3"), ("m4", "raw/0/3")],
]
EXPECTED = [[True, True, False], [True, True], [False, True, True, True]]


async def answers(store: DedupeStore, batches: Sequence[Sequence[tuple[str, str]]]) -> list[list[bool]]:
    return [await store.check(b) for b in batches]


def test_memory_store_semantics() -> None:
    assert asyncio.run(answers(MemoryDedupeStore(), BATCHES)) == EXPECTED


def test_memory_store_forgets_after_the_ttl() -> None:
    clock = FakeClock(1000)
    store = MemoryDedupeStore(ttl_seconds=60, clock=clock)
    assert asyncio.run(store.check([("m", "a/0/0")])) == [True]
    clock.advance(59)
    assert asyncio.run(store.check([("m", "a/0/1")])) == [False]
    clock.advance(2)
    assert asyncio.run(store.check([("m", "a/0/1")])) == [True]  # a new claim, by the new coordinate
    assert asyncio.run(store.check([("m", "a/0/0")])) == [False]
    assert len(store.seen) == 1


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_intake_stage_drops_duplicates_once_counts_them_and_keeps_redeliveries() -> None:
    s = Settings(partitions=2)
    rt = Runtime(s, Stores.memory(s))
    start = at("2026-03-02T09:00:00Z")

    def rec(offset: int, mid: str, user: str = "u1") -> InRecord:
        msg = {"type": "track", "event": "Product Added", "userId": user, "messageId": mid}
        msg["timestamp"] = ms_to_iso(start + offset)
        return InRecord(s.topic_raw, 0, offset, None, orjson.dumps(msg))

    def events(out: list[OutRecord]) -> list[str]:
        docs = [orjson.loads(r.value) for r in out if r.topic == s.topic_profiled]
        return [d["ev"]["messageId"] for d in docs if d["k"] == "ev"]

    before = sample("cxstream_duplicates_total")
    first = asyncio.run(rt.intake.process([rec(0, "a"), rec(1, "b"), rec(2, "a")], start))
    assert events(first) == ["a", "b"]
    assert sample("cxstream_duplicates_total") == before + 1
    # the same batch redelivered (a crash before the commit): processed again, nothing counted
    again = asyncio.run(rt.intake.process([rec(0, "a"), rec(1, "b"), rec(2, "a")], start))
    assert events(again) == ["a", "b"]
    assert sample("cxstream_duplicates_total") == before + 2  # offset 2 is still a duplicate of offset 0
    later = asyncio.run(rt.intake.process([rec(3, "b", user="u2"), rec(4, "c")], start))
    assert events(later) == ["c"]
    assert sample("cxstream_duplicates_total") == before + 3


@pytest.mark.stack
def test_memory_and_redis_stores_agree(stack: LocalStack) -> None:
    async def run() -> tuple[list[list[bool]], list[list[bool]], list[bool], list[bool]]:
        client = connect(stack.redis_url)
        try:
            keys = Keys(f"dd-{uuid.uuid4().hex[:8]}")
            redis = RedisDedupeStore(client, keys, ttl_seconds=1)
            memory = MemoryDedupeStore(ttl_seconds=1)
            r, m = await answers(redis, BATCHES), await answers(memory, BATCHES)
            await asyncio.sleep(1.2)  # both forget after the TTL
            late = [("m1", "raw/9/9"), ("m1", "raw/9/10")]
            return r, m, await redis.check(late), await memory.check(late)
        finally:
            await client.aclose()

    r, m, r_late, m_late = asyncio.run(run())
    assert r == m == EXPECTED
    assert r_late == m_late == [True, False]


def test_memory_store_without_ttl_never_forgets() -> None:
    store = MemoryDedupeStore(clock=lambda: time.time() + 10**9)
    assert asyncio.run(store.check([("x", "c/0/0"), ("x", "c/0/1")])) == [True, False]


@pytest.mark.stack
def test_a_released_claim_lets_another_coordinate_claim_the_id_on_both_stores(stack: LocalStack) -> None:
    async def run(store: DedupeStore) -> list[bool]:
        await store.check([("m1", "raw/0/1"), ("m2", "raw/0/2")])
        # m1: released by its own coordinate; m2: another coordinate's release changes nothing
        await store.release([("m1", "raw/0/1"), ("m2", "raw/9/9")])
        return await store.check([("m1", "dlq-replay/0/7"), ("m2", "dlq-replay/0/8")])

    async def both() -> tuple[list[bool], list[bool]]:
        client = connect(stack.redis_url)
        try:
            keys = Keys(f"dd-{uuid.uuid4().hex[:8]}")
            return await run(RedisDedupeStore(client, keys, ttl_seconds=60)), await run(MemoryDedupeStore(60))
        finally:
            await client.aclose()

    assert asyncio.run(both()) == ([True, False], [True, False])

"""The decide stage's commit in one pipeline (one Redis server) writes exactly what the calls
one by one write (a cluster, other stores): every kind of change, on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from streams.engine.state import RedisStateStore
from streams.engine.timers import DueTimer, RedisTimerStore, TimerOps
from streams.measure.activity import RedisActivityStore
from streams.pipeline import decide_commit
from streams.pipeline.decide_result import Commit
from streams.runtime import Stores
from streams.settings import Settings
from streams.state import ProfileState

pytestmark = pytest.mark.stack


def _commit() -> Commit:
    c = Commit()
    c.timers[0] = TimerOps({"p1|cart|c": (500, {"sku": "a"}), "p1|inactive|i": (900, {})}, {"p9|cart|c"})
    c.timers[2] = TimerOps({"p3|cart|c": (700, {})}, set())
    c.states["p1"] = ProfileState(reach=["email"], applied_offset=7, computed={"orders": 2})
    c.states["p2"] = ProfileState(merged_into="p1", applied_offset=3)  # a tombstone: expires
    c.states["p4"] = ProfileState(reach=["anonymous_id"], applied_offset=1)  # anonymous only: expires
    c.states["p9"] = None  # erased
    c.marks[0] = {0: 1000, 1: 1200}
    c.fired[0] = [DueTimer("p8|cart|c", 100, {}), DueTimer("p7|cart|c", 150, {})]  # p7 rescheduled since
    c.released[2] = [DueTimer("p6|cart|c", 120, {})]
    c.wait(0, "p1", 5000)
    c.unwait(2, "p5")
    c.seen(0, "p1", 4000)
    c.gone(2, "p2")
    return c


async def _before(stores: Stores) -> None:
    """What the store held before the commit: timers the commit fires, reschedules, releases,
    cancels; a state it erases; a profile that stops waiting, a customer that goes."""
    t = stores.timers
    await t.apply(0, TimerOps({"p8|cart|c": (100, {}), "p7|cart|c": (300, {}), "p9|cart|c": (50, {})}, set()))
    await t.apply(2, TimerOps({"p6|cart|c": (120, {})}, set()))
    assert await t.claim_many({0: 100, 2: 200}, 1, 10)  # leases: done and release must clear them
    await t.set_waiting(2, {"p5": 10}, set())
    await stores.states.save({"p9": ProfileState(reach=["email"])})
    await stores.activity.apply(2, {"p2": 3000}, [])


async def _dump(client: Any, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for raw in client.scan_iter(match=f"*{prefix}:*"):
        key = raw.decode()
        kind = (await client.type(key)).decode()
        name = key.replace(prefix, "P")
        if kind == "string":
            out[name] = (await client.get(key), await client.ttl(key) > 0)
        elif kind == "hash":
            out[name] = await client.hgetall(key)
        elif kind == "zset":
            out[name] = await client.zrange(key, 0, -1, withscores=True)
    return out


def test_one_pipeline_writes_what_the_calls_one_by_one_write(make_settings: Callable[..., Settings]) -> None:
    a, b = make_settings(), make_settings()

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        one, other = Stores.redis(a), Stores.redis(b)
        assert isinstance(one.states, RedisStateStore) and isinstance(one.timers, RedisTimerStore)
        assert isinstance(one.activity, RedisActivityStore) and isinstance(other.states, RedisStateStore)
        try:
            for stores in (one, other):
                await _before(stores)
            await decide_commit._at_once(one.states.client, one.states, one.timers, one.activity, _commit())
            await decide_commit._one_by_one(other.states, other.timers, other.activity, _commit())
            client = one.states.client
            return await _dump(client, a.redis_prefix), await _dump(client, b.redis_prefix)
        finally:
            await one.states.client.aclose()
            await other.states.client.aclose()

    at_once, one_by_one = asyncio.run(run())
    assert at_once == one_by_one
    # and the commit did what it says (so the comparison is not of two empty stores)
    assert any(k.endswith(":s:p1}") for k in at_once) and not any(k.endswith(":s:p9}") for k in at_once)
    due0 = dict(next(v for k, v in at_once.items() if k.endswith(":t:0}:due")))
    assert due0 == {b"p1|cart|c": 500.0, b"p1|inactive|i": 900.0, b"p7|cart|c": 300.0}

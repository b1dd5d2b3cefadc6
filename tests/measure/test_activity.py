"""Customers active now (``cxstream_customers``): counted from real Redis, through the stages.

Known customers whose last activity is 20, 70 and 110 days old, an anonymous visitor who is no
customer, a person whose anonymous and known profiles merge, and one whose two known profiles
merge (each one customer, not two): 5 customers, 2 active in 30 days, 4 in 90, 1 churned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.constants import DAY_MS
from streams.intake import ms_to_iso
from streams.measure.activity import MemoryActivityStore, changed_day
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings


def _track(n: int, ts: int, **ids: str) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Page Viewed",
        "messageId": f"act-{n}",
        "timestamp": ms_to_iso(ts),
        **ids,
    }


def _gauge(partition: int, window: str) -> float | None:
    return REGISTRY.get_sample_value("cxstream_customers", {"partition": str(partition), "window": window})


@pytest.mark.stack
def test_customer_gauges_count_known_people_by_last_activity(make_settings: Callable[..., Settings]) -> None:
    now = int(time.time() * 1000)
    ago = lambda days: now - days * DAY_MS  # noqa: E731
    messages = [
        _track(1, ago(200), userId="u-a"),
        _track(2, ago(20), userId="u-a"),  # active in 30 days
        _track(3, ago(70), userId="u-b"),  # active in 90, not 30
        _track(4, ago(110), userId="u-c"),  # churned
        _track(5, ago(5), anonymousId="anon-d"),  # not a customer
        _track(6, ago(8), anonymousId="anon-e"),  # two profiles of one person ...
        _track(7, ago(9), userId="u-e"),
        {  # ... merged: one customer, active 8 days ago
            "type": "identify",
            "messageId": "act-8",
            "timestamp": ms_to_iso(ago(7)),
            "anonymousId": "anon-e",
            "userId": "u-e",
        },
        _track(9, ago(50), userId="u-f"),  # two known profiles of one person ...
        {
            **_track(10, ago(40)),
            "anonymousId": "x",
            "context": {"externalIds": [{"id": "L-1", "type": "loyalty_id"}]},
        },
        {  # ... merged: one customer, last active 40 days ago
            "type": "identify",
            "messageId": "act-11",
            "timestamp": ms_to_iso(ago(39)),
            "userId": "u-f",
            "context": {"externalIds": [{"id": "L-1", "type": "loyalty_id"}]},
        },
    ]
    s = make_settings(partitions=1, clock="wall")

    async def run() -> None:
        stores = Stores.redis(s)
        try:
            await feed(Runtime(s, stores))
        finally:
            await stores.identity.client.aclose()  # type: ignore[attr-defined]

    async def feed(rt: Runtime) -> None:
        await rt.adopt({0})

        async def produce(records: list[OutRecord]) -> None:
            pass

        # one intake batch per message, one decide batch per intake output, in order: as a worker would
        offset = 0
        for i, m in enumerate(messages):
            out = await rt.intake.process([InRecord(s.topic_raw, 0, i, None, orjson.dumps(m))], now)
            profiled = [r for r in out if r.topic == s.topic_profiled]
            batch = [InRecord(r.topic, 0, offset + j, r.key, r.value) for j, r in enumerate(profiled)]
            offset += len(batch)
            # the merge's hand-off is produced by the decide stage itself: feed it back
            while batch:
                res = await rt.decide.process(batch)
                await rt.run_decide(res, produce)  # type: ignore[arg-type]
                again = [r for r in res.records if r.topic == s.topic_profiled]
                batch = [InRecord(r.topic, 0, offset + j, r.key, r.value) for j, r in enumerate(again)]
                offset += len(batch)
        await rt.count_customers()

    asyncio.run(run())
    assert _gauge(0, "all") == 5  # u-a, u-b, u-c, u-e, u-f: each merged person once
    assert _gauge(0, "30d") == 2  # u-a, u-e (its anonymous half's activity)
    assert _gauge(0, "90d") == 4
    assert _gauge(0, "churned") == 1  # u-c


def test_a_last_activity_is_written_once_a_day_and_never_moves_back() -> None:
    assert changed_day(None, 5)
    assert not changed_day(DAY_MS + 1, DAY_MS + 5)
    assert changed_day(DAY_MS - 1, DAY_MS)
    assert not changed_day(5, None)

    store = MemoryActivityStore()

    async def run() -> None:
        await store.apply(0, {"p1": 10 * DAY_MS, "p2": 2 * DAY_MS}, ())
        await store.apply(0, {"p1": 3 * DAY_MS}, {"p2"})  # a late event: p1 stays at day 10
        c = await store.customers(0, 12 * DAY_MS, churn_ms=5 * DAY_MS)
        assert (c.total, c.active[30], c.churned) == (1, 1, 0)
        assert store.data[0] == {"p1": 10 * DAY_MS}

    asyncio.run(run())

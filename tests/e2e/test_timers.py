"""Durable timers on the real stack: a SIGKILL mid-firing, and a year replayed on the event clock."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import (
    consume,
    json_values,
    keys_covering,
    kill9,
    produce,
    profiled_records,
    records_in,
    running_worker,
)

from streams.constants import DAY_MS, MINUTE_MS, Keys
from streams.intake import ms_to_iso
from streams.redis_io import connect
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.testing import at

pytestmark = pytest.mark.stack


def pending_timers(s: Settings) -> int:
    async def count() -> int:
        client = connect(s.redis_url.get_secret_value())
        try:
            keys = Keys(s.redis_prefix)
            return sum([int(await client.zcard(keys.timers(p) + ":due")) for p in range(s.partitions)])
        finally:
            await client.aclose()

    return asyncio.run(count())


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_worker_killed_while_timers_are_due_fires_each_once_after_restart(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(clock="event", watermark_idle_timeout=2.0, rules=("cart_abandoned",), timer_batch=1)
    topics(s)
    t0 = at("2026-05-04T12:00:00Z")
    people = [f"shopper{i:03d}" for i in range(120)]
    carts = []
    for n, p in enumerate(people):
        identify = {
            "type": "identify",
            "messageId": f"{p}-id",
            "userId": p,
            "timestamp": ms_to_iso(t0 + n),
            "traits": {"email": f"{p}@example.com"},
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "consent": {"categoryPreferences": {"marketing": True}},
            },
        }
        add = {
            "type": "track",
            "event": "Product Added",
            "messageId": f"{p}-add",
            "userId": p,
            "timestamp": ms_to_iso(t0 + 1000 + n),
            "properties": {"product_id": "sku-9", "price": 49.5},
            "context": {"channel": "app"},
        }
        carts += [(p.encode(), orjson.dumps(identify)), (p.encode(), orjson.dumps(add))]
    later = [
        (
            k.encode(),
            orjson.dumps(
                {
                    "type": "page",
                    "messageId": f"tick-{k}",
                    "anonymousId": k,
                    "name": "Home",
                    "timestamp": ms_to_iso(t0 + 2 * 60 * MINUTE_MS),
                    "context": {"channel": "web"},
                }
            ),
        )
        for k in keys_covering(s.partitions, "tick")
    ]
    log = tmp_path / "worker.log"
    with running_worker(s, log) as first:
        produce(s, s.topic_raw, carts)
        wait_for(lambda: pending_timers(s) == len(people), 90, "every cart's timer to be scheduled")
        produce(s, s.topic_raw, later)  # the event clock passes t0 + 30 min: every timer is due
        # kill as soon as the first fired timer is done (its trigger produced and committed): one
        # timer per round (timer_batch=1), so most are still due; a consumer's poll would be too slow
        wait_for(lambda: pending_timers(s) < len(people), 60, "the first timer to fire", poll=0.005)
        kill9(first)
    fired_before = len(
        {ce["id"] for ce in json_values(consume(s, s.topic_activations, want=len(people), timeout=2))}
    )
    assert 0 < fired_before < len(people), "the kill should land while timers are still due"
    with running_worker(s, log) as second:
        msgs = consume(s, s.topic_activations, want=len(people), timeout=120, idle=3)
        assert second.poll() is None, log.read_text()[-3000:]
        wait_for(lambda: pending_timers(s) == 0, 30, "every fired timer to be removed")
    ids = [ce["id"] for ce in json_values(msgs)]
    assert set(ids) == {trigger_id("cart_abandoned", 1, f"{p}-add") for p in people}
    # at most the ones in flight at the kill were sent twice, with the same id (consumers dedupe)
    assert len(ids) - len(set(ids)) <= len(people) - fired_before + 1


def year_of_purchases(seed: int = 11) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    start = at("2025-01-01")
    end = at("2026-01-01")
    events = []
    for c in range(150):
        user = f"buyer{c:03d}"
        t = start + rnd.randint(0, 60) * DAY_MS + rnd.randint(0, DAY_MS)
        n = 0
        while t < end:
            events.append(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "messageId": f"{user}-o{n}",
                    "userId": user,
                    "timestamp": ms_to_iso(t),
                    "properties": {"order_id": f"{user}-o{n}", "total": 30 + n},
                    "context": {"channel": rnd.choice(["web", "app", "pos"])},
                }
            )
            n += 1
            gap = rnd.choice(
                [
                    rnd.randint(1, 44) * DAY_MS,
                    45 * DAY_MS,
                    rnd.randint(46, 120) * DAY_MS,
                    45 * DAY_MS + 1,
                    rnd.randint(1, 30) * DAY_MS,
                ]
            )
            t += gap
    events.sort(key=lambda e: (str(e["timestamp"]), str(e["messageId"])))
    return events


def direct_inactivity(events: list[dict[str, object]]) -> dict[str, int]:
    """The 45-day triggers straight from the data: trigger id -> when the spell completed."""
    from streams.intake import parse_time_ms

    end = max(parse_time_ms(str(e["timestamp"])) for e in events)
    by_user: dict[str, list[tuple[int, str]]] = {}
    for e in events:
        by_user.setdefault(str(e["userId"]), []).append(
            (parse_time_ms(str(e["timestamp"])), str(e["messageId"]))
        )
    out = {}
    for acts in by_user.values():
        acts.sort()
        for (ts, mid), nxt in zip(acts, [*acts[1:], None], strict=True):
            spell = ts + 45 * DAY_MS
            if (nxt is not None and nxt[0] > spell) or (nxt is None and spell <= end):
                out[trigger_id("inactive_45d", 1, mid)] = spell
    return out


def test_a_year_replayed_on_the_event_clock_fires_exactly_the_computed_inactivity_triggers(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(clock="event", watermark_idle_timeout=4.0, rules=("inactive_45d",))
    topics(s)
    events = year_of_purchases()
    expected = direct_inactivity(events)
    assert 100 < len(expected) < len(events)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        produce(s, s.topic_raw, [(str(e["userId"]).encode(), orjson.dumps(e)) for e in events])
        msgs = consume(s, s.topic_decisions, want=len(expected), timeout=120, idle=4)
        assert proc.poll() is None, log.read_text()[-3000:]
    got = {d["id"]: d["time"] for d in json_values(msgs)}
    assert len(got) == len(msgs), "no trigger twice"
    assert set(got) == set(expected)
    assert got == {i: ms_to_iso(t) for i, t in expected.items()}


def test_records_waiting_in_the_worker_are_not_reported_idle(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    """The event clock stops waiting for a source on an idle marker, so none may come while
    records of that source are fetched but not processed: their events would reach decide
    after the clock let their time pass (timers fired before them). Here the first batch of
    a fresh worker is held by Redis (writes paused 6 s) with every record fetched: no idle
    marker for a source may come between its records' fetch and their events, on any
    repartition partition."""
    from urllib.request import urlopen

    from helpers import OwnRedis

    from streams.stack import free_port

    redis = OwnRedis(tmp_path)
    redis.start()
    port = free_port()
    s = make_settings(redis_url=redis.url, clock="event", watermark_idle_timeout=0.4, metrics_port=port)
    topics(s)
    t0 = at("2026-01-05")
    events = [
        {
            "type": "page",
            "name": "Home",
            "messageId": f"m{i}",
            "userId": f"u{i % 200}",
            "timestamp": ms_to_iso(t0 + i * MINUTE_MS),
            "context": {"channel": "web"},
        }
        for i in range(2000)
    ]

    def ready() -> bool:
        try:
            with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    log = tmp_path / "worker.log"
    try:
        with running_worker(s, log) as proc:
            wait_for(ready, 60, "the worker to be ready")
            redis.client().execute_command("CLIENT", "PAUSE", 6000, "WRITE")
            produce(s, s.topic_raw, [(str(e["userId"]).encode(), orjson.dumps(e)) for e in events])
            fetched_by = time.time() * 1000 + 1500  # fetched by then (the fetch waits 0.1 s)
            # every event, then idle markers (16 a report, every 2 s) for the 4 sources on the 4 partitions
            msgs = consume(s, s.topic_profiled, want=len(events) + 64, timeout=120, size=records_in)
            assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        redis.stop()
    early: dict[int, set[int]] = {}  # partition -> sources reported idle while their records waited
    seen = 0
    for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
        for rec in profiled_records(m):
            if rec["k"] == "idle" and m.timestamp()[1] > fetched_by:
                early.setdefault(m.partition(), set()).add(rec["src"])
            elif rec["k"] == "ev":
                seen += 1
                src = rec["ev"]["source"][1]
                assert src not in early.get(m.partition(), set()), (
                    f"source {src} reported idle before its events"
                )
    assert seen == len(events)
    assert all(early.get(p) == {0, 1, 2, 3} for p in range(4)), early  # it did report them, at the end

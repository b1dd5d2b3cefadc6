"""What the metrics count, in memory: resolution rate, consent coverage, capped labels, lag."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams import metrics
from streams.consent.policy import DEFAULT_POLICY
from streams.intake.errors import ErrorCode
from streams.runtime import count_from_zero
from streams.testing import at, run_journey, segment


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def resolved() -> tuple[float, float]:
    return (
        sample("cxstream_events_resolved_total", {"person": "known"}),
        sample("cxstream_events_resolved_total", {"person": "anonymous"}),
    )


def test_resolution_rate_counts_events_whose_profile_is_known_including_earlier_identities() -> None:
    anon, other = "a-7f3e9c", "a-11d2b0"
    journey = [
        segment("page", at("2026-03-01T10:00:00Z"), anonymousId=anon),  # nobody yet
        segment(
            "identify", at("2026-03-01T10:05:00Z"), anonymousId=anon, traits={"email": "kim@example.org"}
        ),
        segment("page", at("2026-03-01T10:07:00Z"), anonymousId=anon),  # anonymous event, known profile
        segment("page", at("2026-03-01T10:08:00Z"), anonymousId=other, context={"device": {"id": "d-9"}}),
    ]
    k0, a0 = resolved()
    asyncio.run(run_journey(journey))
    k1, a1 = resolved()
    assert (k1 - k0, a1 - a0) == (2, 2)


def test_consent_coverage_counts_decisions_on_an_explicit_statement() -> None:
    before = {s: sample("cxstream_decision_consent_total", {"statement": s}) for s in ("explicit", "none")}
    metrics.decision_consent({"marketing": [[True, 1, "segment"]]}, {"marketing", "personalization"})
    metrics.decision_consent({"analytics": [[True, 1, "segment"]]}, {"marketing"})
    metrics.decision_consent({}, {"marketing"})
    after = {s: sample("cxstream_decision_consent_total", {"statement": s}) for s in ("explicit", "none")}
    assert (after["explicit"] - before["explicit"], after["none"] - before["none"]) == (1, 2)


def test_channel_labels_come_from_a_closed_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_channels", set(metrics.CONTRACT_CHANNELS))
    got = [metrics.channel_label(c) for c in ("web", "app", "pos", "call_center", "unknown", "kiosk_17")]
    assert got == ["web", "app", "pos", "call_center", "unknown", "other"]
    # an email-like channel (intake snake-cases context.channel) and any unknown name: other
    for c in ("ivy_j_example_com", "ivy.j@example.com", "+14155550123", "x" * 64):
        assert metrics.channel_label(c) == "other"
    metrics.known_channels(["kiosk_17"])  # a policy's channel
    assert metrics.channel_label("kiosk_17") == "kiosk_17"


class FakeConsumer:
    """Enough of faust's consumer for :class:`metrics.Lag`: an assignment, highwaters, positions."""

    def __init__(self, high: dict[tuple[str, int], int], pos: dict[tuple[str, int], int]) -> None:
        self.high, self.pos = high, pos
        # streams.fastpath.Consumer's bookkeeping: the offset after the last record fetched
        # for the streams, and after the last one handed to a stream
        self.fetched: dict[Any, int] = {}
        self.delivered: dict[Any, int] = {}

    def assignment(self) -> set[Any]:
        from faust.types import TP

        return {TP(t, p) for t, p in self.high}

    def highwater(self, tp: Any) -> int:
        return self.high[(tp.topic, tp.partition)]

    async def position(self, tp: Any) -> int:
        return self.pos[(tp.topic, tp.partition)]


def test_the_program_health_series_start_at_zero_before_any_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ratio over series that a burst creates between two scrapes would be 0/0 on the dashboard
    (Prometheus's increase() starts at a series' first sample): they exist, at 0, from start-up."""
    monkeypatch.setattr(metrics, "_channels", set(metrics.CONTRACT_CHANNELS))
    policy = DEFAULT_POLICY.model_copy(
        update={"channels": {**DEFAULT_POLICY.channels, "kiosk_zq": "marketing"}}
    )
    count_from_zero(policy)
    for call in ("identify", "track", "page", "screen", "group", "alias"):
        kiosk = {"channel": "kiosk_zq", "call": call}  # a policy's channel, never seen in any event
        assert REGISTRY.get_sample_value("cxstream_events_in_total", kiosk) == 0, call
        other = {"channel": "other", "call": call}
        assert REGISTRY.get_sample_value("cxstream_events_in_total", other) is not None, call
    for code in ErrorCode:
        assert REGISTRY.get_sample_value("cxstream_deadletter_total", {"code": code.value}) is not None
    for person in ("known", "anonymous"):
        assert REGISTRY.get_sample_value("cxstream_events_resolved_total", {"person": person}) is not None
    for statement in ("explicit", "none"):
        assert (
            REGISTRY.get_sample_value("cxstream_decision_consent_total", {"statement": statement}) is not None
        )


def lag(topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "cxstream_consumer_lag_records", {"topic": topic, "partition": str(partition)}
    )


def test_lag_is_highwater_minus_the_next_offset_to_process() -> None:
    t = "lagtest.raw"
    lagger = metrics.Lag()
    consumer = FakeConsumer({(t, 0): 100, (t, 1): 50}, {(t, 0): 80, (t, 1): 50})
    asyncio.run(lagger.measure(consumer))
    assert (lag(t, 0), lag(t, 1)) == (20, 0)  # nothing processed yet: the fetch position
    lagger.done(t, 0, 59)  # fetched up to 79, processed up to 59: 40 left
    asyncio.run(lagger.measure(consumer))
    assert lag(t, 0) == 40
    del consumer.high[(t, 1)]  # revoked: its series goes away
    asyncio.run(lagger.measure(consumer))
    assert lag(t, 1) is None and lag(t, 0) == 40


def test_a_partition_is_caught_up_once_at_rest_at_its_end_with_all_it_fetched_done() -> None:
    from faust.types import TP

    t = "idletest.raw"
    lagger = metrics.Lag()
    consumer = FakeConsumer({(t, 0): 0, (t, 1): 40}, {(t, 0): 0, (t, 1): 30})

    def caught_up() -> list[int]:
        return asyncio.run(lagger.caught_up(consumer, t))

    assert caught_up() == []  # first look: records may be on their way from the fetcher thread
    assert caught_up() == [0]  # empty and at rest; 1 has 10 records to fetch
    # 1's ten are fetched (the position moves) but not yet handed to the stream
    consumer.pos[(t, 1)] = 40
    consumer.fetched[TP(t, 1)] = 40
    assert caught_up() == [0]
    assert caught_up() == [0]  # at rest now, but still between the fetch and the stream
    consumer.delivered[TP(t, 1)] = 40  # in the stream's queue: nothing of 1 processed yet
    assert caught_up() == [0]
    lagger.done(t, 1, 35)  # a batch up to 35 done, the rest still queued
    assert caught_up() == [0]
    lagger.done(t, 1, 39)
    assert caught_up() == [0, 1]
    consumer.high[(t, 0)] = 5  # new records on 0 (the fetch position has not moved yet)
    assert caught_up() == [1]


def test_a_partition_that_comes_back_after_a_rebalance_starts_afresh() -> None:
    from faust.types import TP

    t = "idletest2.raw"
    lagger = metrics.Lag()
    consumer = FakeConsumer({(t, 0): 40}, {(t, 0): 40})
    consumer.fetched[TP(t, 0)] = consumer.delivered[TP(t, 0)] = 40
    lagger.done(t, 0, 29)  # revoked with 30-39 handed over but not done (they go back to Kafka)
    lagger.forget(consumer, {TP(t, 0)})
    # back after another worker processed up to 60; nothing new since
    consumer.high[(t, 0)] = consumer.pos[(t, 0)] = 60
    assert asyncio.run(lagger.caught_up(consumer, t)) == []  # first look
    assert asyncio.run(lagger.caught_up(consumer, t)) == [0]


def test_summary_line() -> None:
    prev = {"events_in": 1000.0, "triggers": 3.0, "deadletter": 0.0, "lag": 10.0}
    cur = {"events_in": 3500.0, "triggers": 12.0, "deadletter": 2.0, "lag": 0.0}
    line = metrics.summary_line(prev, cur, 5.0)
    assert line == "  [metrics] 500 events/s in (3,500 total), 12 triggers, 2 dead letters, lag 0"


def test_the_worker_forgets_what_it_noted_of_partitions_a_rebalance_revokes() -> None:
    from faust.types import TP

    from streams.app import build_app
    from streams.runtime import Stores
    from streams.settings import load_settings

    async def run() -> tuple[dict[Any, int], dict[Any, int]]:
        app, _ = build_app(load_settings(kafka_bootstrap="localhost:1"), Stores.memory())
        kept, gone = TP("cx.events.raw", 0), TP("cx.events.raw", 1)
        for tp in (kept, gone):
            app.consumer.fetched[tp] = app.consumer.delivered[tp] = 5
        await app.on_partitions_revoked.send({gone})  # as faust's rebalance sends it
        return app.consumer.fetched, app.consumer.delivered

    fetched, delivered = asyncio.run(run())
    assert fetched == delivered == {TP("cx.events.raw", 0): 5}


def test_fired_timers_are_counted_by_rule() -> None:
    """A cart left for the rule's delay fires its timer: counted once per batch (``metrics.count``)."""
    anon = "a-5c8e21"
    journey = [
        segment(
            "track",
            at("2026-03-01T10:00:00Z"),
            anonymousId=anon,
            event="Product Added",
            properties={"product_id": "sku-1", "price": 20},
        ),
        segment("page", at("2026-03-02T10:00:00Z"), anonymousId=anon),  # a day on: the clock passes the delay
    ]
    before = sample("cxstream_timers_fired_total", {"rule": "cart_abandoned"})
    asyncio.run(run_journey(journey))
    assert sample("cxstream_timers_fired_total", {"rule": "cart_abandoned"}) - before == 1

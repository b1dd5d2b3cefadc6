"""Faults stay with the record that caused them: both stages and the timer path, in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.constants import TIMER_LEASE_MS, TIMER_MAX_ATTEMPTS
from streams.engine.runner import Engine
from streams.identity.base import Resolution, ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.intake.normalize import ms_to_iso
from streams.model import Event, JSONDict
from streams.pipeline import envelope
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.testing import FakeClock, at

T0 = at("2026-05-01T10:00:00Z")


class Fires(Rule):
    """Fires on ``Boom``; on ``Arm`` sets a timer whose firing fails when its payload says so."""

    name = "fires"
    events = frozenset({"Boom", "Arm"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        if event.name == "Arm":
            p = dict(event.properties)
            return Outcome(state, set_timers=[TimerSpec(p["timer"], event.ts + 1000, p)])
        if event.properties.get("explode"):
            raise ZeroDivisionError("boom")
        return Outcome(state, [TriggerSpec(key=event.message_id, time=event.ts)])

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        if timer.payload.get("fail"):
            raise RuntimeError("this timer always fails")
        return Outcome(state, [TriggerSpec(key="timer-" + timer.name, time=timer.due)])


def runtime(**overrides: Any) -> tuple[Runtime, FakeClock]:
    s = Settings(partitions=1, clock="wall", rules=("cart_abandoned",), **overrides)
    rt = Runtime(s, Stores.memory(s))
    rt.engine = rt.decide.engine = Engine([Fires()], rt.policy)
    clock = FakeClock(T0)
    rt.decide.wall = clock
    return rt, clock


def msg(name: str, user: str, i: int, **props: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": name,
            "messageId": f"{user}-{i}",
            "userId": user,
            "timestamp": ms_to_iso(T0 + i),
            "properties": props,
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "traits": {"email": f"{user}@example.com"},
            },
        }
    )


def raw(values: Sequence[bytes]) -> list[InRecord]:
    return [InRecord("cx.events.raw", 0, i, None, v) for i, v in enumerate(values)]


def profiled(rt: Runtime, out: Sequence[OutRecord]) -> list[InRecord]:
    topic = rt.settings.topic_profiled
    return [InRecord(topic, 0, i, r.key, r.value) for i, r in enumerate(r for r in out if r.topic == topic)]


def on(rt: Runtime, out: Sequence[OutRecord], topic: str) -> list[OutRecord]:
    return [r for r in out if r.topic == topic]


def headers(r: OutRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in r.headers}


async def run_all(rt: Runtime, values: Sequence[bytes]) -> list[OutRecord]:
    out = await rt.intake.process(raw(values), T0)
    res = await rt.decide.process(profiled(rt, out))
    await rt.decide.commit(res.commit)
    return out + res.records


def test_a_rule_error_is_an_error_decision_and_the_batch_goes_on() -> None:
    rt, _ = runtime()
    out = asyncio.run(
        run_all(rt, [msg("Boom", "u1", 1), msg("Boom", "u1", 2, explode=True), msg("Boom", "u1", 3)])
    )
    s = rt.settings
    outcomes = [orjson.loads(r.value)["outcome"] for r in on(rt, out, s.topic_decisions)]
    assert outcomes == ["activated", "error", "activated"]
    err = orjson.loads(on(rt, out, s.topic_decisions)[1].value)
    assert err["error"] == {
        "rule": "fires",
        "method": "on_event",
        "on": "u1-2",
        "exception": "ZeroDivisionError",
    }
    assert len(on(rt, out, s.topic_activations)) == 2


def test_an_unreadable_repartition_record_is_dead_lettered_alone() -> None:
    rt, _ = runtime()
    out = asyncio.run(rt.intake.process(raw([msg("Boom", "u1", 1), msg("Boom", "u2", 2)]), T0))
    batch = profiled(rt, out)
    poison = InRecord(rt.settings.topic_profiled, 0, 99, b"p_x", b'{"k": "ev", "pid": "p_x", "ev": {}}')
    res = asyncio.run(rt.decide.process([batch[0], poison, *batch[1:]]))
    dead = on(rt, res.records, rt.settings.topic_deadletter)
    assert len(dead) == 1 and dead[0].value == poison.value
    h = headers(dead[0])
    assert h["cx-error-code"] == "processing_error"
    assert (h["cx-error-stage"], h["cx-error-exception"]) == ("decide", "KeyError")
    assert h["cx-source-offset"] == "99"
    assert len(on(rt, res.records, rt.settings.topic_activations)) == 2  # both good events decided


def test_the_rest_of_a_batch_is_decided_as_if_the_bad_record_never_came() -> None:
    good = [msg("Boom", f"u{i % 3}", i) for i in range(12)]
    rt1, _ = runtime()
    clean = asyncio.run(run_all(rt1, good))
    rt2, _ = runtime()
    out = asyncio.run(rt2.intake.process(raw(good), T0))
    batch = profiled(rt2, out)
    poison = InRecord(rt2.settings.topic_profiled, 0, 5, b"p", b"[1, 2]")
    res = asyncio.run(rt2.decide.process([*batch[:5], poison, *batch[5:]]))

    def values(records: Sequence[OutRecord], topic: str) -> list[bytes]:
        return [r.value for r in records if r.topic == topic]

    s = rt1.settings
    assert values(res.records, s.topic_activations) == values(clean, s.topic_activations)
    assert values(res.records, s.topic_decisions) == values(clean, s.topic_decisions)


def test_a_failing_timer_is_retried_then_dead_lettered_and_the_others_fire() -> None:
    rt, clock = runtime()
    s = rt.settings
    asyncio.run(
        run_all(
            rt,
            [
                msg("Arm", "u1", 1, timer="bad", fail=True, note="kept"),
                msg("Arm", "u1", 2, timer="good"),
                msg("Arm", "u2", 3, timer="good"),
            ],
        )
    )
    clock.now = T0 + 10_000
    attempts = []
    for n in range(TIMER_MAX_ATTEMPTS):
        res = asyncio.run(rt.decide.fire_due([0]))
        asyncio.run(rt.decide.commit(res.commit))
        attempts.append(res)
        clock.advance(TIMER_LEASE_MS + 1)  # the failed timer's lease lapses: it is tried again
        if n < TIMER_MAX_ATTEMPTS - 1:
            assert not on(rt, res.records, s.topic_deadletter)

    first = attempts[0]
    assert len(on(rt, first.records, s.topic_activations)) == 2  # the good timers fired at once
    last = attempts[-1].records
    dead = on(rt, last, s.topic_deadletter)
    assert len(dead) == 1
    assert orjson.loads(dead[0].value)["payload"] == {"timer": "bad", "fail": True, "note": "kept"}
    h = headers(dead[0])
    assert (h["cx-error-stage"], h["cx-error-rule"], h["cx-error-exception"]) == (
        "timer",
        "fires",
        "RuntimeError",
    )
    assert [orjson.loads(r.value)["outcome"] for r in on(rt, last, s.topic_decisions)] == ["error"]
    assert asyncio.run(rt.stores.timers.pending(0)) == 0  # given up: gone from the store
    clock.advance(TIMER_LEASE_MS + 1)
    assert not asyncio.run(rt.decide.fire_due([0])).records


def handoff_waiters(rt: Runtime, n_events: int) -> list[InRecord]:
    """An ``expect`` whose ``merge``/``hand`` never come, then events for the survivor."""
    topic = rt.settings.topic_profiled
    out = asyncio.run(rt.intake.process(raw([msg("Boom", "u1", i) for i in range(n_events)]), T0))
    events = [r for r in profiled(rt, out) if orjson.loads(r.value)["k"] == "ev"]
    pid = orjson.loads(events[0].value)["pid"]
    expect = InRecord(topic, 0, 0, pid.encode(), envelope.expect_record(pid, "p_lost", T0))
    return [expect, *(InRecord(topic, 0, i + 1, r.key, r.value) for i, r in enumerate(events))]


def handoff_timeouts() -> float:
    return REGISTRY.get_sample_value("cxstream_handoff_timeouts_total") or 0.0


def test_a_lost_hand_off_holds_events_only_until_the_timeout() -> None:
    rt, clock = runtime(handoff_timeout=60)
    recs = handoff_waiters(rt, 4)
    res = asyncio.run(rt.decide.process(recs[:3]))
    asyncio.run(rt.decide.commit(res.commit))
    assert not on(rt, res.records, rt.settings.topic_activations)  # held: the person is half here
    before = handoff_timeouts()
    clock.advance(61_000)
    res = asyncio.run(rt.decide.process(recs[3:]))
    assert handoff_timeouts() == before + 1
    # the two held events and the new one, in order
    assert len(on(rt, res.records, rt.settings.topic_activations)) == 3


def test_a_lost_hand_off_holds_at_most_the_buffer() -> None:
    rt, _ = runtime(handoff_max_buffer=5)
    recs = handoff_waiters(rt, 8)
    res = asyncio.run(rt.decide.process(recs))
    assert len(on(rt, res.records, rt.settings.topic_decisions)) == 8  # every event decided, in order
    assert not asyncio.run(rt.stores.states.load([orjson.loads(recs[1].value)["pid"]])).popitem()[1].buffer


class FailsOn(MemoryIdentityStore):
    """The real in-memory identity store, failing (not an outage) on one messageId."""

    def __init__(self, bad: str) -> None:
        super().__init__()
        self.bad = bad

    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        if any(r.message_id == self.bad for r in batch):
            raise ValueError("cannot resolve this one")
        return await super().resolve(batch)


def test_an_identity_failure_dead_letters_only_its_event() -> None:
    s = Settings(partitions=1)
    stores = Stores.memory(s)
    stores.identity = FailsOn("u2-2")
    rt = Runtime(s, stores)
    values = [msg("Boom", f"u{i}", i) for i in range(1, 5)]
    out = asyncio.run(rt.intake.process(raw(values), T0))
    dead = on(rt, out, s.topic_deadletter)
    assert [d.value for d in dead] == [values[1]]
    assert headers(dead[0])["cx-error-stage"] == "intake.identity"
    pids = {orjson.loads(r.value).get("ev", {}).get("messageId") for r in on(rt, out, s.topic_profiled)}
    assert {"u1-1", "u3-3", "u4-4"} <= pids and "u2-2" not in pids


@pytest.mark.parametrize("bad", [1, 3])
def test_every_input_is_accounted_for(bad: int) -> None:
    s = Settings(partitions=1)
    stores = Stores.memory(s)
    stores.identity = FailsOn(f"u{bad}-{bad}")
    rt = Runtime(s, stores)
    values = [msg("Boom", f"u{i}", i) for i in range(6)] + [b"not json", msg("Boom", "u1", 1)]
    out = asyncio.run(rt.intake.process(raw(values), T0))
    events = [r for r in on(rt, out, s.topic_profiled) if orjson.loads(r.value)["k"] == "ev"]
    dead = on(rt, out, s.topic_deadletter)
    duplicates = 1  # the repeated u1-1
    assert len(events) + len(dead) + duplicates == len(values)


class Sink:
    """What a worker would have produced, through the same Runtime entry points it uses."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def __call__(self, records: Sequence[OutRecord]) -> None:
        self.records += records


def test_the_timer_tick_dead_letters_a_timer_that_keeps_failing() -> None:
    """Through Runtime.tick, as the worker runs it: every failed attempt is committed."""
    rt, clock = runtime()
    sink = Sink()
    asyncio.run(run_all(rt, [msg("Arm", "u1", 1, timer="bad", fail=True)]))
    rt.known_partitions = {0}
    clock.now = T0 + 10_000
    for _ in range(TIMER_MAX_ATTEMPTS + 1):
        asyncio.run(rt.tick(sink))
        clock.advance(TIMER_LEASE_MS + 1)
    dead = on(rt, sink.records, rt.settings.topic_deadletter)
    assert len(dead) == 1 and headers(dead[0])["cx-error-stage"] == "timer"
    assert asyncio.run(rt.stores.timers.pending(0)) == 0


def test_the_timer_tick_releases_a_profile_whose_hand_off_never_came() -> None:
    """No further event for the person: the tick alone ends the wait after the timeout."""
    rt, clock = runtime(handoff_timeout=60)
    sink = Sink()
    recs = handoff_waiters(rt, 3)
    res = asyncio.run(rt.decide.process(recs))
    asyncio.run(rt.run_decide(res, sink))
    rt.known_partitions = {0}
    asyncio.run(rt.tick(sink))
    assert not on(rt, sink.records, rt.settings.topic_decisions)  # still within the timeout
    clock.advance(61_000)
    asyncio.run(rt.tick(sink))
    assert len(on(rt, sink.records, rt.settings.topic_decisions)) == 3
    asyncio.run(rt.tick(sink))
    assert len(on(rt, sink.records, rt.settings.topic_decisions)) == 3  # once


def test_a_state_that_cannot_be_read_costs_only_that_profiles_records() -> None:
    rt, _ = runtime()
    out = asyncio.run(rt.intake.process(raw([msg("Boom", "u1", 1), msg("Boom", "u2", 2)]), T0))
    batch = profiled(rt, out)
    bad_pid = orjson.loads(batch[0].value)["pid"]
    rt.stores.states.data[bad_pid] = b"{not json"  # type: ignore[attr-defined]  # corrupt it in the store
    res = asyncio.run(rt.decide.process(batch))
    dead = on(rt, res.records, rt.settings.topic_deadletter)
    assert [d.value for d in dead] == [batch[0].value]
    assert len(on(rt, res.records, rt.settings.topic_activations)) == 1  # u2 decided as usual


def test_a_record_dead_lettered_after_its_dedupe_check_can_be_replayed() -> None:
    """After the fix, the dead letter is produced again to the raw topic (a new coordinate):
    it must be processed, not dropped as a duplicate of itself."""
    s = Settings(partitions=1)
    stores = Stores.memory(s)
    failing = FailsOn("u2-2")
    stores.identity = failing
    rt = Runtime(s, stores)
    values = [msg("Boom", "u1", 1), msg("Boom", "u2", 2)]
    out = asyncio.run(rt.intake.process(raw(values), T0))
    assert [d.value for d in on(rt, out, s.topic_deadletter)] == [values[1]]
    failing.bad = ""  # the bug is fixed; the dead letter is replayed
    replay = [InRecord("cx.events.raw", 0, 100, None, values[1])]
    out = asyncio.run(rt.intake.process(replay, T0))
    evs = [orjson.loads(r.value) for r in on(rt, out, s.topic_profiled) if b'"k":"ev"' in r.value]
    assert [e["ev"]["messageId"] for e in evs] == ["u2-2"]


def test_an_intake_batch_processed_again_announces_its_merge_again_harmlessly() -> None:
    """A redelivered batch holding a merge (a crash or a rebalance before its commit) gets the
    same resolution back, so `expect` and `merge` come twice: nothing may merge twice, nor into
    itself, nor keep records cycling through the repartition topic."""
    s = Settings(partitions=1, clock="event")
    pipe = LocalPipeline(s)
    values = [
        msg("Boom", "x", 1).replace(b'"userId":"x"', b'"anonymousId":"anon-1"'),
        msg("Boom", "user-1", 2),
        msg("Boom", "user-1", 3).replace(b'"userId":"user-1"', b'"userId":"user-1","anonymousId":"anon-1"'),
    ]

    async def drain(rounds: int = 10) -> None:  # bounded: a cycle of records must fail, not hang
        rt = pipe.runtime
        for _ in range(rounds):
            if not pipe.queue:
                return
            batch = list(pipe.queue)
            pipe.queue.clear()
            await rt.adopt({0})
            await rt.run_decide(await rt.decide.process(batch), pipe._produce)
        raise AssertionError("records still cycling through the repartition topic")

    async def run() -> None:
        for off, v in enumerate(values):
            pipe._route(await pipe.runtime.intake.process([InRecord(s.topic_raw, 0, off, None, v)], T0))
            await drain()
        # the merging event's batch again, from the same coordinate
        pipe._route(await pipe.runtime.intake.process([InRecord(s.topic_raw, 0, 2, None, values[2])], T0))
        await drain()

    asyncio.run(run())
    states = asyncio.run(pipe.runtime.stores.states.load(list(pipe.runtime.stores.states.data)))  # type: ignore[attr-defined]
    assert all(st.merged_into != pid for pid, st in states.items()), "a profile merged into itself"
    live = [pid for pid, st in states.items() if st.merged_into is None]
    assert len(live) == 1
    assert sum(1 for st in states.values() if st.merged_into == live[0]) == 1

"""A timer that a firing sets due already fires in the same round (``decide_timers._fire_chain``):
what the next round would have done, without a round (claims, states, produce, commit) of its own.
In memory, and the commit's effect on the real Redis timer store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.constants import TIMER_CHAIN_LIMIT, TIMER_MAX_ATTEMPTS
from streams.engine.runner import Engine
from streams.intake.normalize import ms_to_iso
from streams.model import Event, JSONDict
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.testing import FakeClock, at

T0 = at("2026-05-01T10:00:00Z")


class Relay(Rule):
    """``Start`` sets timer ``t0`` a second later; firing ``tN`` triggers, then sets ``tN+1``
    ``step`` ms after its own due time while ``N < hops``. ``fail_at``: the hop whose rule fails."""

    name = "relay"
    events = frozenset({"Start"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        p = dict(event.properties)
        return Outcome(state, set_timers=[TimerSpec("t0", event.ts + 1000, p)])

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        hop = int(timer.name[1:])
        p = timer.payload
        if hop == p.get("fail_at"):
            raise RuntimeError("this hop always fails")
        fired = [*state.get("fired", []), timer.name]
        trigger = TriggerSpec(key=f"{timer.name}-{timer.due}", time=timer.due, context={"hop": timer.name})
        if hop >= p["hops"]:
            return Outcome({"fired": fired}, [trigger])
        nxt = TimerSpec(f"t{hop + 1}", timer.due + p["step"], p)
        return Outcome({"fired": fired}, [trigger], set_timers=[nxt])


def runtime(
    stores: Callable[[Settings], Stores] = Stores.memory, **overrides: Any
) -> tuple[Runtime, FakeClock]:
    s = Settings(partitions=1, clock="wall", rules=("cart_abandoned",), **overrides)
    rt = Runtime(s, stores(s))
    rt.engine = rt.decide.engine = Engine([Relay()], rt.policy)
    clock = FakeClock(T0)
    rt.decide.wall = clock
    return rt, clock


def start(user: str, **props: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": "Start",
            "messageId": f"{user}-start",
            "userId": user,
            "timestamp": ms_to_iso(T0),
            "properties": props,
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "traits": {"email": f"{user}@example.com"},
            },
        }
    )


async def arm(rt: Runtime, *values: bytes) -> None:
    out = await rt.intake.process(
        [InRecord("cx.events.raw", 0, i, None, v) for i, v in enumerate(values)], T0
    )
    topic = rt.settings.topic_profiled
    batch = [InRecord(topic, 0, i, r.key, r.value) for i, r in enumerate(r for r in out if r.topic == topic)]
    res = await rt.decide.process(batch)
    await rt.decide.commit(res.commit)


def fired(rt: Runtime, records: Sequence[OutRecord]) -> list[str]:
    """The timers whose triggers the records decide, in order (activated or suppressed by a cap)."""
    topic = rt.settings.topic_decisions
    return [orjson.loads(r.value)["context"]["hop"] for r in records if r.topic == topic]


async def round_(rt: Runtime) -> tuple[list[str], bool]:
    res = await rt.decide.fire_due([0])
    await rt.decide.commit(res.commit)
    return fired(rt, res.records), res.more


def test_timers_a_firing_sets_due_already_fire_in_the_same_round() -> None:
    rt, clock = runtime()

    async def run() -> None:
        await arm(rt, start("u1", hops=3, step=100), start("u2", hops=1, step=100))
        clock.now = T0 + 60_000  # every hop of both chains is due
        observed = REGISTRY.get_sample_value("cxstream_timer_lateness_seconds_count") or 0
        names, more = await round_(rt)
        assert sorted(names) == ["t0", "t0", "t1", "t1", "t2", "t3"]
        # each timer's lateness is observed once, chained or claimed
        assert REGISTRY.get_sample_value("cxstream_timer_lateness_seconds_count") == observed + 6
        assert names.index("t3") > names.index("t2") > names.index("t1")  # each after the one that set it
        assert not more  # nothing due is left for another round
        assert await rt.stores.timers.pending(0) == 0
        assert await round_(rt) == ([], False)

    asyncio.run(run())


def test_a_hop_not_due_yet_waits_for_its_time() -> None:
    rt, clock = runtime()

    async def run() -> None:
        await arm(rt, start("u1", hops=2, step=30_000))
        clock.now = T0 + 1000 + 29_999  # t0 is due, t1 one ms short
        assert await round_(rt) == (["t0"], False)
        assert await rt.stores.timers.pending(0) == 1
        clock.advance(1)
        assert await round_(rt) == (["t1"], False)
        clock.advance(30_000)
        assert await round_(rt) == (["t2"], False)
        assert await rt.stores.timers.pending(0) == 0

    asyncio.run(run())


def test_past_the_chain_limit_the_next_round_goes_on() -> None:
    rt, clock = runtime()
    hops = TIMER_CHAIN_LIMIT + 5

    async def run() -> None:
        await arm(rt, start("u1", hops=hops, step=1))
        clock.now = T0 + 60_000
        first, more = await round_(rt)
        assert len(first) == 1 + TIMER_CHAIN_LIMIT and more  # one claimed, then the limit
        rest, more = await round_(rt)
        assert first + rest == [f"t{n}" for n in range(hops + 1)]  # each once, in order
        assert not more and await rt.stores.timers.pending(0) == 0

    asyncio.run(run())


def test_a_chained_hop_whose_rule_fails_is_retried_from_the_store() -> None:
    rt, clock = runtime()

    async def run() -> None:
        await arm(rt, start("u1", hops=3, step=100, fail_at=2))
        clock.now = T0 + 60_000
        names, more = await round_(rt)
        # t2 failed: the profile stays as t1 left it, and t2 waits in the store for a later round
        # (not this batch again: a claimed timer that fails waits for its lease)
        assert names == ["t0", "t1"] and not more
        assert await rt.stores.timers.pending(0) == 1
        attempts = 1
        for _ in range(TIMER_MAX_ATTEMPTS - 1):
            clock.advance(60_000)  # past each claim's lease
            res = await rt.decide.fire_due([0])
            await rt.decide.commit(res.commit)
            attempts += 1
        dead = [r for r in res.records if r.topic == rt.settings.topic_deadletter]
        assert attempts == TIMER_MAX_ATTEMPTS and len(dead) == 1
        assert orjson.loads(dead[0].value)["timer"].endswith("|relay|t2")
        assert await rt.stores.timers.pending(0) == 0
        state = (await rt.stores.states.load([orjson.loads(dead[0].value)["profileId"]])).popitem()[1]
        assert state.rules["relay"]["fired"] == ["t0", "t1"]

    asyncio.run(run())


@pytest.mark.stack
def test_on_redis_a_chained_timer_leaves_the_store_with_its_commit(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    rt, clock = runtime(
        lambda _: Stores.redis(settings), redis_url=settings.redis_url, redis_prefix=settings.redis_prefix
    )

    async def run() -> None:
        try:
            await arm(rt, start("u1", hops=2, step=100), start("u2", hops=2, step=50_000))
            clock.now = T0 + 30_000  # u1: all three hops due; u2: t0 only
            names, more = await round_(rt)
            assert sorted(names) == ["t0", "t0", "t1", "t2"] and not more
            assert await rt.stores.timers.pending(0) == 1  # u2's t1, set by its t0, not due yet
            assert await round_(rt) == ([], False)
            clock.advance(50_000)
            assert await round_(rt) == (["t1"], False)
        finally:
            await rt.stores.states.client.aclose()  # type: ignore[attr-defined]

    asyncio.run(run())

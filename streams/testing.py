"""The testing kit that ships with cxstream: test a rule in ten lines, without Kafka or Redis.

::

    from streams.testing import at, track, run_rule
    from rules.loan_eligibility_repeat import LoanEligibilityRepeat

    def test_three_checks_in_a_week_fire_once():
        run = run_rule(LoanEligibilityRepeat(), [
            track("Loan Eligibility Checked", at("2026-03-01")),
            track("Loan Eligibility Checked", at("2026-03-03")),
            track("Loan Eligibility Checked", at("2026-03-05")),
        ])
        assert [t.context["check_count"] for t in run.triggers] == [3]

``run_rule`` drives one rule through the real engine (:class:`streams.engine.runner.Engine`)
for one profile, with the event clock advancing to each event's time, like the
pipeline does for in-order input. It runs the rule exactly as a worker does: the rule
gets a deep copy of its state, what it returns is checked (an ``Outcome`` of JSON
objects), timers come back with the payload they were set with, and the profile state
makes a JSON round trip after every step, as it does through Redis. A rule that raises or
returns something else is reported in ``RuleRun.failures`` (a worker would write a
``cx.decisions`` record with outcome ``error``); ``strict=True`` raises instead.
``run_journey`` runs raw Segment messages through the whole pipeline (intake, identity,
consent, rules, timers) with in-memory stores.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rules.base import Rule, TriggerSpec
from streams.consent.decide import Verdict
from streams.consent.policy import DEFAULT_POLICY, Policy
from streams.engine.runner import Effects, Engine, Fired, RuleFailure
from streams.engine.state import ProfileState
from streams.intake.normalize import ms_to_iso, parse_time_ms
from streams.model import CallType, ConsentSignal, Event, Identifier, JSONDict
from streams.settings import Settings
from streams.simulate import LocalPipeline, SimResult

_ids = itertools.count(1)


def at(when: str) -> int:
    """``"2026-03-01"`` or ``"2026-03-01T10:00:00Z"`` -> epoch ms (UTC)."""
    return parse_time_ms(when if "T" in when else when + "T00:00:00Z")


class FakeClock:
    """A controllable clock in epoch ms, for code that takes a ``wall`` callable."""

    def __init__(self, start: int | str = 0) -> None:
        self.now = at(start) if isinstance(start, str) else start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def event(
    call: CallType,
    ts: int,
    *,
    name: str | None = None,
    properties: JSONDict | None = None,
    traits: JSONDict | None = None,
    channel: str = "web",
    user_id: str | None = "u1",
    anonymous_id: str | None = None,
    identifiers: Sequence[Identifier] = (),
    consent: dict[str, bool] | None = None,
    country: str | None = None,
    message_id: str | None = None,
) -> Event:
    """A normalized event, as intake would produce it."""
    ids: list[Identifier] = []
    if user_id:
        ids.append(Identifier("user_id", user_id))
    if anonymous_id:
        ids.append(Identifier("anonymous_id", anonymous_id))
    ids += identifiers
    return Event(
        message_id=message_id or f"test-{next(_ids)}",
        call=call,
        ts=ts,
        channel=channel,
        identifiers=tuple(ids),
        name=name,
        properties=properties or {},
        traits=traits or {},
        consent=tuple(ConsentSignal(p, g, ts, "test") for p, g in (consent or {}).items()),
        country=country,
    )


def track(name: str, ts: int, **kw: Any) -> Event:
    return event("track", ts, name=name, **kw)


def page(ts: int, name: str = "Home", **kw: Any) -> Event:
    return event("page", ts, name=name, **kw)


class RuleFailed(AssertionError):
    """``run_rule(..., strict=True)``: the rule failed where a worker would have isolated it."""


@dataclass
class RuleRun:
    fired: list[Fired] = field(default_factory=list)
    state: ProfileState = field(default_factory=ProfileState)
    timers: dict[str, int] = field(default_factory=dict)  # "rule|name" -> due
    #: every call the rule failed (raised, or returned something the engine refuses)
    failures: list[RuleFailure] = field(default_factory=list)

    @property
    def triggers(self) -> list[TriggerSpec]:
        return [f.spec for f in self.fired]

    @property
    def verdicts(self) -> list[Verdict]:
        return [f.verdict for f in self.fired]


def run_rule(
    rule: Rule,
    events: Iterable[Event],
    *,
    until: int | None = None,
    policy: Policy = DEFAULT_POLICY,
    profile_id: str = "p_test",
    state: ProfileState | None = None,
    strict: bool = False,
) -> RuleRun:
    """Feed ``events`` (in the given order) to ``rule`` for one profile.

    After each event the clock moves to the highest event time seen so far and due
    timers fire; at the end it moves to ``until`` (default: the last event's time).
    ``strict``: raise :class:`RuleFailed` at the first failure of the rule.
    """
    engine = Engine([rule], policy)
    run = RuleRun(state=state or ProfileState())
    clock = -(2**62)

    def collect(eff: Effects) -> None:
        run.fired += eff.fired
        run.failures += eff.failures
        if strict and eff.failures:
            f = eff.failures[0]
            raise RuleFailed(f"{f.rule.name}.{f.method} failed on {f.target}: {f.detail}")
        # through Redis, the state is stored as JSON between any two steps
        run.state = ProfileState.from_json(run.state.to_json())

    def fire(upto: int) -> None:
        collect(engine.fire_until(profile_id, run.state, upto))

    for ev in events:
        collect(engine.on_event(profile_id, run.state, ev))
        clock = max(clock, ev.ts)
        fire(clock)
    if until is not None:
        fire(until)
    run.timers = dict(run.state.timers)
    return run


async def run_journey(
    messages: Iterable[JSONDict | bytes],
    settings: Settings | None = None,
    batch: int = 1,
) -> SimResult:
    """Raw Segment messages (dicts or bytes) through the whole pipeline, in memory, event clock."""
    s = (settings or Settings()).model_copy(update={"partitions": 1, "clock": "event"})
    pipe = LocalPipeline(s)
    buf: list[bytes] = []
    for m in messages:
        buf.append(m if isinstance(m, bytes) else orjson.dumps(m))
        if len(buf) >= batch:
            await pipe.feed(buf)
            buf = []
    if buf:
        await pipe.feed(buf)
    return await pipe.finish()


def segment(call: str, ts: int, **fields: Any) -> JSONDict:
    """A raw Segment message dict (for :func:`run_journey`)."""
    msg: JSONDict = {"type": call, "timestamp": ms_to_iso(ts), "messageId": f"seg-{next(_ids)}"}
    msg.update(fields)
    return msg


__all__ = [
    "FakeClock",
    "RuleFailed",
    "RuleRun",
    "at",
    "event",
    "page",
    "run_journey",
    "run_rule",
    "segment",
    "track",
]

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

Everything a rule test needs is here, one import: the event builders (:func:`track`,
:func:`page`, :func:`event`, :func:`segment`, :func:`at`), the runners (:func:`run_rule`,
:func:`deliver_then_fire`, :func:`run_journey`), a merge step (:func:`absorb`) and
:class:`FakeClock`.

The runners run the rule as a worker does, through the real engine
(:class:`streams.engine.runner.Engine`): the rule gets a deep copy of its state, what it
returns is checked (an ``Outcome`` of JSON objects), timers come back with the payload they
were set with (after a merge too), and the profile state makes a JSON round trip after
every step, as it does through Redis. A rule that raises or returns something else is
reported in ``RuleRun.failures`` (a worker would write a ``cx.decisions`` record with
outcome ``error``); ``strict=True`` raises instead.

Clocks, as in a worker on the event clock:

* :func:`run_rule` moves the clock to the highest event time seen after each event (the
  watermark of in-order input) and fires the timers due by then. Events given out of
  order are therefore *late* events: the clock has already passed them, and timers due
  before them may have fired. At the end the clock moves to ``until`` (default: the last
  event's time; a timer due after that has not fired yet: see ``RuleRun.timers``).
* :func:`deliver_then_fire` delivers every event (in the given order) before the clock
  moves, then moves it to ``until``: the case a rule must get right whatever the arrival
  order (compare it on shuffled input with :func:`run_rule` on sorted input).
* :func:`run_journey` runs raw Segment messages through the whole pipeline (intake,
  identity, consent, rules, timers) with in-memory stores; its clock stops at the last
  event's time unless ``until`` moves it further.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rules.base import Rule, TriggerSpec
from streams.consent.decide import Verdict
from streams.consent.policy import DEFAULT_POLICY, Policy
from streams.engine.effects import Effects, Fired, RuleFailure
from streams.engine.runner import Engine
from streams.intake.normalize import ms_to_iso, parse_time_ms
from streams.model import CallType, ConsentSignal, Event, Identifier, JSONDict
from streams.settings import Settings
from streams.simulate import LocalPipeline, SimResult
from streams.state import ProfileState

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


@dataclass(frozen=True, slots=True)
class Merge:
    """A step of :func:`run_rule`: another profile (its state and pending timers) is merged in.

    Made by :func:`absorb`. The engine folds it in as a worker does after an identity merge:
    :meth:`Rule.merge` on the two states, the absorbed profile's timers follow (the earlier
    wins a name clash), then the timers due by the current clock fire.
    """

    state: ProfileState
    profile_id: str = "p_absorbed"


def absorb(other: RuleRun | ProfileState, profile_id: str = "p_absorbed") -> Merge:
    """A merge step for :func:`run_rule`: ``other`` (a run, e.g. one with a timer pending) is merged in.

    ::

        before = run_rule(rule, [view_a1, view_a2])          # another profile: a timer pending
        run = run_rule(rule, [view_a3, absorb(before)], until=t0 + DAY_MS)
    """
    state = other.state if isinstance(other, RuleRun) else other
    return Merge(ProfileState.from_json(state.to_json()), profile_id)


Step = Event | Merge


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
    events: Iterable[Step],
    *,
    until: int | None = None,
    policy: Policy = DEFAULT_POLICY,
    profile_id: str = "p_test",
    state: ProfileState | None = None,
    strict: bool = False,
) -> RuleRun:
    """Feed ``events`` (in the given order; :func:`absorb` steps merge a profile in) to ``rule``.

    After each step the clock moves to the highest event time seen so far and due timers
    fire; at the end it moves to ``until`` (default: the last event's time).
    ``strict``: raise :class:`RuleFailed` at the first failure of the rule.
    """
    return _run(rule, events, until, policy, profile_id, state, strict, move_clock=True)


def deliver_then_fire(rule: Rule, events: Iterable[Step], until: int) -> list[TriggerSpec]:
    """Every event arrives (in the given order) before the clock moves; then the clock goes to ``until``.

    That is the event-clock case a rule promises to get right whatever the arrival order:
    the watermark only passes a timer's due time after every earlier event was seen.
    Returns the triggers, in the order they fired.
    """
    return _run(rule, events, until, DEFAULT_POLICY, "p_test", None, False, move_clock=False).triggers


#: The shape of :func:`deliver_then_fire` (for a pytest fixture that hands it out).
Deliver = Callable[[Rule, Iterable[Event], int], list[TriggerSpec]]


def _run(
    rule: Rule,
    events: Iterable[Step],
    until: int | None,
    policy: Policy,
    profile_id: str,
    state: ProfileState | None,
    strict: bool,
    *,
    move_clock: bool,
) -> RuleRun:
    engine = Engine([rule], policy)
    run = RuleRun(state=ProfileState.from_json(state.to_json()) if state else ProfileState())
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

    for step in events:
        if isinstance(step, Merge):
            at = max(clock, 0)  # the merge's time, as a failure of Rule.merge reports it
            collect(engine.merge(profile_id, run.state, step.state, step.profile_id, at))
        else:
            collect(engine.on_event(profile_id, run.state, step))
            clock = max(clock, step.ts)
        if move_clock:
            fire(clock)
    if until is not None:
        fire(until)
    elif not move_clock:
        fire(clock)
    run.timers = dict(run.state.timers)
    return run


async def run_journey(
    messages: Iterable[JSONDict | bytes],
    settings: Settings | None = None,
    batch: int = 1,
    until: int | None = None,
) -> SimResult:
    """Raw Segment messages (dicts or bytes) through the whole pipeline, in memory, event clock.

    The clock ends at the last event's time, as at the end of a replay: a timer due later has
    not fired. ``until`` (epoch ms) moves the clock on to that time first, as if every source
    had been quiet until then.
    """
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
    result = await pipe.finish()
    if until is not None:
        clock = pipe.runtime.event_clock
        for p in list(clock.parts):
            for src in range(clock.sources):
                clock.observe(p, src, until)
                clock.report_idle(p, src)
        result = await pipe.finish()
    return result


def segment(call: str, ts: int, **fields: Any) -> JSONDict:
    """A raw Segment message dict (for :func:`run_journey`)."""
    msg: JSONDict = {"type": call, "timestamp": ms_to_iso(ts), "messageId": f"seg-{next(_ids)}"}
    msg.update(fields)
    return msg


__all__ = [
    "Deliver",
    "Event",
    "FakeClock",
    "Merge",
    "RuleFailed",
    "RuleFailure",
    "RuleRun",
    "SimResult",
    "Step",
    "absorb",
    "at",
    "deliver_then_fire",
    "event",
    "page",
    "run_journey",
    "run_rule",
    "segment",
    "track",
]

"""A rule that raises costs that rule the one event (or timer, or merge); the other rules still run."""

from typing import ClassVar

from prometheus_client import REGISTRY

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.consent.policy import DEFAULT_POLICY
from streams.engine.runner import Engine
from streams.model import Event, JSONDict
from streams.state import ProfileState
from streams.testing import at, track

T0 = at("2026-05-01")


class Broken(Rule):
    name = "broken_on_purpose"
    events = frozenset({"Boom"})
    channels: ClassVar[tuple[str, ...]] = ("email",)

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        if event.properties.get("explode"):
            raise ZeroDivisionError("deliberately broken")
        return Outcome({"n": state.get("n", 0) + 1}, set_timers=[TimerSpec("t", event.ts + 10)])

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        raise KeyError("also broken")

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        raise ValueError("and this")


class Counter(Rule):
    name = "counter"
    events = frozenset({"Boom"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        n = state.get("n", 0) + 1
        return Outcome({"n": n}, [TriggerSpec(key=event.message_id, time=event.ts, context={"n": n})])

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        return {"n": survivor.get("n", 0) + absorbed.get("n", 0)}


def errors() -> float:
    return REGISTRY.get_sample_value("cxstream_rule_errors_total", {"rule": "broken_on_purpose"}) or 0.0


def test_an_event_a_rule_raises_on_is_failed_for_that_rule_only() -> None:
    engine = Engine([Broken(), Counter()], DEFAULT_POLICY)
    state = ProfileState()
    before = errors()
    ok = engine.on_event("p1", state, track("Boom", T0))
    assert ok.failed_rules == [] and state.rules["broken_on_purpose"] == {"n": 1}
    eff = engine.on_event("p1", state, track("Boom", T0 + 1, properties={"explode": True}))
    assert eff.failed_rules == ["broken_on_purpose"]
    assert errors() == before + 1
    assert [f.spec.context["n"] for f in eff.fired] == [2]  # the other rule ran
    assert state.rules["broken_on_purpose"] == {"n": 1}  # the failed event left its state as it was
    assert state.rules["counter"] == {"n": 2}


def test_a_timer_and_a_merge_a_rule_raises_on_are_isolated_too() -> None:
    engine = Engine([Broken(), Counter()], DEFAULT_POLICY)
    state = ProfileState()
    engine.on_event("p1", state, track("Boom", T0))
    before = errors()
    eff = engine.on_timer("p1", state, "p1|broken_on_purpose|t", T0 + 10, {})
    assert eff.failed_rules == ["broken_on_purpose"] and errors() == before + 1
    other = ProfileState(rules={"broken_on_purpose": {"n": 5}, "counter": {"n": 5}})
    eff = engine.merge("p1", state, other)
    assert eff.failed_rules == ["broken_on_purpose"] and errors() == before + 2
    assert state.rules["counter"] == {"n": 6}

"""The rule boundary: copy in, check out. A broken rule costs that rule that one call, never more."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from prometheus_client import REGISTRY

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.consent.policy import DEFAULT_POLICY
from streams.engine.runner import MAX_RULE_DEPTH, Engine
from streams.model import Event, JSONDict
from streams.state import ProfileState
from streams.testing import RuleFailed, at, run_rule, track

T0 = at("2026-05-01")


class Counter(Rule):
    """A well-behaved rule: counts Boom events and fires on each."""

    name = "counter"
    events = frozenset({"Boom"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        n = state.get("n", 0) + 1
        return Outcome({"n": n}, [TriggerSpec(key=event.message_id, time=event.ts, context={"n": n})])


class Misbehaving(Rule):
    """Does on each event what ``event.properties["do"]`` says."""

    name = "misbehaving"
    events = frozenset({"Boom"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Any:
        do = event.properties.get("do")
        if do == "none":
            return None
        if do == "set":
            return Outcome({"seen": {event.message_id}})
        if do == "deep":
            deep: JSONDict = {}
            for _ in range(MAX_RULE_DEPTH + 5):
                deep = {"x": deep}
            return Outcome(deep)
        if do == "mutate_then_raise":
            state.setdefault("nested", {})["half"] = "made"
            raise RuntimeError("after mutating")
        if do == "bad_context":
            return Outcome(state, [TriggerSpec(key="k", time=event.ts, context={"when": object()})])
        if do == "bad_timer":
            return Outcome(state, set_timers=[TimerSpec("a|b", event.ts)])
        return Outcome({**state, "nested": {"ok": state.get("nested", {}).get("ok", 0) + 1}})


class RaisesInWants(Rule):
    name = "raises_in_wants"
    events = frozenset({"Boom"})

    def wants(self, event: Event) -> bool:
        raise KeyError("wants is broken")

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return Outcome(state)


def rule_errors(rule: str) -> float:
    return REGISTRY.get_sample_value("cxstream_rule_errors_total", {"rule": rule}) or 0.0


@pytest.mark.parametrize(
    ("do", "expected"),
    [
        ("none", "expected an Outcome, got NoneType"),
        ("set", "JSON-serializable"),
        ("deep", f"deeper than {MAX_RULE_DEPTH}"),
        ("bad_context", "TriggerSpec.context must be JSON-serializable"),
        ("bad_timer", "TimerSpec needs a non-empty str name without '|'"),
        ("mutate_then_raise", "raised RuntimeError at test_rule_boundary.py:"),
    ],
)
def test_a_refused_outcome_changes_nothing_and_names_the_rule(do: str, expected: str) -> None:
    engine = Engine([Misbehaving(), Counter()], DEFAULT_POLICY)
    state = ProfileState()
    engine.on_event("p1", state, track("Boom", T0))  # a good first event: nested.ok = 1
    before = state.to_json()
    errors = rule_errors("misbehaving")

    eff = engine.on_event("p1", state, track("Boom", T0 + 1, properties={"do": do}, message_id="m-bad"))

    assert [f.rule.name for f in eff.failures] == ["misbehaving"]
    failure = eff.failures[0]
    assert (failure.method, failure.target, failure.time) == ("on_event", "m-bad", T0 + 1)
    assert expected in failure.detail
    assert rule_errors("misbehaving") == errors + 1
    # the other rule ran; the failed one left its state exactly as it was (no half-made change)
    assert [f.spec.context["n"] for f in eff.fired] == [2]
    after = ProfileState.from_json(state.to_json())
    assert after.rules["misbehaving"] == ProfileState.from_json(before).rules["misbehaving"]
    assert after.rules["misbehaving"] == {"nested": {"ok": 1}}
    assert not after.timers


def test_a_rule_raising_in_wants_is_isolated_too() -> None:
    engine = Engine([RaisesInWants(), Counter()], DEFAULT_POLICY)
    eff = engine.on_event("p1", ProfileState(), track("Boom", T0))
    assert [(f.rule.name, f.method, f.exception) for f in eff.failures] == [
        ("raises_in_wants", "wants", "KeyError")
    ]
    assert len(eff.fired) == 1


class Remembers(Rule):
    """Sets a timer with a payload; fires with what the payload says."""

    name = "remembers"
    events = frozenset({"Product Viewed"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        sku = event.properties["sku"]
        return Outcome(state, set_timers=[TimerSpec(f"t-{sku}", event.ts + 1000, {"sku": sku})])

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        return Outcome(state, [TriggerSpec(key=timer.name, time=timer.due, context=dict(timer.payload))])


def test_run_rule_hands_timers_their_payload_as_a_worker_does() -> None:
    run = run_rule(Remembers(), [track("Product Viewed", T0, properties={"sku": "A"})], until=T0 + 5000)
    assert [t.context for t in run.triggers] == [{"sku": "A"}]


class KeepsASet(Rule):
    name = "keeps_a_set"
    events = frozenset({"Boom"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return Outcome({"ids": {event.message_id}})


def test_run_rule_fails_a_rule_that_would_fail_in_a_worker() -> None:
    run = run_rule(KeepsASet(), [track("Boom", T0)])
    assert [f.method for f in run.failures] == ["on_event"]
    with pytest.raises(RuleFailed, match=r"keeps_a_set\.on_event failed"):
        run_rule(KeepsASet(), [track("Boom", T0)], strict=True)


class ConfigurableKeys(Rule):
    """Per-key state in nested dicts: the copy a rule gets must be deep."""

    name: ClassVar[str] = "nested_keys"
    events = frozenset({"Boom"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        key = event.properties["k"]
        state.setdefault("by", {}).setdefault(key, []).append(event.ts)
        if event.properties.get("fail"):
            raise ValueError("after appending")
        return Outcome(state)


def test_a_failed_call_cannot_leak_a_change_through_shared_nested_state() -> None:
    run = run_rule(
        ConfigurableKeys(),
        [
            track("Boom", T0, properties={"k": "a"}),
            track("Boom", T0 + 1, properties={"k": "a", "fail": True}),
            track("Boom", T0 + 2, properties={"k": "b"}),
        ],
    )
    assert run.state.rules["nested_keys"] == {"by": {"a": [T0], "b": [T0 + 2]}}
    assert len(run.failures) == 1

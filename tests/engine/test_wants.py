"""Which events reach a rule's ``on_event``: ``Rule.wants`` as written (the engine asks it in its
own loop) and a rule's own ``wants`` (called), side by side in one engine."""

from __future__ import annotations

from rules.base import Outcome, Rule, RuleContext
from streams.consent.policy import DEFAULT_POLICY
from streams.engine.runner import Engine
from streams.model import Event, JSONDict
from streams.state import ProfileState
from streams.testing import event, track


class _Seen(Rule):
    """Counts the events it was given, by message id, in its state."""

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return Outcome({"seen": [*state.get("seen", []), event.message_id]})


class ByNameAndCall(_Seen):
    name = "by_name_and_call"
    events = frozenset({"Product Added"})
    calls = frozenset({"screen"})


class OwnWants(_Seen):
    name = "own_wants"
    events = frozenset({"Product Added"})  # ignored: its wants decides

    def wants(self, event: Event) -> bool:
        return event.channel == "app"


def seen(state: ProfileState, rule: str) -> list[str]:
    return list(state.rules.get(rule, {}).get("seen", []))


def test_default_wants_and_a_rules_own_wants_pick_their_events() -> None:
    engine = Engine([ByNameAndCall(), OwnWants()], DEFAULT_POLICY)
    state = ProfileState()
    evs = [
        track("Product Added", 1, message_id="added-web"),
        track("Order Completed", 2, message_id="order-app", channel="app"),
        event("page", 3, name="Product Added", message_id="page-named-like-the-event"),
        event("screen", 4, name="Home", message_id="screen-app", channel="app"),
        track("Product Added", 5, message_id="added-app", channel="app"),
    ]
    for e in evs:
        engine.on_event("p1", state, e)
    # events by name are track events only; calls by type, whatever the name
    assert seen(state, "by_name_and_call") == ["added-web", "screen-app", "added-app"]
    # the engine's own copy of Rule.wants answers as Rule.wants does (a change to one fails here)
    assert seen(state, "by_name_and_call") == [e.message_id for e in evs if ByNameAndCall().wants(e)]
    assert seen(state, "own_wants") == ["order-app", "screen-app", "added-app"]


def test_wants_replaced_on_an_instance_is_asked() -> None:
    rule = ByNameAndCall()
    rule.wants = lambda event: event.message_id == "only-this"  # type: ignore[method-assign]
    engine = Engine([rule], DEFAULT_POLICY)
    state = ProfileState()
    for mid in ("screen-1", "only-this"):
        engine.on_event("p1", state, event("screen", 1, message_id=mid))
    assert seen(state, "by_name_and_call") == ["only-this"]


class NotASet(_Seen):
    name = "not_a_set"
    calls = None  # type: ignore[assignment]  # a broken rule module: not a set of call types


def test_a_rule_whose_calls_are_not_a_set_fails_per_event_isolated_not_at_start() -> None:
    engine = Engine([NotASet(), ByNameAndCall()], DEFAULT_POLICY)  # starts
    state = ProfileState()
    eff = engine.on_event("p1", state, event("screen", 1, message_id="s1"))
    assert [(f.rule.name, f.method) for f in eff.failures] == [("not_a_set", "wants")]
    assert seen(state, "by_name_and_call") == ["s1"]  # the other rules ran

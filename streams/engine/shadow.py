"""Shadow runs: a rule that sees live traffic and records what it would decide, and does nothing else.

``CXSTREAM_SHADOW_RULES`` names rules as ``CXSTREAM_RULES`` does (a built-in or entry-point
name, or ``module:Class``). Each runs as :class:`ShadowRule` under the id ``<name>@<version>``
(e.g. a second class ``my_rules.browse:BrowseAbandonedV2`` of ``browse_abandoned``, version 2,
runs as ``browse_abandoned@2`` next to the live ``browse_abandoned``):

* its state is kept under that id (``ProfileState.rules["browse_abandoned@2"]``) and its
  timers as ``browse_abandoned@2|<name>``: never the live rule's, nor any other rule's;
* each trigger is decided by the same governance (consent, preferences, reach) *without*
  counting against the frequency caps, and written to ``cx.decisions`` with outcome
  ``shadow``: never activated, no cooldown stamp, no holdout, no exposure, not among the
  profile's recent triggers;
* a failure of the shadow is isolated like any rule's (its own error decision, labelled
  with the shadow id).

``cxstream shadow-diff`` (:mod:`streams.engine.shadow_diff`) compares the shadow's
decisions with the live rule's over the same period.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rules.base import Outcome, Rule, RuleContext, Timer
from streams.consent.decide import Verdict, decide
from streams.model import Event, JSONDict

if TYPE_CHECKING:
    from streams.consent.policy import Policy
    from streams.state import ProfileState


def shadow_verdict(policy: Policy, state: ProfileState, rule: ShadowRule, t: int) -> Verdict:
    """The governance verdict on a shadow trigger at event time ``t``, as for the live rule, but
    not counted against the frequency caps (``state`` is left as it was)."""
    topic = getattr(rule.inner, "topic", None)  # optional: a rule may name the topic it is about
    topic = topic if isinstance(topic, str) else None
    return decide(policy, state, rule.purpose, rule.channels, t, topic=topic, record=False)


def shadow_id(rule: Rule) -> str:
    """``<name>@<version>``: the key of a shadow's state and timers."""
    return f"{rule.name}@{rule.version}"


class ShadowRule(Rule):
    """Wraps a rule to run it in shadow. Called by the engine exactly like the rule it wraps;
    what the wrapped rule raises is raised on (the engine isolates it as any rule failure)."""

    def __init__(self, inner: Rule) -> None:
        self.inner = inner
        # instance attributes: the engine keys state, timers and failures by ``name``
        vars(self).update(
            name=shadow_id(inner),
            version=inner.version,
            description=f"shadow of {inner.name} v{inner.version}",
            trigger=inner.trigger_name,
            events=inner.events,
            calls=inner.calls,
            purpose=inner.purpose,
            channels=inner.channels,
            cooldown_ms=0,
        )

    def wants(self, event: Event) -> bool:
        return self.inner.wants(event)

    def initial_state(self) -> JSONDict:
        return self.inner.initial_state()

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return self.inner.on_event(state, event, ctx)

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        return self.inner.on_timer(state, timer, ctx)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        return self.inner.merge(survivor, absorbed)

    def __repr__(self) -> str:
        return f"<shadow rule {self.name}>"

"""The most recent triggers of a profile, kept in its state for the Profile API.

One entry per decided trigger (``ProfileState.recent``, oldest first, at most :data:`KEEP`):
``{"id", "rule", "trigger", "time", "outcome", "channels", "refused"}``: the trigger id (as in
the CloudEvent), the rule and trigger names, the trigger's event time (ms), the outcome (the
decision record's: ``activated``, ``suppressed`` or ``holdout``), the channels it was activated
on (none unless activated), and each refused channel with its reason code and one-line detail
(no personal data: the details of :mod:`streams.consent.decide` name purposes, channels and
regions only). Shadow rules' decisions are not kept (they never reach a person).

Written by the decision stage where the decision record is made
(:meth:`streams.pipeline.decide_stage.DecideStage.emit_effects`), so it is exactly the
``cx.decisions`` stream of the profile, bounded. Kept in event-time order; an entry with
the id of one already kept (a redelivered batch) replaces it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.model import JSONDict
from streams.state import ProfileState

if TYPE_CHECKING:
    from streams.engine.effects import Fired

#: Entries kept per profile: what a person at the point of service reads, not an audit log
#: (``cx.decisions`` is that).
KEEP = 20


def _bounded(entries: list[JSONDict]) -> list[JSONDict]:
    by_id = {str(e.get("id")): e for e in entries}
    return sorted(by_id.values(), key=lambda e: (int(e.get("time", 0)), str(e.get("id"))))[-KEEP:]


def entry(trigger_id: str, fired: Fired, outcome: str) -> JSONDict:
    """The entry of one decided trigger (``trigger_id`` as in its CloudEvent and decision record)."""
    return {
        "id": trigger_id,
        "rule": fired.rule.name,
        "trigger": fired.spec.name or fired.rule.trigger_name,
        "time": fired.spec.time,
        "outcome": outcome,
        # a held-out trigger was allowed but not activated: no channel carried it
        "channels": [a.channel for a in fired.verdict.allowed] if outcome == "activated" else [],
        "refused": [
            {"channel": r.channel, "reason": r.reason.value, "detail": r.detail}
            for r in fired.verdict.refused
        ],
    }


def record(state: ProfileState, item: JSONDict) -> None:
    """Add one decided trigger to the profile's recent triggers (see the module docstring)."""
    state.recent = _bounded([*state.recent, item])


def merge(survivor: list[JSONDict], absorbed: list[JSONDict]) -> list[JSONDict]:
    """The recent triggers of the merged profile: both lists, by time, the newest :data:`KEEP`."""
    return _bounded([*survivor, *absorbed])

"""The rule contract: what a rule module declares and what it is given.

A rule is plain Python: no faust, no Redis, no clock of its own. The engine
(:mod:`streams.engine.runner`) calls it, for one profile at a time, in event-time order per
profile:

* :meth:`Rule.on_event` for each event the rule :meth:`~Rule.wants`;
* :meth:`Rule.on_timer` when one of the rule's timers is due (by the wall or event
  clock, see "Clocks" in the README and :mod:`streams.engine.clock`), after every event up
  to that time was seen;
* :meth:`Rule.merge` when two profiles turn out to be one person. It returns a state only:
  a merge cannot set or cancel timers. The absorbed profile's timers follow the survivor
  (the earlier wins a name clash), so a rule that keeps one timer at "the earliest pending
  point" stays correct; otherwise the merged state is acted on at the next event or timer.

Each returns an :class:`Outcome`: the rule's new state (a JSON object, stored per
profile), the triggers to emit and the timers to set or cancel.

What a failure does (enforced by :mod:`streams.engine.runner`, and by the testing kit):
the rule gets a deep copy of its state (a JSON round trip, as from Redis: tuples come back
as lists); its return value is checked (an ``Outcome`` of JSON objects at most
:data:`~streams.engine.runner.MAX_RULE_DEPTH` levels deep) before anything is applied.
Raising in any method (``wants`` included), or returning something else, costs the rule
that one call: its state and timers stay as they were, the other rules still run, the
failure is counted (``cxstream_rule_errors_total``) and, for an event or a merge, recorded
as a ``cx.decisions`` record with outcome ``error``. A timer whose ``on_timer`` fails stays
due and is retried (3 attempts, one per 30 s lease), then dead-lettered with its payload.

Triggers carry a ``key`` unique to the condition instance (e.g. the ``messageId`` that
opened the cart): the trigger id is derived from rule name, version and key, so a
replay of the same input yields the same ids and consumers can dedupe.

The building blocks most rules repeat (a timeline deduped by ``messageId``, counts in a
window, per-key cooldowns, the "decided up to" policy for late events, merges) are in
:mod:`rules.kit`; the guide is ``docs/adding-a-rule.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from streams.frozen import fast_init
from streams.model import Event, JSONDict


@fast_init
@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """A condition became true for this profile at event time ``time`` (ms)."""

    key: str
    time: int
    context: JSONDict = field(default_factory=dict)
    #: Override of the rule's trigger name (default: the rule's ``trigger`` or ``name``).
    name: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class TimerSpec:
    """Fire :meth:`Rule.on_timer` at ``due`` (ms, on the configured clock).

    One timer per (profile, rule, ``name``): setting it again reschedules it.
    """

    name: str
    due: int
    payload: JSONDict = field(default_factory=dict)
    #: A timer of this name already due at or before ``due`` (same payload) stays as it is: it
    #: fires then, and :meth:`Rule.on_timer` sets it again. For a timer every event would move
    #: later (an inactivity check): one timer write per firing instead of one per event. Only for
    #: a rule whose ``on_timer`` treats a timer that fires early as a re-check.
    keep_earlier: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class Timer:
    """A due timer, as handed back to the rule."""

    name: str
    due: int
    payload: JSONDict


@dataclass(slots=True)
class Outcome:
    state: JSONDict
    triggers: list[TriggerSpec] = field(default_factory=list)
    set_timers: list[TimerSpec] = field(default_factory=list)
    cancel_timers: list[str] = field(default_factory=list)


@fast_init
@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule may know about the profile besides its own state."""

    profile_id: str
    now: int  # event-time ms of the event or the timer's due time
    identifier_types: frozenset[str] = frozenset()
    country: str | None = None
    #: the profile's computed traits after this event (read-only copy; keys and derived values:
    #: :mod:`streams.engine.computed`, e.g. ``computed.view(ctx.computed, ctx.now)["rfm"]``)
    computed: Mapping[str, Any] = field(default_factory=dict)


class Rule(ABC):
    """Base of every rule module. Subclass, declare the class attributes, implement ``on_event``."""

    #: Unique name; also the trigger type ``cx.trigger.<trigger or name>``.
    name: ClassVar[str]
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""
    #: Trigger name when it differs from the rule name (``cx.trigger.<trigger>``).
    trigger: ClassVar[str | None] = None
    #: Track event names this rule reacts to.
    events: ClassVar[frozenset[str]] = frozenset()
    #: Call types whose every event this rule reacts to (e.g. ``{"page", "screen"}``).
    calls: ClassVar[frozenset[str]] = frozenset()
    #: Consent purpose an activation of this rule needs, and the channels it may use.
    purpose: ClassVar[str] = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email",)
    #: After a trigger, further triggers of this rule for the profile are dropped for this long (ms).
    #: Per rule: one product's trigger silences every other product's. For "once per product"
    #: keep a :class:`rules.kit.Cooldown` in the rule's state and leave this at 0.
    cooldown_ms: ClassVar[int] = 0

    def wants(self, event: Event) -> bool:
        """Whether :meth:`on_event` should see ``event``. Default: by ``events`` and ``calls``."""
        return event.call in self.calls or (event.call == "track" and event.name in self.events)

    def initial_state(self) -> JSONDict:
        return {}

    @abstractmethod
    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        """React to one event of the profile."""

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        """React to a due timer. Default: nothing."""
        return Outcome(state)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        """State of the merged profile. Default: the survivor's state, or the absorbed one if it had none."""
        return survivor or absorbed

    @property
    def trigger_name(self) -> str:
        return self.trigger or self.name

    def __repr__(self) -> str:
        return f"<rule {self.name} v{self.version}>"

"""What one run of the rules engine produced for a profile (:class:`Effects`): triggers with
their governance verdicts (:class:`Fired`), timer changes, rule failures (:class:`RuleFailure`)
and conversions. Made by :class:`streams.engine.runner.Engine`; kept in a module of their own,
compiled with it (``streams/native.py``).

Their ``__init__`` is written out, not generated: mypyc compiles a dataclass's methods but
leaves the ``__init__`` that ``dataclasses`` makes interpreted (issue 13: ~500 -> ~35 ns for a
frozen one, whose ``object.__setattr__`` calls become direct slot writes once compiled).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.base import Rule, TriggerSpec
from streams.consent.decide import Verdict
from streams.measure import exposures
from streams.model import JSONDict


@dataclass(frozen=True, slots=True, init=False)
class Fired:
    """A trigger a rule produced, with the governance verdict on it."""

    rule: Rule
    profile_id: str
    spec: TriggerSpec
    verdict: Verdict
    origin_rx: int = 0  # wall ms the causing event reached intake (0 for timers)
    #: allowed by governance but held out (the rule's holdout, ``[measurement]``): not activated
    holdout: bool = False
    #: decided by a rule running in shadow (``CXSTREAM_SHADOW_RULES``): recorded, never activated
    shadow: bool = False

    def __init__(
        self,
        rule: Rule,
        profile_id: str,
        spec: TriggerSpec,
        verdict: Verdict,
        origin_rx: int = 0,
        holdout: bool = False,
        shadow: bool = False,
    ) -> None:
        # written out: compiled, mypyc sets the slots directly (~35 ns against ~500 for the
        # frozen dataclass's own, interpreted __init__); still frozen to every other writer
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "verdict", verdict)
        object.__setattr__(self, "origin_rx", origin_rx)
        object.__setattr__(self, "holdout", holdout)
        object.__setattr__(self, "shadow", shadow)

    @property
    def outcome(self) -> str:
        """``activated``, ``holdout``, ``suppressed`` or ``shadow``: the decision record's outcome."""
        if self.shadow:
            return "shadow"
        if not self.verdict.activated:
            return "suppressed"
        return "holdout" if self.holdout else "activated"


@dataclass(frozen=True, slots=True)
class RuleFailure:
    """A rule raised or returned something the engine cannot apply. Nothing of it was applied."""

    rule: Rule
    profile_id: str
    #: ``on_event``, ``on_timer``, ``merge`` or ``wants``
    method: str
    #: what it ran on: the event's messageId, the timer member, or the absorbed profile id
    target: str
    #: event time (ms) of the event or the timer's due time; the merge's time for merges
    time: int
    #: the exception class, or ``InvalidOutcome`` when the return value was refused
    exception: str
    #: one line: what was expected and what arrived (no values: they may be personal data)
    detail: str


class InvalidOutcome(Exception):
    """What a rule returned is not an :class:`~rules.base.Outcome` the engine can apply."""


@dataclass(slots=True, init=False)
class Effects:
    fired: list[Fired] = field(default_factory=list)
    set_timers: dict[str, tuple[int, JSONDict]] = field(default_factory=dict)
    cancel_timers: set[str] = field(default_factory=set)
    failures: list[RuleFailure] = field(default_factory=list)
    #: conversions after earlier triggers that this call's event made (``[measurement]``)
    conversions: list[exposures.Conversion] = field(default_factory=list)

    def __init__(
        self,
        fired: list[Fired] | None = None,
        set_timers: dict[str, tuple[int, JSONDict]] | None = None,
        cancel_timers: set[str] | None = None,
        failures: list[RuleFailure] | None = None,
        conversions: list[exposures.Conversion] | None = None,
    ) -> None:
        # the fields' defaults, written out: compiled, a C function (the dataclass's is interpreted)
        self.fired = [] if fired is None else fired
        self.set_timers = {} if set_timers is None else set_timers
        self.cancel_timers = set() if cancel_timers is None else cancel_timers
        self.failures = [] if failures is None else failures
        self.conversions = [] if conversions is None else conversions

    @property
    def failed_rules(self) -> list[str]:
        return [f.rule.name for f in self.failures]

    def extend(self, other: Effects) -> None:
        self.fired += other.fired
        for m in other.cancel_timers:
            self.set_timers.pop(m, None)
        self.cancel_timers |= other.cancel_timers
        for m, v in other.set_timers.items():
            self.cancel_timers.discard(m)
            self.set_timers[m] = v
        self.failures += other.failures
        self.conversions += other.conversions

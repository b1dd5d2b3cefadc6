"""The policy file's ``[measurement]`` table: holdouts and conversion definitions per rule.

Parsed and validated with the rest of the policy (:mod:`streams.consent.policy`); a bad value
stops start-up with one line naming the field, like every policy error::

    [measurement]
    holdout_percent = 10                      # default for every rule (0 = none held out)

    [measurement.rules.cart_abandoned]
    holdout_percent = 20                      # this rule's own share
    conversion_events = ["Order Completed"]   # track event names that count as converting
    conversion_window_days = 7                # after the trigger; later ones do not count
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Holdout buckets: a percent is applied with two decimals (0.01 % steps).
BUCKETS = 10_000
DAY_MS = 86_400_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _events(v: tuple[str, ...]) -> tuple[str, ...]:
    for e in v:
        if not e.strip():
            raise ValueError("holds an empty event name; list track event names such as 'Order Completed'")
    dup = sorted({e for e in v if v.count(e) > 1})
    if dup:
        raise ValueError(f"event {dup[0]!r} is listed twice")
    return v


class RuleMeasurement(_Strict):
    #: this rule's held-out share of profiles, in percent; None: the table's ``holdout_percent``
    holdout_percent: float | None = Field(default=None, ge=0, le=100)
    #: track event names that count as a conversion after this rule's trigger
    conversion_events: tuple[str, ...] = ()
    #: days after the trigger (event time) within which a conversion counts
    conversion_window_days: float = Field(default=7, gt=0, le=366)

    _check_events = field_validator("conversion_events")(_events)


class Measurement(_Strict):
    #: every rule's held-out share of profiles, in percent, unless the rule sets its own
    holdout_percent: float = Field(default=0, ge=0, le=100)
    rules: dict[str, RuleMeasurement] = Field(default_factory=dict)
    #: days without activity after which a known customer counts as churned (KPIs)
    churn_days: float = Field(default=90, gt=0, le=3660)

    def holdout_bucket_limit(self, rule: str) -> int:
        """Profiles whose bucket (0..9999) is below this are held out of ``rule``."""
        r = self.rules.get(rule)
        pct = r.holdout_percent if r is not None and r.holdout_percent is not None else self.holdout_percent
        return round(pct * BUCKETS / 100)

    def conversions(self, rule: str) -> tuple[frozenset[str], int] | None:
        """(conversion event names, window in ms) of ``rule``, or None if it measures none."""
        r = self.rules.get(rule)
        if r is None or not r.conversion_events:
            return None
        return frozenset(r.conversion_events), round(r.conversion_window_days * DAY_MS)

    @property
    def measured(self) -> bool:
        """Whether anything is configured at all (holdouts or conversions)."""
        return self.holdout_percent > 0 or bool(self.rules)

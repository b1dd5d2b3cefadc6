"""Loan eligibility repeats: ``Loan Eligibility Checked`` 3 or more times within 7 days.

A customer who checks three times in a week is a different customer from one who
checked once (contract section 9). Fires once when the third check in a 7-day window
arrives; can fire again only after a 7-day cooldown.

State: the recent checks ``[[ts, messageId, product], ...]`` sorted by event time, pruned to
what a 7-day window can still use. The trigger key is the ``messageId`` of the check that
completed the window, so a replay gives the same trigger id.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from streams.constants import DAY_MS
from streams.model import Event, JSONDict


class LoanEligibilityRepeat(Rule):
    name = "loan_eligibility_repeat"
    version = 1
    description = "Loan Eligibility Checked 3+ times within 7 days (7-day cooldown)"
    events = frozenset({"Loan Eligibility Checked"})
    purpose = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email", "push", "call_center")
    cooldown_ms = 7 * DAY_MS

    threshold: ClassVar[int] = 3
    window_ms: ClassVar[int] = 7 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        checks: list[list[Any]] = list(state.get("checks", []))
        if any(c[1] == event.message_id for c in checks):
            return Outcome(state)  # the same check seen twice
        product = event.properties.get("product") or event.properties.get("loan_type")
        insort(checks, [event.ts, event.message_id, product], key=lambda c: (c[0], c[1]))
        newest = int(checks[-1][0])
        checks = [c for c in checks if int(c[0]) > newest - 2 * self.window_ms]
        fired: list[str] = list(state.get("fired", []))
        triggers = []
        # The new check can complete any window that ends at it or at a later check within 7 days
        # (a late-arriving check); the earliest completed window that has not fired yet fires.
        for end in checks:
            end_ts = int(end[0])
            if end_ts < event.ts or end_ts >= event.ts + self.window_ms:
                continue
            window = [c for c in checks if end_ts - self.window_ms < int(c[0]) <= end_ts]
            if len(window) >= self.threshold and end[1] not in fired:
                products = sorted({str(c[2]) for c in window if c[2]})
                triggers.append(
                    TriggerSpec(
                        key=str(end[1]),
                        time=end_ts,
                        context={
                            "check_count": len(window),
                            "window_days": self.window_ms // DAY_MS,
                            "first_check_at": int(window[0][0]),
                            "products": products,
                        },
                    )
                )
                fired = [*fired, str(end[1])][-10:]
                break
        return Outcome({"checks": checks, "fired": fired} if fired else {"checks": checks}, triggers)

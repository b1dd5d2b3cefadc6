"""Loan eligibility repeats: ``Loan Eligibility Checked`` 3 or more times within 7 days.

A customer who checks three times in a week is a different customer from one who
checked once (README, "Built-in rules"). Fires once when the third check in a 7-day window
arrives; can fire again only after a 7-day cooldown.

State: ``{"checks": [{"ts", "id", "product"}, ...], "fired": [messageId, ...]}``: a
:class:`~rules.kit.Timeline` of the recent checks (deduped by ``messageId``, sorted by event
time, pruned to what a 7-day window can still use) and the keys of the last triggers. A
state stored in the older positional shape (``[ts, messageId, product]``) is read as
named entries. The trigger key is the ``messageId`` of the check that completed the
window, so a replay gives the same trigger id. The cooldown is the engine's per-rule
``cooldown_ms``: one customer, one kind of event.
"""

from __future__ import annotations

from typing import ClassVar

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from rules.kit import Timeline, in_window
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
        checks = Timeline(state.get("checks"), legacy=("ts", "id", "product"))
        product = event.properties.get("product") or event.properties.get("loan_type")
        if not checks.add_event(event, product=product):
            return Outcome(state)  # the same check seen twice
        newest = int(checks.newest or event.ts)
        checks.prune(newest - 2 * self.window_ms)
        fired: list[str] = list(state.get("fired", []))
        triggers = []
        # The new check can complete any window that ends at it or at a later check within 7 days
        # (a late-arriving check); the earliest completed window that has not fired yet fires.
        for end in checks:
            end_ts = int(end["ts"])
            if end_ts < event.ts or end_ts >= event.ts + self.window_ms:
                continue
            window = in_window(checks, end_ts, self.window_ms)
            if len(window) >= self.threshold and end["id"] not in fired:
                products = sorted({str(c["product"]) for c in window if c.get("product")})
                triggers.append(
                    TriggerSpec(
                        key=str(end["id"]),
                        time=end_ts,
                        context={
                            "check_count": len(window),
                            "window_days": self.window_ms // DAY_MS,
                            "first_check_at": int(window[0]["ts"]),
                            "products": products,
                        },
                    )
                )
                fired = [*fired, str(end["id"])][-10:]
                break
        kept: JSONDict = {"checks": checks.dump()}
        return Outcome({**kept, "fired": fired} if fired else kept, triggers)

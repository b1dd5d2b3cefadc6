"""Browse abandoned: the same product viewed 3 times within 24 hours, and not added to the cart.

Off by default (``CXSTREAM_RULES=...,browse_abandoned`` turns it on). ``Product Viewed`` of one product
(``properties.product_id``, else ``sku``) 3 times within 24 hours, with no ``Product
Added`` of that product in those 24 hours, fires once, at the end of the 24 hours after
the first of those views; at most once per product per 7 days. "Within 24 hours" is the
half-open span ``[first view, first view + 24 h)``.

Built with :mod:`rules.kit`: a :class:`~rules.kit.Timeline` of views and adds (deduped by
``messageId``: one view delivered 3 times is one view), one timer at the earliest pending
window end, decided in ``on_timer`` once the clock passed it (every earlier event seen);
a :class:`~rules.kit.Decided` mark makes a late event count only for windows not yet
decided; a per-product :class:`~rules.kit.Cooldown` gives "once per product per 7 days"
(views of products a and b, 3 each, give 2 triggers). The trigger key is the
``messageId`` of the first view of the window.
"""

from __future__ import annotations

from typing import ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TriggerSpec
from rules.kit import Cooldown, Decided, Timeline, Triggers, first_text, schedule
from streams.constants import DAY_MS, HOUR_MS
from streams.model import Event, JSONDict

VIEWED, ADDED = "Product Viewed", "Product Added"


class BrowseAbandoned(Rule):
    name = "browse_abandoned"
    description = "The same product viewed 3 times within 24 hours without Product Added (once per 7 days)"
    events = frozenset({VIEWED, ADDED})
    channels: ClassVar[tuple[str, ...]] = ("email", "push", "ads")
    views: ClassVar[int] = 3
    window_ms: ClassVar[int] = 24 * HOUR_MS
    once_per_ms: ClassVar[int] = 7 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        product = first_text(event.properties, "product_id", "sku")
        timeline, fired, decided = self._load(state)
        if product is None or not timeline.add_event(event, product=product, added=event.name == ADDED):
            return Outcome(state)  # no product to count, or the same event delivered again
        return self._save(timeline, fired, decided)

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        timeline, fired, decided = self._load(state)
        triggers = []
        for first in timeline:  # each view opens a window; decide those that ended by now
            end, product = first["ts"] + self.window_ms, first["product"]
            if first["added"] or not decided.is_open(end) or end > timer.due:
                continue
            window = [e for e in timeline.between(first["ts"], end) if e["product"] == product]
            seen = [e["ts"] for e in window if not e["added"]]
            if len(seen) >= self.views and len(seen) == len(window) and not fired.blocks(product, end):
                fired.note(product, end)
                context = {"product_id": product, "view_count": len(seen), "first_viewed_at": seen[0]}
                triggers.append(TriggerSpec(first["id"], end, context))
        decided.advance(timer.due)
        return self._save(timeline, fired, decided, triggers)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        (t1, f1, d1), (t2, f2, d2) = self._load(survivor), self._load(absorbed)
        return self._save(t1.merged(t2), f1.merged(f2), d1.merged(d2)).state

    def _load(self, state: JSONDict) -> tuple[Timeline, Cooldown, Decided]:
        fired = Cooldown(self.once_per_ms, state.get("fired"))
        return Timeline(state.get("events")), fired, Decided(state.get("decided"))

    def _save(self, timeline: Timeline, fired: Cooldown, decided: Decided, out: Triggers = ()) -> Outcome:
        if decided.at is not None:  # nothing at or before the mark minus a window is still of use
            timeline.prune(decided.at - self.window_ms)
            fired.prune(decided.at)
        due = decided.earliest_open(e["ts"] + self.window_ms for e in timeline if not e["added"])
        state = {"events": timeline.dump(), "fired": fired.dump(), "decided": decided.at}
        return schedule(state, "window", due, out)

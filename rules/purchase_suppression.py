"""Purchase suppression: stop advertising what the customer just bought, for 30 days.

Domain notes: advertising what someone already bought wastes budget and annoys them. Each
purchase (``Order Completed`` or ``Vehicle Purchased``) emits ``cx.trigger.purchase_suppression``
on the ``ads`` channel (purpose ``advertising``) with

* ``products``: the purchased product ids (``properties.products[].product_id``, else
  ``.sku``; or a top-level ``product_id`` / ``sku``), sorted, at most 100;
* ``until``: epoch ms at which the suppression ends (purchase time + 30 days);
* ``order_id`` when the event has one.

That is all an ad system needs: suppress ``products`` for this person until ``until``;
a later purchase of the same product sends a later ``until``, so "keep the latest until
per product" is the whole consumer logic. For audience lists that do not expire by
themselves, ``cx.trigger.purchase_suppression_lifted`` (context ``products``,
``suppressed_since``) is emitted when a product's suppression ends and no later purchase
extended it: a timer at the earliest ``until`` reports every product whose latest
``until`` has passed.

The suppression is emitted at once, also for a late purchase (its ``until`` may already
be past: a consumer ignores it), so a replay gives the same triggers. Keys: the
purchase's ``messageId``, and ``<messageId>/lifted`` for the lift of the products whose
latest suppression that purchase set. A purchase without product ids emits nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.constants import DAY_MS
from streams.model import Event, JSONDict

PURCHASES = frozenset({"Order Completed", "Vehicle Purchased"})
LIFTED = "purchase_suppression_lifted"


def _id(v: Any) -> str | None:
    return str(v) if isinstance(v, str | int) and not isinstance(v, bool) and v != "" else None


def products_of(props: JSONDict) -> list[str]:
    """Product ids of a purchase: ``products[].product_id`` (or ``sku``), else the top-level ones."""
    found: list[str] = []
    items = props.get("products")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                pid = _id(item.get("product_id")) or _id(item.get("sku"))
                if pid:
                    found.append(pid)
    if not found:
        pid = _id(props.get("product_id")) or _id(props.get("sku"))
        if pid:
            found.append(pid)
    return sorted(set(found))


class PurchaseSuppression(Rule):
    name = "purchase_suppression"
    version = 1
    description = "A purchase suppresses ads for the purchased products for 30 days"
    events = PURCHASES
    purpose = "advertising"
    channels: ClassVar[tuple[str, ...]] = ("ads",)

    suppress_ms: ClassVar[int] = 30 * DAY_MS
    max_products: ClassVar[int] = 100
    #: purchase messageIds remembered against redelivery
    max_seen: ClassVar[int] = 50

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        seen: list[str] = list(state.get("seen", []))
        if event.message_id in seen:
            return Outcome(state)  # redelivered
        products = products_of(event.properties)[: self.max_products]
        if not products:
            return Outcome(state)
        until = event.ts + self.suppress_ms
        sup: dict[str, list[Any]] = {k: list(v) for k, v in state.get("sup", {}).items()}
        for pid in products:
            cur = sup.get(pid)
            # [until, messageId that set it, since]; a later until wins, ties by messageId
            if cur is None or (until, event.message_id) > (int(cur[0]), str(cur[1])):
                sup[pid] = [until, event.message_id, event.ts]
        context: JSONDict = {"products": products, "until": until, "days": self.suppress_ms // DAY_MS}
        order_id = _id(event.properties.get("order_id"))
        if order_id:
            context["order_id"] = order_id
        out = self._schedule({"sup": sup, "seen": [*seen, event.message_id][-self.max_seen :]})
        out.triggers = [TriggerSpec(key=event.message_id, time=event.ts, context=context)]
        return out

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        sup: dict[str, list[Any]] = {k: list(v) for k, v in state.get("sup", {}).items()}
        ended: dict[tuple[int, str], list[str]] = defaultdict(list)
        for pid, (until, mid, _since) in sup.items():
            if int(until) <= timer.due:
                ended[(int(until), str(mid))].append(pid)
        triggers = []
        for (until, mid), pids in sorted(ended.items()):
            for pid in pids:
                del sup[pid]
            triggers.append(
                TriggerSpec(
                    key=f"{mid}/lifted",
                    time=until,
                    context={"products": sorted(pids), "suppressed_since": until - self.suppress_ms},
                    name=LIFTED,
                )
            )
        out = self._schedule({**state, "sup": sup})
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        sup: dict[str, list[Any]] = {k: list(v) for k, v in absorbed.get("sup", {}).items()}
        for pid, cur in survivor.get("sup", {}).items():
            other = sup.get(pid)
            if other is None or (int(cur[0]), str(cur[1])) > (int(other[0]), str(other[1])):
                sup[pid] = list(cur)
        seen = list(dict.fromkeys(list(survivor.get("seen", [])) + list(absorbed.get("seen", []))))
        return {"sup": sup, "seen": seen[-self.max_seen :]}

    def _schedule(self, state: JSONDict) -> Outcome:
        sup = state.get("sup", {})
        if not sup:
            return Outcome(state, cancel_timers=["lift"])
        return Outcome(state, set_timers=[TimerSpec("lift", min(int(v[0]) for v in sup.values()))])

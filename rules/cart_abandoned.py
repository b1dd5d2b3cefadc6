"""Cart abandoned: ``Product Added`` or ``Checkout Started``, then no ``Order Completed`` for 30 minutes.

Same person on any channel (after identity resolution); one trigger per abandoned cart;
a purchase cancels it (README, "Built-in rules").

Event-time correct whatever the arrival order: the state keeps a short timeline of
cart activity and orders; the timer (due 30 minutes after the latest cart activity)
walks it once the clock has passed that point, when every earlier event has been seen.
A cart is the run of cart activity since the last order; it is abandoned at
``last activity + 30 min`` if no order and no further cart activity came by then.
The trigger key is the ``messageId`` that opened the cart.

State: ``{"tl": [{"ts", "kind", "id", "item"}, ...], "done": [messageId, ...]}``: a
:class:`~rules.kit.Timeline` (deduped by ``messageId``; ``kind`` ``c`` cart activity with
its ``item``, ``o`` an order, which sorts first at the same millisecond) and the keys of
the last reported carts. A state stored in the older positional shape (``[ts, kind,
messageId, item]``) is read as named entries.
"""

from __future__ import annotations

from typing import ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TriggerSpec
from rules.kit import Entry, Timeline, schedule
from streams.constants import DAY_MS, MINUTE_MS
from streams.model import Event, JSONDict

CART_EVENTS = frozenset({"Product Added", "Checkout Started"})
ORDER_EVENTS = frozenset({"Order Completed"})
_LEGACY = ("ts", "kind", "id", "item")


def _order(e: Entry) -> tuple[int, bool, str]:
    """Event time; at the same millisecond an order comes before cart activity."""
    return (int(e["ts"]), e["kind"] == "c", str(e["id"]))


def _timeline(state: JSONDict) -> Timeline:
    return Timeline(state.get("tl"), order=_order, legacy=_LEGACY)


def _item(event: Event) -> JSONDict:
    p = event.properties
    out: JSONDict = {}
    for k in ("product_id", "sku", "name", "price", "quantity", "category", "url", "image_url"):
        if k in p and isinstance(p[k], (str, int, float)):
            out[k] = p[k]
    return out


class CartAbandoned(Rule):
    name = "cart_abandoned"
    version = 1
    description = "Product Added / Checkout Started, then no Order Completed for 30 minutes"
    events = CART_EVENTS | ORDER_EVENTS
    purpose = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email", "push", "ads")

    abandon_ms: ClassVar[int] = 30 * MINUTE_MS
    #: how far back the timeline is kept (older entries cannot change any outcome)
    horizon_ms: ClassVar[int] = 2 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        tl = _timeline(state)
        if event.message_id in tl:
            return Outcome(state)  # redelivered
        if event.name in ORDER_EVENTS:
            tl.add_event(event, kind="o")
        else:
            item = _item(event)
            if event.name == "Checkout Started":
                value = event.properties.get("value") or event.properties.get("revenue")
                if isinstance(value, (int, float)):
                    item["checkout_value"] = value
                if isinstance(event.properties.get("currency"), str):
                    item["currency"] = event.properties["currency"]
            tl.add_event(event, kind="c", item=item)
        return self._schedule({**state, "tl": tl.dump()})

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        tl = _timeline(state).dump()
        done: list[str] = list(state.get("done", []))
        triggers: list[TriggerSpec] = []
        keep_from = 0
        cart: list[Entry] = []
        for i, e in enumerate(tl):
            if cart and e["ts"] > cart[-1]["ts"] + self.abandon_ms:
                # the previous cart went quiet for the full period before this entry
                if cart[-1]["ts"] + self.abandon_ms > timer.due:
                    break
                self._emit(cart, done, triggers)
                cart, keep_from = [], i
            if e["kind"] == "o":
                cart, keep_from = [], i + 1
            else:
                cart.append(e)
        else:
            if cart and cart[-1]["ts"] + self.abandon_ms <= timer.due:
                self._emit(cart, done, triggers)
                keep_from = len(tl)
        newest = tl[-1]["ts"] if tl else timer.due
        tl = [
            e
            for j, e in enumerate(tl)
            if j >= keep_from or (e["ts"] > newest - self.horizon_ms and e["kind"] == "o")
        ]
        return self._schedule({"tl": tl, "done": done[-20:]}, triggers)

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        tl = _timeline(survivor).merged(_timeline(absorbed))
        done = list(dict.fromkeys(list(survivor.get("done", [])) + list(absorbed.get("done", []))))
        return {"tl": tl.dump(), "done": done[-20:]}

    # ------------------------------------------------------------------ helpers
    def _emit(self, cart: list[Entry], done: list[str], triggers: list[TriggerSpec]) -> None:
        key = cart[0]["id"]
        if key in done:
            return
        done.append(key)
        items: dict[str, JSONDict] = {}
        checkout_value = None
        currency = None
        for e in cart:
            item = dict(e["item"])
            checkout_value = item.pop("checkout_value", checkout_value)
            currency = item.pop("currency", currency)
            pid = str(item.get("product_id") or item.get("sku") or item.get("name") or "")
            if pid:
                prev = items.get(pid)
                qty = item.get("quantity", 1)
                if prev is not None and isinstance(qty, (int, float)):
                    item["quantity"] = prev.get("quantity", 1) + qty
                items[pid] = item
        value = checkout_value
        if value is None:
            value = round(
                sum(
                    float(i.get("price", 0)) * float(i.get("quantity", 1))
                    for i in items.values()
                    if isinstance(i.get("price", 0), int | float)
                    and isinstance(i.get("quantity", 1), int | float)
                ),
                2,
            )
        context: JSONDict = {
            "items": list(items.values()),
            "value": value,
            "cart_opened_at": cart[0]["ts"],
            "last_activity_at": cart[-1]["ts"],
            "abandoned_after_minutes": self.abandon_ms // MINUTE_MS,
        }
        if currency:
            context["currency"] = currency
        triggers.append(TriggerSpec(key=key, time=cart[-1]["ts"] + self.abandon_ms, context=context))

    def _schedule(self, state: JSONDict, triggers: list[TriggerSpec] | None = None) -> Outcome:
        """Timer at the first point the timeline could become an abandoned cart, or none."""
        due = None
        cart_last = None
        for e in state.get("tl", []):
            if e["kind"] == "o":
                if cart_last is not None and e["ts"] > cart_last + self.abandon_ms:
                    due = cart_last + self.abandon_ms
                    break
                cart_last = None
            elif cart_last is not None and e["ts"] > cart_last + self.abandon_ms:
                due = cart_last + self.abandon_ms
                break
            else:
                cart_last = e["ts"]
        if due is None and cart_last is not None:
            due = cart_last + self.abandon_ms
        return schedule(state, "cart", due, triggers or ())

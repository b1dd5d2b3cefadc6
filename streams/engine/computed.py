"""Computed traits: per-profile facts derived from the events, kept in the decision stage.

What is stored (``ProfileState.computed``, a JSON object; every key optional):

=============  ==========================================================================
key            holds
=============  ==========================================================================
``orders``     number of ``Order Completed`` events
``rev``        their revenue in minor units (hundredths, an int): ``properties.total``, else
               ``properties.revenue`` (Segment e-commerce v2), in the events' own currency
``first``      event ms of the earliest order
``last``       event ms of the latest order
``act``        event ms of the latest activity (``track``, ``page``, ``screen``: the calls
               that count as activity for ``inactive_45d``, :mod:`rules.inactive_45d`)
``ch``         channel -> event ms of the latest event of any call on it
=============  ==========================================================================

Why these shapes: every field is a count, a sum or a min/max of per-event values, so
:func:`update` is commutative and :func:`merge` of two profiles' traits equals the traits of
one profile that saw both histories, in any order (a late event changes nothing but its own
contribution). Revenue is kept as an integer of hundredths so that sums are exact whatever
the order of addition (floats are not associative). Exactly once comes from the stage, not
from here: a repartition record already applied to a profile (``state.applied_offset``) is skipped and
duplicate ``messageId`` s are dropped at intake, so a replay recomputes the same values.

Derived at read time (:func:`view`), because they depend on "now": average order value,
days since the last activity, the channels used in the last 30 days, and the RFM score.

RFM (recency, frequency, monetary), each 1 (low) to 5 (high), from :class:`RfmBreakpoints`:
recency by days since the last order (<= 30: 5, <= 90: 4, <= 180: 3, <= 365: 2, older: 1),
frequency by the order count (>= 10: 5, >= 5: 4, >= 3: 3, >= 2: 2, 1: 1), monetary by the
revenue (>= 1000: 5, >= 500: 4, >= 200: 3, >= 50: 2, less: 1); ``score`` is the three digits
read as one number (``"545"``), the common notation. No order: no RFM (``None``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from streams.constants import DAY_MS
from streams.model import Event, JSONDict, dumps, loads

#: The order event of Segment's e-commerce v2 spec.
ORDER_EVENT = "Order Completed"
#: Calls that count as activity (as for ``inactive_45d``).
ACTIVITY_CALLS = frozenset({"track", "page", "screen"})
#: Channels kept per profile (the most recently used): bounds what a sender inventing channel
#: names can make a profile hold; real people use a handful.
MAX_CHANNELS = 32
#: "Channels used recently": within this many days of now.
RECENT_CHANNEL_DAYS = 30
#: Largest revenue of one order we add (hundredths): beyond it the value is taken as an error.
_MAX_ORDER_MINOR = 10**15


@dataclass(frozen=True, slots=True)
class RfmBreakpoints:
    """Thresholds of the RFM scores, each tuple from the score-2 bound up to the score-5 bound."""

    #: days since the last order at most these for scores 5, 4, 3, 2 (more: 1)
    recency_days: tuple[int, int, int, int] = (30, 90, 180, 365)
    #: orders at least these for scores 2, 3, 4, 5 (one order: 1)
    frequency: tuple[int, int, int, int] = (2, 3, 5, 10)
    #: revenue (major units) at least these for scores 2, 3, 4, 5 (less: 1)
    monetary: tuple[float, float, float, float] = (50, 200, 500, 1000)


DEFAULT_RFM = RfmBreakpoints()


def order_amount(properties: JSONDict) -> int:
    """An order's revenue in hundredths: ``total``, else ``revenue``; 0 if neither is a finite number >= 0."""
    for key in ("total", "revenue"):
        v = properties.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v) or v < 0:
            continue
        return min(round(v * 100), _MAX_ORDER_MINOR)
    return 0


def update(computed: JSONDict, event: Event) -> JSONDict:
    """The computed traits after one more event (a new dict; ``computed`` is not changed).

    Called by :meth:`streams.engine.runner.Engine.on_event` once per event applied to the
    profile, before the rules run. Pure; never raises on any event intake accepted.
    """
    out = dict(computed)
    ts = event.ts
    if event.channel:
        ch = dict(out.get("ch", {}))
        if ts > ch.get(event.channel, -1):
            ch[event.channel] = ts
            out["ch"] = _bounded(ch)
    if event.call in ACTIVITY_CALLS and ts > out.get("act", -1):
        out["act"] = ts
    if event.call == "track" and event.name == ORDER_EVENT:
        out["orders"] = int(out.get("orders", 0)) + 1
        out["rev"] = int(out.get("rev", 0)) + order_amount(event.properties)
        out["first"] = min(int(out.get("first", ts)), ts)
        out["last"] = max(int(out.get("last", ts)), ts)
    return out


def merge(a: JSONDict, b: JSONDict) -> JSONDict:
    """The computed traits of one person whose events were split over two profiles.

    Called by :meth:`streams.engine.runner.Engine.merge` when ``b``'s profile is absorbed.
    Commutative, and equal to :func:`update` over both histories (see the module docstring).
    """
    out: JSONDict = {}
    for key in ("orders", "rev"):
        if key in a or key in b:
            out[key] = int(a.get(key, 0)) + int(b.get(key, 0))
    for key, pick in (("first", min), ("last", max), ("act", max)):
        vals = [int(d[key]) for d in (a, b) if key in d]
        if vals:
            out[key] = pick(vals)
    if "ch" in a or "ch" in b:
        ch: dict[str, int] = dict(a.get("ch", {}))
        for name, ts in b.get("ch", {}).items():
            ch[name] = max(int(ts), ch.get(name, int(ts)))
        out["ch"] = _bounded(ch)
    return out


def _bounded(ch: dict[str, int]) -> dict[str, int]:
    if len(ch) <= MAX_CHANNELS:
        return ch
    keep = sorted(ch.items(), key=lambda x: (-x[1], x[0]))[:MAX_CHANNELS]
    return dict(keep)


def _score_up(value: float, bounds: tuple[float, float, float, float]) -> int:
    """1 + the number of bounds ``value`` reaches (bounds ascending)."""
    return 1 + sum(1 for b in bounds if value >= b)


def rfm(computed: JSONDict, now: int, breakpoints: RfmBreakpoints = DEFAULT_RFM) -> JSONDict | None:
    """The RFM scores as of ``now`` (ms), or ``None`` without an order. See the module docstring."""
    orders = int(computed.get("orders", 0))
    if orders <= 0 or "last" not in computed:
        return None
    days = max(0, now - int(computed["last"])) / DAY_MS
    r = 1 + sum(1 for b in breakpoints.recency_days if days <= b)
    f = _score_up(orders, breakpoints.frequency)
    m = _score_up(int(computed.get("rev", 0)) / 100, breakpoints.monetary)
    return {"recency": r, "frequency": f, "monetary": m, "score": f"{r}{f}{m}"}


def view(computed: JSONDict, now: int, breakpoints: RfmBreakpoints = DEFAULT_RFM) -> dict[str, Any]:
    """The computed traits as of ``now`` (ms), stored and derived: what the Profile API shows.

    Keys: ``orderCount``, ``revenue`` (major units), ``averageOrderValue``, ``firstOrder``,
    ``lastOrder``, ``lastActivity`` (ms or ``None``), ``daysSinceLastActivity``,
    ``channelsLast30Days`` (channel -> last ms, most recent first) and ``rfm``.
    """
    orders = int(computed.get("orders", 0))
    revenue = int(computed.get("rev", 0)) / 100
    act = computed.get("act")
    since = now - RECENT_CHANNEL_DAYS * DAY_MS
    recent = sorted(
        ((ch, int(ts)) for ch, ts in computed.get("ch", {}).items() if int(ts) > since),
        key=lambda x: (-x[1], x[0]),
    )
    return {
        "orderCount": orders,
        "revenue": revenue,
        "averageOrderValue": round(revenue / orders, 2) if orders else None,
        "firstOrder": computed.get("first"),
        "lastOrder": computed.get("last"),
        "lastActivity": act,
        "daysSinceLastActivity": max(0, (now - int(act)) // DAY_MS) if act is not None else None,
        "channelsLast30Days": dict(recent),
        "rfm": rfm(computed, now, breakpoints),
    }


class RuleView(Mapping[str, Any]):
    """``RuleContext.computed``: the stored traits as a rule sees them, a read-only deep copy
    made when a rule first reads it (no built-in rule does; a copy per event and per timer was
    ~2% of a worker's CPU, issue 13). :func:`update` and :func:`merge` make new dicts and
    never change the one given here, so the copy is the same whenever it is made."""

    __slots__ = ("_src", "_view")

    def __init__(self, src: JSONDict) -> None:
        self._src = src
        self._view: Mapping[str, Any] | None = None

    def _get(self) -> Mapping[str, Any]:
        if self._view is None:
            self._view = MappingProxyType(loads(dumps(self._src)))
        return self._view

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(dict(self._get()))

"""Program KPIs counted from the event stream, per event, in the decide stage: no scans.

Called by the decide stage for every event it applies to a profile (:func:`observe`, with the
profile's facts from before the event, :func:`facts`). It reads the profile's computed traits
(``ProfileState.computed``: channels, last activity, order count; :mod:`streams.engine.computed`)
and ``reach``, and only counts (``metrics.count``: added to the counters once per batch), so a
scrape costs nothing extra and the numbers add up over workers. What each counter answers
(PromQL ratios; the dashboard's "Does it work?" row shows them):

* ``cxstream_events_identified_total{by}``: ``event`` (the event itself names a known person),
  ``profile`` (the event is anonymous but its unified profile is known: what identity resolution
  adds), ``anonymous``. Share of events from known people: ``by!="anonymous"`` over all; the
  identity resolution rate (``cxstream_events_resolved_total``) is the same share.
* ``cxstream_profile_milestones_total{milestone}``: a profile became ``known``, reached a second
  channel (``cross_channel``: cross-channel reach), placed its ``first_purchase`` or its second
  order (``repeat_purchase``). Repeat-purchase rate: ``repeat_purchase / first_purchase`` over a
  range. Reached through an event; a merge that combines two one-channel profiles counts when the
  next event comes only if it crosses the line then (it already has).
* ``cxstream_customer_returns_total{gap}``: an activity of a known profile after a quiet spell,
  by its length: ``under_30d``, ``30d_to_90d``, ``over_90d``, and ``after_churn`` (past the
  ``[measurement] churn_days``, default 90: a churned customer won back). Retention trend: the
  share of returns within 30 days.

Levels (customers active in the last 30/90 days now, churned customers now, profiles with two or
more channels now) need every profile's last activity at one moment; ``cxstream report --kpi``
computes them exactly from the repartition topic instead (see :mod:`streams.measure.kpi_report`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.constants import ANONYMOUS_TYPES
from streams.frozen import fast_init
from streams.measure.config import DAY_MS
from streams.metrics import EVENTS_IDENTIFIED, MILESTONES, RETURNS, count
from streams.model import Event, JSONDict

#: channel names intake derives when the sender said none: not a channel the person used
NOT_CHANNELS = frozenset({"unknown", "server"})
ORDER_EVENT = "Order Completed"
ACTIVITY_CALLS = frozenset({"track", "page", "screen"})


@dataclass(frozen=True, slots=True, init=False)
class Facts:
    known: bool
    channels: int
    orders: int
    last_activity: int | None

    def __init__(self, known: bool, channels: int, orders: int, last_activity: int | None) -> None:
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "orders", orders)
        object.__setattr__(self, "last_activity", last_activity)


def known(types: Iterable[str]) -> bool:
    """Whether one of the identifier types ``types`` names a person (not only anonymous ones)."""
    return not ANONYMOUS_TYPES.issuperset(types)  # in C: ~4x a generator's any(), twice an event


def facts(reach: Iterable[str], computed: JSONDict) -> Facts:
    """What the KPIs compare before and after an event."""
    ch = computed.get("ch", {})
    act = computed.get("act")
    return Facts(
        known(reach),
        len(ch.keys() - NOT_CHANNELS) if isinstance(ch, dict) else 0,
        int(computed.get("orders", 0)),
        int(act) if isinstance(act, int) else None,
    )


def observe(before: Facts, after: Facts, event: Event, churn_days: float = 90) -> None:
    """Count one event applied to a profile whose facts went from ``before`` to ``after``."""
    if known(i.type for i in event.identifiers):
        count(EVENTS_IDENTIFIED, "event")
    else:
        count(EVENTS_IDENTIFIED, "profile" if after.known else "anonymous")
    if after.known and not before.known:
        count(MILESTONES, "known")
    if after.channels >= 2 > before.channels:
        count(MILESTONES, "cross_channel")
    if after.orders >= 1 > before.orders:
        count(MILESTONES, "first_purchase")
    if after.orders >= 2 > before.orders:
        count(MILESTONES, "repeat_purchase")
    if after.known and event.call in ACTIVITY_CALLS and before.last_activity is not None:
        gap = event.ts - before.last_activity
        if gap > churn_days * DAY_MS:
            count(RETURNS, "after_churn")
        if gap > 90 * DAY_MS:
            count(RETURNS, "over_90d")
        elif gap > 30 * DAY_MS:
            count(RETURNS, "30d_to_90d")
        elif gap > 0:
            count(RETURNS, "under_30d")


# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(Facts)

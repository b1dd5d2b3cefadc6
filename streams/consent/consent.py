"""Consent as data: per-purpose history in event-time order, read as of a moment.

Each purpose keeps a short history ``[granted, ts, source]`` sorted by event time, so a
decision at event time ``t`` reads the statement in force *at t*, even when events
arrive out of order.
"""

from __future__ import annotations

from bisect import insort
from typing import Literal

from streams.engine.state import ConsentEntry, ProfileState
from streams.model import ConsentSignal

#: Entries kept per purpose; older ones fall off (the newest state is always kept).
HISTORY = 20


def apply_signal(state: ProfileState, signal: ConsentSignal) -> None:
    hist = state.consent.setdefault(signal.purpose, [])
    entry: ConsentEntry = [signal.granted, signal.ts, signal.source]
    if entry in hist:
        return
    insort(hist, entry, key=lambda e: e[1])
    del hist[:-HISTORY]


def consent_at(state: ProfileState, purpose: str, t: int) -> ConsentEntry | None:
    """The statement about ``purpose`` in force at event time ``t``, or ``None`` if there is none."""
    found: ConsentEntry | None = None
    for e in state.consent.get(purpose, ()):
        if int(e[1]) <= t:
            found = e
        else:
            break
    return found


def merge_consent(
    survivor: ProfileState,
    absorbed: ProfileState,
    at: int,
    how: Literal["most_restrictive", "latest"],
) -> None:
    """Fold the absorbed profile's consent into the survivor's."""
    for purpose in sorted(set(survivor.consent) | set(absorbed.consent)):
        a_now = consent_at(survivor, purpose, at)
        b_now = consent_at(absorbed, purpose, at)
        hist = sorted(
            {tuple(e) for e in survivor.consent.get(purpose, []) + absorbed.consent.get(purpose, [])},
            key=lambda e: (e[1], e[2], e[0]),
        )
        survivor.consent[purpose] = [list(e) for e in hist][-HISTORY:]
        if how == "most_restrictive" and a_now is not None and b_now is not None:
            granted = bool(a_now[0]) and bool(b_now[0])
            entry: ConsentEntry = [granted, at, "merge"]
            survivor.consent[purpose].append(entry)
            survivor.consent[purpose].sort(key=lambda e: e[1])
        elif how == "most_restrictive" and (a_now is None) != (b_now is None):
            known = a_now or b_now
            assert known is not None
            survivor.consent[purpose].append([bool(known[0]), at, "merge"])
            survivor.consent[purpose].sort(key=lambda e: e[1])

"""Consent and zero-party preferences as data, kept in event-time order, read as of a moment.

Consent: each purpose keeps a short history ``[granted, ts, source]`` sorted by event time,
so a decision at event time ``t`` reads the statement in force *at t* (:func:`consent_at`),
even when events arrive out of order. Statements come from every consent form intake
understands (Segment ``categoryPreferences``, the ``Segment Consent Preference Updated``
event, RudderStack ``consentManagement``), all as :class:`~streams.model.ConsentSignal`.

Preferences: the channels and topics a customer chose, from the traits
``preferred_channels`` and ``topics`` (lists of names; ``null`` withdraws the choice),
each kept with the event time of the statement so an older statement never overrides a
newer one.

Merges (:func:`merge_consent`), by the policy's ``consent_merge``:

* ``most_restrictive`` (default): the merged history answers, for every moment up to the
  merge, what the two people's statements *together* allow: a denial on either side wins,
  a grant on one side and nothing on the other is a grant, nothing on both is nothing (the
  region's regime decides). Statements made after the merge are the one person's, and the
  latest wins, as for any profile.
* ``latest``: both histories interleaved; the latest statement from either side wins.

Either way, at equal event times a denial wins.
"""

from __future__ import annotations

from bisect import insort
from typing import Literal

from streams.intake.consent import snake
from streams.model import ConsentSignal, JSONDict
from streams.state import ConsentEntry, ProfileState

#: Entries kept per purpose; older ones fall off (the newest state is always kept). 20 is
#: years of real changes of mind; a longer history only matters for very late events.
HISTORY = 20

#: Zero-party preferences: key in ``ProfileState.prefs`` -> the trait that states it.
PREFERENCE_TRAITS: dict[str, str] = {"channels": "preferred_channels", "topics": "topics"}


def apply_signal(state: ProfileState, signal: ConsentSignal) -> None:
    """Record one consent statement in its place in event time."""
    hist = state.consent.setdefault(signal.purpose, [])
    entry: ConsentEntry = [signal.granted, signal.ts, signal.source]
    if entry in hist:
        return
    insort(hist, entry, key=lambda e: int(e[1]))
    del hist[:-HISTORY]


def _at(hist: list[ConsentEntry], t: int) -> ConsentEntry | None:
    found: ConsentEntry | None = None
    for e in hist:
        if int(e[1]) <= t:
            found = e
        else:
            break
    return found


def consent_at(state: ProfileState, purpose: str, t: int) -> ConsentEntry | None:
    """The statement about ``purpose`` in force at event time ``t``, or ``None`` if there is none."""
    return _at(state.consent.get(purpose, []), t)


def _most_restrictive(a: list[ConsentEntry], b: list[ConsentEntry]) -> list[ConsentEntry]:
    """One history that reads, at every moment, as the two read together (a denial wins)."""
    out: list[ConsentEntry] = []
    for tau in sorted({int(e[1]) for e in a} | {int(e[1]) for e in b}):
        known = [e for e in (_at(a, tau), _at(b, tau)) if e is not None]
        pick = [e for e in known if not e[0]] or known
        winner = max(pick, key=lambda e: int(e[1]))
        if out and (out[-1] == winner or (out[-1][0] == winner[0] and int(winner[1]) < int(out[-1][1]))):
            continue  # same answer as before: the entry in force already says it
        # A new answer at tau is always caused by a statement made at tau, so ``winner`` is
        # that statement and the history stays in event-time order.
        out.append(list(winner))
    return out


def merge_consent(
    survivor: ProfileState,
    absorbed: ProfileState,
    how: Literal["most_restrictive", "latest"],
) -> None:
    """Fold the absorbed profile's consent into the survivor's (see the module docstring)."""
    for purpose in sorted(set(survivor.consent) | set(absorbed.consent)):
        a = survivor.consent.get(purpose, [])
        b = absorbed.consent.get(purpose, [])
        if how == "most_restrictive":
            hist = _most_restrictive(a, b)
        else:
            # a denial sorts after a grant of the same ms, so it is the one in force
            uniq = {(bool(e[0]), int(e[1]), str(e[2])): None for e in a + b}
            hist = [list(e) for e in sorted(uniq, key=lambda e: (e[1], e[0] is False))]
        survivor.consent[purpose] = hist[-HISTORY:]


def _names(value: object) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return sorted({snake(v) for v in value if snake(v)})


def apply_preferences(state: ProfileState, traits: JSONDict, ts: int) -> None:
    """Record the channels and topics a customer chose (zero-party data), if ``traits`` states them.

    A list of names is the choice (an empty list: none); ``null`` withdraws it (no restriction).
    Anything else is not a choice we can read and is left alone. A statement older than the
    one kept is ignored.
    """
    for key, trait in PREFERENCE_TRAITS.items():
        if trait not in traits:
            continue
        raw = traits[trait]
        chosen = _names(raw)
        if chosen is None and raw is not None:
            continue
        at: dict[str, int] = state.prefs.setdefault("at", {})
        if ts < at.get(key, ts):
            continue
        at[key] = ts
        if chosen is None:
            state.prefs.pop(key, None)
        else:
            state.prefs[key] = chosen


def merge_preferences(survivor: ProfileState, absorbed: ProfileState) -> None:
    """Per preference, the more recent statement of the two profiles wins (the survivor's on a tie)."""
    s_at: dict[str, int] = survivor.prefs.setdefault("at", {})
    a_at: dict[str, int] = absorbed.prefs.get("at", {})
    for key in PREFERENCE_TRAITS:
        if key not in a_at or (key in s_at and s_at[key] >= a_at[key]):
            continue
        s_at[key] = a_at[key]
        if key in absorbed.prefs:
            survivor.prefs[key] = absorbed.prefs[key]
        else:
            survivor.prefs.pop(key, None)
    if not s_at:
        del survivor.prefs["at"]


def chosen(state: ProfileState, key: str) -> list[str] | None:
    """The channels (``key="channels"``) or topics the customer chose, or ``None`` if they chose none."""
    v = state.prefs.get(key)
    return [str(x) for x in v] if isinstance(v, list) else None

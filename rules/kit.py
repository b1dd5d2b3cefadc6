"""The building blocks a rule repeats: a timeline, counts in a window, cooldowns, lateness, merges.

Every piece is plain data in, plain data out: it is built from the rule's stored state
(a JSON object) at the start of a call and written back with ``dump()`` into the
:class:`~rules.base.Outcome`. Nothing here keeps anything between calls, reads a clock or
does I/O. What raising does is what it does anywhere in a rule (see :mod:`rules.base`):
the call costs the rule that one event, timer or merge, and its state stays as it was.
The helpers themselves raise only on state that is not theirs (``TypeError`` /
``KeyError`` / ``ValueError`` from a value that is not what they wrote).

* :class:`Timeline`: events as named entries (``{"ts": ms, "id": messageId, ...}``),
  deduped by ``messageId``, kept sorted by event time, pruned, merged. Stored state of
  the older, positional shape (``[ts, messageId, ...]``) is read as named entries
  (``legacy=`` names the positions), so a state already in Redis is not lost.
* :func:`in_window`, :func:`count_in_window`: "N events within D".
* :class:`Cooldown`: at most one trigger per key (a product, a configuration, an
  application) per period. The engine's ``Rule.cooldown_ms`` is per rule: one product's
  trigger would silence every other product's, so per-key cooldowns live here.
* :class:`Decided`: the one policy for late events. A rule that decides in ``on_timer``
  (the clock passed a point, every earlier event was seen) records *up to when* it
  decided. An outcome at or before that mark is final: a late event (at or before it) is
  kept and counts for every point after the mark, it never revises or repeats a decided
  point. A merge takes the earlier mark of the two profiles, so the absorbed profile's
  pending points are still decided (at their own event times), and the cooldown and
  trigger keys keep an already reported point from being reported twice.
* :func:`schedule`: set the rule's one timer at the earliest pending point, or cancel it.

Merges cannot set timers (:meth:`Rule.merge` returns a state only), but the absorbed
profile's timers follow the survivor (the earlier wins a name clash): a rule that keeps
one timer at "the earliest pending point" of its timeline stays correct after a merge,
since the merged timeline's earliest point is one of the two timers' points or earlier.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from rules.base import Outcome, TimerSpec, TriggerSpec
from streams.model import Event, JSONDict

#: One timeline entry: ``{"ts": event ms, "id": messageId, ...fields of the rule}``.
Entry = JSONDict
#: Triggers a call produced (any sequence; :func:`schedule` makes it the Outcome's list).
Triggers = Sequence[TriggerSpec]
#: The order of entries: event time, then messageId (a total order: replays sort alike).
Order = Callable[[Entry], Any]


def by_time(entry: Entry) -> tuple[int, str]:
    """The default order: event time, then ``messageId``."""
    return (int(entry["ts"]), str(entry["id"]))


def named(raw: Any, legacy: Sequence[str]) -> Entry:
    """An entry as a dict: a stored positional list ``[ts, id, ...]`` is named by ``legacy``.

    Called on read, for every stored entry: the migration from the positional shape. A
    list longer than ``legacy`` keeps only the named positions; a shorter one the ones it has.
    """
    if isinstance(raw, dict):
        return raw  # the rule's state is its own copy already (see rules.base): no second copy
    if isinstance(raw, list | tuple):
        return dict(zip(legacy, raw, strict=False))
    raise TypeError(f"a timeline entry is a dict or a list, got {type(raw).__name__}")


class Timeline:
    """A profile's (or one key's) events, sorted, deduped by ``messageId``.

    ``Timeline(state.get("tl"))`` at the start of a call, ``timeline.dump()`` into the new
    state at the end. ``order`` sorts entries (default :func:`by_time`; give one when
    entries at the same millisecond must come in a set order, e.g. an order before a cart
    event). ``legacy`` names the positions of entries stored as lists (older states).
    """

    __slots__ = ("_ids", "entries", "order")

    def __init__(
        self,
        raw: Iterable[Any] | None = None,
        *,
        order: Order = by_time,
        legacy: Sequence[str] = ("ts", "id"),
    ) -> None:
        self.order = order
        self.entries: list[Entry] = [named(e, legacy) for e in raw or ()]
        keys = [order(e) for e in self.entries]
        if any(keys[i] > keys[i + 1] for i in range(len(keys) - 1)):  # stored sorted: nothing to do
            self.entries = [e for _, e in sorted(zip(keys, self.entries, strict=True), key=lambda p: p[0])]
        self._ids = {str(e["id"]) for e in self.entries}

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, ts: int, message_id: str, **fields: Any) -> bool:
        """Insert an entry in order. False (and nothing added) when ``message_id`` is already in:
        the same event delivered twice counts once."""
        if message_id in self._ids:
            return False
        entry: Entry = {"ts": ts, "id": message_id, **fields}
        key = self.order(entry)
        i = len(self.entries)
        while i and self.order(self.entries[i - 1]) > key:  # late events are rare: walk from the end
            i -= 1
        self.entries.insert(i, entry)
        self._ids.add(message_id)
        return True

    def add_event(self, event: Event, **fields: Any) -> bool:
        """:meth:`add` for an event: its time and ``messageId``."""
        return self.add(event.ts, event.message_id, **fields)

    @property
    def newest(self) -> int | None:
        """The latest event time, or None when empty."""
        return max((int(e["ts"]) for e in self.entries), default=None)

    def prune(self, older_than: int | None) -> None:
        """Drop entries at or before ``older_than`` (None: keep all). Their ids are forgotten
        too: a rule prunes only what no pending outcome can use (a :class:`Decided` mark
        minus the window), so a redelivery of a pruned event changes nothing either."""
        if older_than is None:
            return
        self.keep(lambda e: int(e["ts"]) > older_than)

    def keep(self, predicate: Callable[[Entry], bool]) -> None:
        """Keep only the entries ``predicate`` accepts."""
        self.entries = [e for e in self.entries if predicate(e)]
        self._ids = {str(e["id"]) for e in self.entries}

    def last(self, n: int) -> None:
        """Keep only the ``n`` latest entries (a bound on the state's size)."""
        if len(self.entries) > n:
            self.entries = self.entries[-n:]
            self._ids = {str(e["id"]) for e in self.entries}

    def between(self, start: int, end: int) -> list[Entry]:
        """Entries with ``start <= ts < end``, in order."""
        return [e for e in self.entries if start <= int(e["ts"]) < end]

    def merged(self, other: Timeline) -> Timeline:
        """Both timelines as one (for :meth:`Rule.merge`): each ``messageId`` once, in order.

        When both hold an entry of the same id (one event seen by both profiles), this one's wins."""
        out = Timeline(order=self.order)
        out.entries = sorted(
            [*self.entries, *(e for e in other.entries if str(e["id"]) not in self._ids)], key=self.order
        )
        out._ids = self._ids | other._ids
        return out

    def dump(self) -> list[Entry]:
        """The entries, for the rule's new state (the entry dicts themselves: the engine copies
        what the rule returns)."""
        return list(self.entries)


def in_window(entries: Iterable[Entry], end: int, span_ms: int) -> list[Entry]:
    """The entries in the window of ``span_ms`` ending at ``end`` (inclusive): ``end - span < ts <= end``."""
    return [e for e in entries if end - span_ms < int(e["ts"]) <= end]


def count_in_window(entries: Iterable[Entry], end: int, span_ms: int) -> int:
    """How many entries :func:`in_window` holds."""
    return len(in_window(entries, end, span_ms))


class Cooldown:
    """At most one trigger per key per ``span_ms``: key -> the event times it fired at.

    ``blocks`` looks both ways (a fire less than ``span_ms`` before *or after*), so a late
    event cannot add a second trigger inside the period of one already reported. Stored as
    ``{key: [ms, ...]}``.
    """

    __slots__ = ("fired", "span_ms")

    def __init__(self, span_ms: int, raw: Mapping[str, Iterable[int]] | None = None) -> None:
        self.span_ms = span_ms
        self.fired: dict[str, list[int]] = {str(k): sorted(int(t) for t in v) for k, v in (raw or {}).items()}

    def blocks(self, key: str, ts: int) -> bool:
        """Whether a trigger for ``key`` at ``ts`` falls in the period of an earlier (or later) one."""
        return any(abs(ts - f) < self.span_ms for f in self.fired.get(key, ()))

    def note(self, key: str, ts: int) -> None:
        """Record a trigger for ``key`` at ``ts``."""
        self.fired[key] = sorted({*self.fired.get(key, ()), ts})

    def prune(self, older_than: int | None) -> None:
        """Forget fires that can no longer block anything after ``older_than`` (None: keep all)."""
        if older_than is None:
            return
        cut = older_than - self.span_ms
        self.fired = {k: kept for k, v in self.fired.items() if (kept := [f for f in v if f > cut])}

    def merged(self, other: Cooldown) -> Cooldown:
        """Both profiles' fires (for a merge)."""
        out = Cooldown(self.span_ms, self.fired)
        for k, v in other.fired.items():
            out.fired[k] = sorted({*out.fired.get(k, ()), *v})
        return out

    def dump(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.fired.items()}


class Decided:
    """Up to when the rule has decided: the one policy for late events (see the module docstring).

    ``at`` is None until the first decision. Stored as an int (or left out).
    """

    __slots__ = ("at",)

    def __init__(self, at: int | None = None) -> None:
        self.at = None if at is None else int(at)

    def is_open(self, point: int) -> bool:
        """Whether the outcome at ``point`` is still to be decided (after the mark)."""
        return self.at is None or point > self.at

    def is_late(self, ts: int) -> bool:
        """Whether an event at ``ts`` arrives after the rule decided past it."""
        return self.at is not None and ts <= self.at

    def earliest_open(self, points: Iterable[int]) -> int | None:
        """The earliest of ``points`` still open (where the rule's timer goes), or None."""
        return min((p for p in points if self.is_open(p)), default=None)

    def advance(self, to: int) -> None:
        """Everything up to ``to`` is decided (called in ``on_timer`` with ``timer.due``)."""
        self.at = to if self.at is None else max(self.at, to)

    def merged(self, other: Decided) -> Decided:
        """The earlier mark of the two (None when either never decided): nothing pending is lost."""
        if self.at is None or other.at is None:
            return Decided(None)
        return Decided(min(self.at, other.at))


def schedule(state: JSONDict, name: str, due: int | None, triggers: Triggers = ()) -> Outcome:
    """``Outcome(state, triggers)`` with the rule's timer ``name`` set at ``due``, or cancelled when None."""
    if due is None:
        return Outcome(state, list(triggers), cancel_timers=[name])
    return Outcome(state, list(triggers), set_timers=[TimerSpec(name, due)])


def text(value: Any) -> str | None:
    """A property as an identifier: a non-empty str, or an int as str; anything else None."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        return None
    return str(value)


def first_text(properties: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` that :func:`text` accepts (``product_id``, else ``sku``)."""
    for n in names:
        found = text(properties.get(n))
        if found is not None:
            return found
    return None


__all__ = [
    "Cooldown",
    "Decided",
    "Entry",
    "Timeline",
    "Triggers",
    "by_time",
    "count_in_window",
    "first_text",
    "in_window",
    "named",
    "schedule",
    "text",
]

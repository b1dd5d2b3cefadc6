"""Real-time segments declared as data: "N events of these kinds within D days".

One rule (``segments``) evaluates every segment definition for a profile. A definition
is data (:class:`SegmentDef`): a name, the track event names it counts, a threshold and a
window in days, e.g. ``frequent_buyer``: 3 ``Order Completed`` in 90 days. The built-in
set is :data:`DEFAULT_SEGMENTS`; ``CXSTREAM_SEGMENTS_FILE`` names a TOML file that adds
definitions or replaces built-ins of the same name (``deploy/segments.example.toml``)::

    include_defaults = true      # false: only the file's segments

    [[segments]]
    name = "frequent_buyer"
    events = ["Order Completed"]
    threshold = 3
    window_days = 90

Triggers (``TriggerSpec.name`` overrides the trigger type):

* ``cx.trigger.segment_entered`` when the count in the window reaches the threshold,
  at the time of the event that reached it (key ``<segment>/<messageId>``);
* ``cx.trigger.segment_exited`` when the window slides past the oldest counted event
  and the count drops below it, at that moment (``ts + window``; key
  ``<segment>/<messageId of the event that left>/exit``).

Context: ``{segment, count, threshold, window_days}``. The channels are on-site (``web``,
``app``) under ``personalization``: a segment changes what the site shows; a campaign
that needs another channel is a rule of its own.

Event-time correct whatever the arrival order: each segment keeps its counted events and
the point up to which membership was reported (``at``). Membership at time t is "at least
N counted events in (t - window, t]"; it only changes at an event's time or at its time
plus the window, and the timer, due at the next such point, reports the changes up to
the clock in order. An event at or before ``at`` (late) cannot rewrite what was reported:
it is counted from then on, and if the membership at ``at`` now differs from what was
reported, the difference is reported at ``at`` (key ``<segment>/<entered|exited>@<ms>``)
by the timer, due at once. A merge is reconciled the same way, but only at the profile's
next timer or counted event: :meth:`Rule.merge` cannot set a timer.

State, per segment: ``{"events": [{"ts", "id"}, ...], "decided": ms, "in": true,
"recheck": true}``: a :class:`~rules.kit.Timeline` of the counted events (deduped by
``messageId``), the :class:`~rules.kit.Decided` mark (membership was reported up to it),
whether the profile is in (``in`` keeps its name: the Profile API reads it), and whether a
late event or a merge changed the counts before the mark. A state stored in the older shape
(``{"ev": [[ts, messageId], ...], "at", "in", "dirty"}``) is read as the new one.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TriggerSpec
from rules.kit import Decided, Timeline, in_window, schedule
from streams.constants import DAY_MS
from streams.exceptions import ConfigError
from streams.model import Event, JSONDict

if TYPE_CHECKING:
    from streams.settings import Settings

ENTERED = "segment_entered"
EXITED = "segment_exited"


@dataclass(frozen=True, slots=True)
class SegmentDef:
    """A segment: at least ``threshold`` of the ``events`` within ``window_days``."""

    name: str
    events: frozenset[str]
    threshold: int
    window_days: int

    @property
    def window_ms(self) -> int:
        return self.window_days * DAY_MS


DEFAULT_SEGMENTS: tuple[SegmentDef, ...] = (
    SegmentDef("frequent_buyer", frozenset({"Order Completed"}), 3, 90),
    SegmentDef("engaged_browser", frozenset({"Product Viewed"}), 10, 7),
    SegmentDef("vehicle_researcher", frozenset({"Configuration Viewed", "Test Drive Requested"}), 5, 30),
)

_FIELDS = frozenset({"name", "events", "threshold", "window_days"})


def _segment(path: Path, i: int, raw: Any) -> SegmentDef:
    where = f"segments file {path}: [[segments]] #{i + 1}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"{where}: name must be letters, digits, '_' or '-', got {name!r}")
    where = f"{where} ({name})"
    extra = sorted(set(raw) - _FIELDS)
    if extra:
        raise ConfigError(f"{where}: unknown key {extra[0]!r}; expected {', '.join(sorted(_FIELDS))}")
    events = raw.get("events")
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events or not all(isinstance(e, str) and e for e in events):
        raise ConfigError(f"{where}: events must be a non-empty list of event names, got {events!r}")
    for key in ("threshold", "window_days"):
        v = raw.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {v!r}")
    return SegmentDef(name, frozenset(events), raw["threshold"], raw["window_days"])


def load_segments(path: Path | None) -> tuple[SegmentDef, ...]:
    """The built-in segments, plus (or replaced by) those of the TOML file at ``path``."""
    if path is None:
        return DEFAULT_SEGMENTS
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"segments file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"segments file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"include_defaults", "segments"})
    if unknown:
        raise ConfigError(
            f"segments file {path}: unknown key {unknown[0]!r}; expected include_defaults, segments"
        )
    include = doc.get("include_defaults", True)
    if not isinstance(include, bool):
        raise ConfigError(f"segments file {path}: include_defaults must be true or false, got {include!r}")
    raw = doc.get("segments", [])
    if not isinstance(raw, list):
        raise ConfigError(f"segments file {path}: segments must be an array of tables ([[segments]])")
    mine = [_segment(path, i, r) for i, r in enumerate(raw)]
    names = [s.name for s in mine]
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(f"segments file {path}: segment {n!r} is defined twice")
    base = [s for s in DEFAULT_SEGMENTS if s.name not in names] if include else []
    return (*base, *mine)


class SegmentRule(Rule):
    name = "segments"
    version = 1
    description = "Real-time segments from data: N events within D days -> segment_entered / segment_exited"
    purpose = "personalization"
    channels: ClassVar[tuple[str, ...]] = ("web", "app")

    #: counted events kept per segment (the newest); a segment of "500 page views" would need more
    max_events: ClassVar[int] = 500

    def __init__(self, definitions: Iterable[SegmentDef] | None = None) -> None:
        self.definitions: tuple[SegmentDef, ...] = (
            DEFAULT_SEGMENTS if definitions is None else tuple(definitions)
        )
        self._names = frozenset(n for d in self.definitions for n in d.events)

    @classmethod
    def from_settings(cls, settings: Settings) -> SegmentRule:
        """How the registry builds it: the definitions of ``segments_file`` (or the built-ins)."""
        return cls(load_segments(settings.segments_file))

    def wants(self, event: Event) -> bool:
        return event.call == "track" and event.name in self._names

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        segs = self._segments(state)
        for d in self.definitions:
            if event.name not in d.events:
                continue
            seg = dict(segs.get(d.name, {}))
            events = Timeline(seg.get("events"))
            decided = Decided(seg.get("decided"))
            if event.message_id in events:
                continue  # redelivered
            if decided.is_late(event.ts + d.window_ms):
                continue  # it left the window before the reported point: changes nothing
            events.add_event(event)
            events.last(self.max_events)
            seg["events"] = events.dump()
            if decided.is_late(event.ts):
                seg["recheck"] = True  # late: reconcile at the next timer (due at once)
            segs[d.name] = seg
        return self._schedule(segs)

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        segs = self._segments(state)
        triggers: list[TriggerSpec] = []
        for d in self.definitions:
            if d.name in segs:
                segs[d.name] = self._advance(d, segs[d.name], timer.due, triggers)
        return self._schedule(segs, sorted(triggers, key=lambda t: (t.time, t.key)))

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        mine, theirs = self._segments(survivor, known_only=False), self._segments(absorbed, known_only=False)
        out: JSONDict = {}
        for name in sorted(set(mine) | set(theirs)):
            s, a = mine.get(name, {}), theirs.get(name, {})
            events = Timeline(s.get("events")).merged(Timeline(a.get("events")))
            events.last(self.max_events)
            seg: JSONDict = {"events": events.dump(), "in": bool(s.get("in", False))}
            marks = [x for x in (s.get("decided"), a.get("decided")) if x is not None]
            if marks:
                seg["decided"] = max(marks)
                seg["recheck"] = True
            out[name] = seg
        return out

    # ------------------------------------------------------------------ helpers
    def _segments(self, state: JSONDict, known_only: bool = True) -> dict[str, JSONDict]:
        """The state of the configured segments (a segment no longer configured is dropped),
        each in the named shape (one stored in the older shape is read as it)."""
        known = {d.name for d in self.definitions}
        return {k: _named(v) for k, v in state.items() if k in known or not known_only}

    def _advance(self, d: SegmentDef, seg: JSONDict, upto: int, triggers: list[TriggerSpec]) -> JSONDict:
        """Report the membership changes of one segment up to ``upto`` and prune what can no longer matter."""
        events: list[JSONDict] = seg.get("events", [])
        at: int | None = seg.get("decided")
        member = bool(seg.get("in", False))
        w, n = d.window_ms, d.threshold
        if seg.get("recheck") and at is not None:
            # a late event or a merge changed the counts before the reported point: first make the
            # reported membership true at that point (it is behind the clock), then walk on from it
            count = len(in_window(events, at, w))
            if (count >= n) != member:
                member = not member
                label, kind = ("entered", ENTERED) if member else ("exited", EXITED)
                triggers.append(self._spec(d, f"{d.name}/{label}@{at}", at, count, kind))
        # change points after the reported point: +1 at an event's time, -1 at its time + window
        points: dict[int, list[tuple[int, str]]] = {}
        for e in events:
            ts, mid = int(e["ts"]), str(e["id"])
            for t, delta in ((ts, 1), (ts + w, -1)):
                if (at is None or t > at) and t <= upto:
                    points.setdefault(t, []).append((delta, mid))
        for t in sorted(points):
            count = len(in_window(events, t, w))
            if (count >= n) == member:
                continue
            member = not member
            # membership rises only at an event's time and falls only when one leaves the window
            if member:
                mid = max(m for delta, m in points[t] if delta == 1)
                triggers.append(self._spec(d, f"{d.name}/{mid}", t, count, ENTERED))
            else:
                left = max(m for delta, m in points[t] if delta == -1)
                triggers.append(self._spec(d, f"{d.name}/{left}/exit", t, count, EXITED))
        decided = Decided(at)
        decided.advance(upto)
        out: JSONDict = {"events": [e for e in events if int(e["ts"]) + w > int(decided.at or upto)]}
        out["decided"] = decided.at
        if member:
            out["in"] = True
        return out

    def _spec(self, d: SegmentDef, key: str, t: int, count: int, kind: str) -> TriggerSpec:
        return TriggerSpec(
            key=key,
            time=t,
            context={
                "segment": d.name,
                "count": count,
                "threshold": d.threshold,
                "window_days": d.window_days,
            },
            name=kind,
        )

    def _schedule(self, segs: dict[str, JSONDict], triggers: list[TriggerSpec] | None = None) -> Outcome:
        """Timer at the next point where a segment's membership could change, or none."""
        due: int | None = None
        defs = {d.name: d for d in self.definitions}
        for name, seg in segs.items():
            at = seg.get("decided")
            cands = [int(at)] if seg.get("recheck") and at is not None else []
            w = defs[name].window_ms
            points = (t for e in seg.get("events", []) for t in (int(e["ts"]), int(e["ts"]) + w))
            cands += [t for t in points if at is None or t > at]
            if cands:
                due = min(cands) if due is None else min(due, *cands)
        state: JSONDict = {k: v for k, v in segs.items() if v.get("events") or v.get("in")}
        return schedule(state, "window", due, triggers or ())


def _named(seg: JSONDict) -> JSONDict:
    """A segment's state in the named shape; the older one (`ev`, `at`, `in`, `dirty`) is converted."""
    if "ev" not in seg and "at" not in seg and "dirty" not in seg:
        return dict(seg)
    out: JSONDict = {"events": Timeline(seg.get("ev")).dump()}
    for old, new in (("at", "decided"), ("in", "in"), ("dirty", "recheck")):
        if seg.get(old) is not None:
            out[new] = seg[old]
    return out

"""Test drive silence: a test drive, then 182 days (six months) without any activity.

Automotive (domain notes): someone who drove the car and then went quiet for six months
deserves a retention touch (an email, a call from the dealer), not another top-of-funnel
ad, so the channels are ``email`` and ``call_center`` only. The test drive is a
``Test Drive Completed``, or a ``Test Drive Requested`` that no completion followed (the
latest test-drive event is the one that counts). Any activity (track/page/screen, any
channel) restarts the six months; a purchase (``Order Completed`` or ``Vehicle
Purchased``) cancels. One trigger per test drive; its key is the test drive's ``messageId``.

How it stays event-time correct: the state is a timeline of marks (``t`` test drive,
``p`` purchase, ``a`` other activity) and a *head*, the outcome of walking the part of
the timeline that is settled. The walk, in event-time order, keeps the pending test
drive (the anchor) and the latest activity; a gap of more than 182 days after the latest
activity while a test drive is pending is a silent spell. The timer, due at the end of
the first possible spell, walks the timeline once the clock has passed that point (every
earlier event seen) and folds what it walked into the head.

The timeline stays small without changing any outcome:

* an activity whose neighbours are at most 182 days apart is dropped (no spell can open
  there, not even around a late event inserted between them);
* a test drive followed by a later one with no possible spell between is just activity;
* a purchase followed within 182 days by another is just activity;
* a prefix with no pending test drive, older than two years before the newest event, is
  folded into the head (compacted, the timeline has about two entries per 182 days).

An event at or before the folded point (late) is applied to the head directly: it moves
the latest activity, a purchase cancels a pending test drive it follows, a test drive
newer than the last purchase or reported test drive becomes the pending one.

State: ``{"tl": [{"ts", "kind", "id", "info"}, ...], "head": {"anchor": {"ts", "id",
"info"}, "last", "cut"}, "decided": ms, "done": [messageId, ...]}`` (``decided``: the folded
point). A state stored in the older shape (entries and the anchor as positional lists, the
folded point as ``set``) is read as the new one (:func:`rules.kit.named`).
"""

from __future__ import annotations

from typing import ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from rules.kit import Entry, named
from streams.constants import DAY_MS
from streams.model import Event, JSONDict

COMPLETED = "Test Drive Completed"
REQUESTED = "Test Drive Requested"
PURCHASES = frozenset({"Order Completed", "Vehicle Purchased"})
_RANK = {"a": 0, "t": 1, "p": 2}  # at the same ms a purchase comes last: it cancels that test drive


_LEGACY = ("ts", "kind", "id", "info")


def _sort_key(e: Entry) -> tuple[int, int, str]:
    return (int(e["ts"]), _RANK[e["kind"]], str(e["id"]))


def _load(state: JSONDict) -> tuple[list[Entry], JSONDict, list[str], int | None]:
    """Timeline, head, reported test drives and the settled mark, from either stored shape
    (the older one kept entries and the anchor as positional lists and the mark as ``set``)."""
    tl = [named(e, _LEGACY) for e in state.get("tl", [])]  # stored in walk order: keep it
    head: JSONDict = dict(state.get("head", {}))
    if isinstance(head.get("anchor"), list):
        head["anchor"] = named(head["anchor"], ("ts", "id", "info"))
    settled = state.get("decided", state.get("set"))
    return tl, head, list(state.get("done", [])), settled


def _info(event: Event) -> JSONDict:
    p = event.properties
    info: JSONDict = {"kind": "completed" if event.name == COMPLETED else "requested"}
    for src, dst in (("model", "model"), ("dealer_id", "dealer"), ("dealer", "dealer")):
        v = p.get(src)
        if isinstance(v, str | int) and not isinstance(v, bool) and dst not in info:
            info[dst] = v
    return info


class TestDriveSilence(Rule):
    __test__ = False  # the class name starts with "Test": keep pytest from collecting it

    name = "test_drive_silence"
    version = 1
    description = "A test drive followed by 182 days without activity; a purchase cancels"
    calls = frozenset({"track", "page", "screen"})
    purpose = "marketing"
    #: retention, not acquisition: never another top-of-funnel ad
    channels: ClassVar[tuple[str, ...]] = ("email", "call_center")

    quiet_ms: ClassVar[int] = 182 * DAY_MS
    #: timeline older than this before the newest event, with no test drive pending, is folded into
    #: the head; a test drive arriving later than that is counted from the latest folded activity
    fold_ms: ClassVar[int] = 730 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        tl, head, done, settled = _load(state)
        anchor = head.get("anchor")
        mid = event.message_id
        if mid in done or any(e["id"] == mid for e in tl) or (anchor is not None and anchor["id"] == mid):
            return Outcome(state)  # redelivered
        if event.call == "track" and event.name in (COMPLETED, REQUESTED):
            entry: Entry = {"ts": event.ts, "kind": "t", "id": mid, "info": _info(event)}
        elif event.call == "track" and event.name in PURCHASES:
            entry = {"ts": event.ts, "kind": "p", "id": mid, "info": {}}
        else:
            entry = {"ts": event.ts, "kind": "a", "id": mid, "info": {}}
        if settled is not None and event.ts <= settled:
            self._apply(head, entry, done)  # late: behind the folded point
        else:
            tl.append(entry)
            tl.sort(key=_sort_key)
            tl = self._compact(tl)
            head, tl, settled = self._fold(head, tl, settled)
        return self._schedule(self._state(tl, head, settled, done))

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        tl, head, done, prev = _load(state)
        triggers: list[TriggerSpec] = []
        n = 0
        for e in tl:
            if int(e["ts"]) > timer.due:
                break  # ahead of the clock: a later timer walks it
            self._close(head, int(e["ts"]), done, triggers)
            self._apply(head, e, done)
            n += 1
        last = head.get("last")
        if head.get("anchor") is not None and last is not None and last + self.quiet_ms < timer.due:
            self._close(head, last + self.quiet_ms + 1, done, triggers)
        settled = timer.due if prev is None else max(int(prev), timer.due)
        out = self._schedule(self._state(tl[n:], head, settled, done))
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        entries: dict[str, Entry] = {}
        for side, st in (("s", survivor), ("a", absorbed)):
            for e in self._unfold(side, st):
                entries.setdefault(str(e["id"]), e)
        tl = sorted(entries.values(), key=_sort_key)
        done = list(dict.fromkeys(list(survivor.get("done", [])) + list(absorbed.get("done", []))))[-20:]
        tl = [e for e in tl if e["id"] not in done or e["kind"] != "t"]
        return self._state(self._compact(tl), {}, None, done)

    # ------------------------------------------------------------------ the walk
    def _apply(self, h: JSONDict, e: Entry, done: list[str]) -> None:
        """Walk one entry (in time order, or a late one onto the head)."""
        ts, kind, mid = int(e["ts"]), e["kind"], str(e["id"])
        last, cut, anchor = h.get("last"), h.get("cut"), h.get("anchor")
        h["last"] = ts if last is None else max(last, ts)
        if kind == "t":
            newer = (cut is None or ts > cut) and (anchor is None or ts >= anchor["ts"])
            if newer and mid not in done:
                h["anchor"] = {"ts": ts, "id": mid, "info": e["info"]}
        elif kind == "p":
            if anchor is not None and ts >= anchor["ts"]:
                h["anchor"] = None
            h["cut"] = ts if cut is None else max(cut, ts)

    def _close(self, h: JSONDict, before: int, done: list[str], triggers: list[TriggerSpec]) -> None:
        """A pending test drive whose latest activity is more than 182 days before ``before``: report it."""
        anchor, last = h.get("anchor"), h.get("last")
        if anchor is None or last is None or before <= last + self.quiet_ms:
            return
        key = str(anchor["id"])
        if key not in done:
            done.append(key)
            info: JSONDict = dict(anchor["info"])
            triggers.append(
                TriggerSpec(
                    key=key,
                    time=last + self.quiet_ms,
                    context={
                        "test_drive": info.pop("kind", "completed"),
                        "test_drive_at": int(anchor["ts"]),
                        **info,
                        "last_activity_at": last,
                        "days_silent": self.quiet_ms // DAY_MS,
                    },
                )
            )
        h["anchor"] = None
        h["cut"] = max(h.get("cut") or anchor["ts"], anchor["ts"])

    # ------------------------------------------------------------------ keeping it small
    def _compact(self, tl: list[Entry]) -> list[Entry]:
        q = self.quiet_ms
        # a test drive followed by a later test drive or purchase, with no gap over 182 days between,
        # can never be reported: it is plain activity
        # (the same for a purchase followed within 182 days by another: that one cancels as well)
        later = False
        next_buy: int | None = None
        out: list[Entry] = []
        for i in range(len(tl) - 1, -1, -1):
            e = tl[i]
            if i + 1 < len(tl) and int(tl[i + 1]["ts"]) - int(e["ts"]) > q:
                later = False
            if e["kind"] == "t" and later:
                e = {**e, "kind": "a", "info": {}}
            elif e["kind"] == "p" and next_buy is not None and next_buy - int(e["ts"]) <= q:
                e = {**e, "kind": "a", "info": {}}
                later = True
            elif e["kind"] in ("t", "p"):
                later = True
                if e["kind"] == "p":
                    next_buy = int(e["ts"])
            out.append(e)
        out.reverse()
        # an activity whose neighbours are at most 182 days apart changes nothing
        kept: list[Entry] = []
        for i, e in enumerate(out):
            prev = kept[-1]["ts"] if kept else None
            if (
                e["kind"] == "a"
                and prev is not None
                and i + 1 < len(out)
                and int(out[i + 1]["ts"]) - int(prev) <= q
            ):
                continue
            kept.append(e)
        return kept

    def _fold(
        self, head: JSONDict, tl: list[Entry], settled: int | None
    ) -> tuple[JSONDict, list[Entry], int | None]:
        """Fold the prefix older than ``fold_ms`` before the newest event, while no test drive is pending."""
        if not tl:
            return head, tl, settled
        horizon = int(tl[-1]["ts"]) - self.fold_ms
        n = 0
        for e in tl:
            if int(e["ts"]) >= horizon or e["kind"] == "t" or head.get("anchor") is not None:
                break
            self._apply(head, e, [])
            settled = int(e["ts"]) if settled is None else max(settled, int(e["ts"]))
            n += 1
        return head, tl[n:], settled

    def _unfold(self, side: str, state: JSONDict) -> list[Entry]:
        """A state as plain timeline entries (for a merge): the head becomes up to three marks."""
        out, head, _, _ = _load(state)
        if head.get("cut") is not None:
            out.append({"ts": head["cut"], "kind": "p", "id": f"~cut-{side}-{head['cut']}", "info": {}})
        if head.get("anchor") is not None:
            a = head["anchor"]
            out.append({"ts": a["ts"], "kind": "t", "id": a["id"], "info": a["info"]})
        if head.get("last") is not None:
            out.append({"ts": head["last"], "kind": "a", "id": f"~last-{side}-{head['last']}", "info": {}})
        return out

    def _state(self, tl: list[Entry], head: JSONDict, settled: int | None, done: list[str]) -> JSONDict:
        out: JSONDict = {"tl": tl}
        head = {k: v for k, v in head.items() if v is not None}
        if head:
            out["head"] = head
        if settled is not None:
            out["decided"] = settled
        if done:
            out["done"] = done[-20:]
        return out

    def _schedule(self, state: JSONDict) -> Outcome:
        """Timer at the end of the first spell the timeline could turn into, or none."""
        h: JSONDict = dict(state.get("head", {}))
        done = list(state.get("done", []))
        due = None
        for e in state["tl"]:
            if h.get("anchor") is not None and int(e["ts"]) > h["last"] + self.quiet_ms:
                due = h["last"] + self.quiet_ms
                break
            self._apply(h, e, done)
        else:
            if h.get("anchor") is not None:
                due = h["last"] + self.quiet_ms
        if due is None:
            return Outcome(state, cancel_timers=["silence"])
        # 1 ms after the 182 days: activity at exactly 182 days still breaks the silence
        return Outcome(state, set_timers=[TimerSpec("silence", due + 1)])

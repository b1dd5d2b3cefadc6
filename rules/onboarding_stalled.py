"""Onboarding stalled: ``Onboarding Started`` and no ``Onboarding Completed`` within 24 hours.

Financial services and insurance (domain notes): onboarding that picks up at the step
where the customer dropped off completes far more often than a generic reminder two days
later. The trigger carries the last ``Onboarding Step Completed`` of that onboarding (its
step name and index), the number of steps done and the product.

An onboarding is per product (``properties.product``, else ``product_id``); events without
a product match every onboarding open at the time, so a completion sent without one still
closes it. Starting again while an onboarding of the product is open continues it (the 24
hours count from the first start); a start after it completed or was reported opens a new
one. A completion at exactly 24 hours is in time.

Event-time correct whatever the arrival order: the state is a timeline of starts, steps
and completions from the last three days (and of any undecided onboarding); the timer,
due just after 24 hours from the earliest start not yet resolved, walks it once the clock
has passed that point. Nothing whose outcome is still open is dropped, even when later
events run ahead of the clock; an event more than three days older than the profile's
newest is ignored. The trigger key is the ``messageId`` of the start.

State: ``{"tl": [{"ts", "kind", "id", "product", "step", "index"}, ...], "done": [{"ts",
"id"}, ...]}``: a :class:`~rules.kit.Timeline` of starts (``kind`` ``s``), steps (``x``) and
completions (``c``), deduped by ``messageId``, and the starts already reported. A state
stored in the older positional shape (``[ts, kind, messageId, product, step, index]``,
``[ts, messageId]``) is read as named entries.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from rules.kit import Entry, Timeline
from streams.constants import DAY_MS, HOUR_MS
from streams.model import Event, JSONDict

STARTED = "Onboarding Started"
STEP = "Onboarding Step Completed"
COMPLETED = "Onboarding Completed"
_KIND = {STARTED: "s", STEP: "x", COMPLETED: "c"}
_RANK = {"s": 0, "x": 1, "c": 2}


_LEGACY = ("ts", "kind", "id", "product", "step", "index")


def _sort_key(e: Entry) -> tuple[int, int, str]:
    return (int(e["ts"]), _RANK[e["kind"]], str(e["id"]))


def _load(state: JSONDict) -> tuple[Timeline, Timeline]:
    """The timeline and the reported starts, from either stored shape."""
    return Timeline(state.get("tl"), order=_sort_key, legacy=_LEGACY), Timeline(state.get("done"))


def _scalar(v: Any) -> str | int | None:
    return v if isinstance(v, str | int) and not isinstance(v, bool) and v != "" else None


def _step(props: JSONDict) -> tuple[str | None, int | None]:
    """Step name and index: ``step_name`` / ``step_index``, or ``step`` as either."""
    name = _scalar(props.get("step_name"))
    index = _scalar(props.get("step_index", props.get("index")))
    step = _scalar(props.get("step"))
    if name is None and isinstance(step, str):
        name = step
    if index is None and isinstance(step, int):
        index = step
    return (str(name) if name is not None else None), (index if isinstance(index, int) else None)


class OnboardingStalled(Rule):
    name = "onboarding_stalled"
    version = 1
    description = "Onboarding Started and no Onboarding Completed within 24 hours: nudge at the last step"
    events = frozenset(_KIND)
    purpose = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email", "push", "app")

    stall_ms: ClassVar[int] = 24 * HOUR_MS
    #: how far back the timeline is kept: the window, plus events up to a day ahead of the clock
    horizon_ms: ClassVar[int] = 3 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        timeline, done = _load(state)
        if event.message_id in timeline:
            return Outcome(state)  # redelivered
        if timeline and event.ts < int(timeline.entries[-1]["ts"]) - self.horizon_ms:
            return Outcome(state)  # older than anything still undecided
        product = _scalar(event.properties.get("product", event.properties.get("product_id")))
        name, index = _step(event.properties) if event.name == STEP else (None, None)
        kind = _KIND[str(event.name)]
        timeline.add_event(event, kind=kind, product=str(product or ""), step=name, index=index)
        tl = timeline.entries
        # drop what is older than three days, but never part of an onboarding still open or whose
        # window reaches past that point (a restart inside it must stay a restart)
        cutoff = int(tl[-1]["ts"]) - self.horizon_ms
        opened: list[Entry] = []
        for f in self._walk(tl, float("inf"), opened):
            if f["start"]["id"] not in done:
                cutoff = min(cutoff, int(f["start"]["ts"]))
        for s in opened:
            if int(s["ts"]) + self.stall_ms >= cutoff:
                cutoff = min(cutoff, int(s["ts"]))
        timeline.prune(cutoff - 1)
        done.prune(cutoff - 1)
        return self._schedule({"tl": timeline.dump(), "done": done.dump()})

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        timeline, done = _load(state)
        triggers = []
        for flow in self._walk(timeline.entries, timer.due):
            start = flow["start"]
            if not done.add(int(start["ts"]), str(start["id"])):
                continue  # reported already
            triggers.append(
                TriggerSpec(
                    key=str(start["id"]),
                    time=int(start["ts"]) + self.stall_ms,
                    context={
                        "product": start["product"] or None,
                        "started_at": int(start["ts"]),
                        "last_step": flow["step"]["step"] if flow["step"] else None,
                        "last_step_index": flow["step"]["index"] if flow["step"] else None,
                        "steps_completed": flow["n"],
                        "stalled_after_hours": self.stall_ms // HOUR_MS,
                    },
                )
            )
        out = self._schedule({"tl": timeline.dump(), "done": done.dump()})
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        (tl, done), (other_tl, other_done) = _load(survivor), _load(absorbed)
        return {"tl": tl.merged(other_tl).dump(), "done": done.merged(other_done).dump()}

    # ------------------------------------------------------------------ helpers
    def _walk(self, tl: list[Entry], upto: int | float, opened: list[Entry] | None = None) -> list[JSONDict]:
        """The onboardings that stalled by ``upto`` (their 24 hours ended by then), oldest first.

        ``opened`` collects the start of every onboarding the walk opened."""
        open_: dict[str, JSONDict] = {}
        stalled: list[JSONDict] = []

        def close(before: int | float) -> None:
            for p in sorted(open_):
                if int(open_[p]["start"]["ts"]) + self.stall_ms < before:
                    stalled.append(open_.pop(p))

        for e in tl:
            if int(e["ts"]) > upto:
                break
            close(int(e["ts"]))
            kind, product = e["kind"], e["product"]
            if kind == "s":
                if product not in open_ and opened is not None:
                    opened.append(e)
                open_.setdefault(product, {"start": e, "step": None, "n": 0})
                continue
            for p in list(open_):
                if product and p and p != product:
                    continue
                if kind == "c":
                    del open_[p]
                else:
                    open_[p] = {**open_[p], "step": e, "n": open_[p]["n"] + 1}
        close(upto)
        return sorted(stalled, key=lambda f: _sort_key(f["start"]))

    def _schedule(self, state: JSONDict) -> Outcome:
        """Timer 24 hours after the earliest start that is neither completed nor reported."""
        fired = {str(d["id"]) for d in state["done"]}
        ends = [
            int(f["start"]["ts"]) + self.stall_ms
            for f in self._walk(state["tl"], float("inf"))
            if f["start"]["id"] not in fired
        ]
        if not state["done"]:
            state = {"tl": state["tl"]}
        if not ends:
            return Outcome(state, cancel_timers=["stall"])
        # 1 ms after the 24 hours: a completion at exactly 24 hours is in time, so wait until the
        # clock is past that millisecond (every event at it seen) before deciding
        return Outcome(state, set_timers=[TimerSpec("stall", min(ends) + 1)])

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
"""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.constants import DAY_MS, HOUR_MS
from streams.model import Event, JSONDict

STARTED = "Onboarding Started"
STEP = "Onboarding Step Completed"
COMPLETED = "Onboarding Completed"
_KIND = {STARTED: "s", STEP: "x", COMPLETED: "c"}
_RANK = {"s": 0, "x": 1, "c": 2}


def _sort_key(e: list[Any]) -> tuple[int, int, str]:
    return (int(e[0]), _RANK[e[1]], str(e[2]))


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
        tl: list[list[Any]] = list(state.get("tl", []))
        if any(e[2] == event.message_id for e in tl):
            return Outcome(state)  # redelivered
        if tl and event.ts < int(tl[-1][0]) - self.horizon_ms:
            return Outcome(state)  # older than anything still undecided
        product = _scalar(event.properties.get("product", event.properties.get("product_id")))
        name, index = _step(event.properties) if event.name == STEP else (None, None)
        tl.append([event.ts, _KIND[str(event.name)], event.message_id, str(product or ""), name, index])
        tl.sort(key=_sort_key)
        done: list[list[Any]] = list(state.get("done", []))
        # drop what is older than three days, but never part of an onboarding still open or whose
        # window reaches past that point (a restart inside it must stay a restart)
        fired = {str(d[1]) for d in done}
        cutoff = int(tl[-1][0]) - self.horizon_ms
        opened: list[list[Any]] = []
        for f in self._walk(tl, float("inf"), opened):
            if f["start"][2] not in fired:
                cutoff = min(cutoff, int(f["start"][0]))
        for s in opened:
            if int(s[0]) + self.stall_ms >= cutoff:
                cutoff = min(cutoff, int(s[0]))
        tl = [e for e in tl if int(e[0]) >= cutoff]
        done = [d for d in done if int(d[0]) >= cutoff]
        return self._schedule({"tl": tl, "done": done})

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        tl: list[list[Any]] = list(state.get("tl", []))
        done: list[list[Any]] = list(state.get("done", []))
        fired = {str(d[1]) for d in done}
        triggers = []
        for flow in self._walk(tl, timer.due):
            start = flow["start"]
            if start[2] in fired:
                continue
            done.append([start[0], start[2]])
            triggers.append(
                TriggerSpec(
                    key=str(start[2]),
                    time=int(start[0]) + self.stall_ms,
                    context={
                        "product": start[3] or None,
                        "started_at": int(start[0]),
                        "last_step": flow["step"][4] if flow["step"] else None,
                        "last_step_index": flow["step"][5] if flow["step"] else None,
                        "steps_completed": flow["n"],
                        "stalled_after_hours": self.stall_ms // HOUR_MS,
                    },
                )
            )
        out = self._schedule({"tl": tl, "done": done})
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        seen = {e[2] for e in survivor.get("tl", [])}
        tl = list(survivor.get("tl", [])) + [e for e in absorbed.get("tl", []) if e[2] not in seen]
        tl.sort(key=_sort_key)
        done = {str(d[1]): d for d in survivor.get("done", []) + absorbed.get("done", [])}
        return {"tl": tl, "done": sorted(done.values())}

    # ------------------------------------------------------------------ helpers
    def _walk(
        self, tl: list[list[Any]], upto: int | float, opened: list[list[Any]] | None = None
    ) -> list[JSONDict]:
        """The onboardings that stalled by ``upto`` (their 24 hours ended by then), oldest first.

        ``opened`` collects the start of every onboarding the walk opened."""
        open_: dict[str, JSONDict] = {}
        stalled: list[JSONDict] = []

        def close(before: int | float) -> None:
            for p in sorted(open_):
                if int(open_[p]["start"][0]) + self.stall_ms < before:
                    stalled.append(open_.pop(p))

        for e in tl:
            if int(e[0]) > upto:
                break
            close(int(e[0]))
            kind, product = e[1], e[3]
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
        fired = {str(d[1]) for d in state["done"]}
        ends = [
            int(f["start"][0]) + self.stall_ms
            for f in self._walk(state["tl"], float("inf"))
            if f["start"][2] not in fired
        ]
        if not state["done"]:
            state = {"tl": state["tl"]}
        if not ends:
            return Outcome(state, cancel_timers=["stall"])
        # 1 ms after the 24 hours: a completion at exactly 24 hours is in time, so wait until the
        # clock is past that millisecond (every event at it seen) before deciding
        return Outcome(state, set_timers=[TimerSpec("stall", min(ends) + 1)])

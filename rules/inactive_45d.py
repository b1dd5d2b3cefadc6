"""Inactive 45 days: a known customer with no activity (track/page/screen, any channel) for 45 days.

One retention trigger per quiet spell; new activity resets it (README, "Built-in rules").
"Known" means the profile has an identifier besides anonymous ids and devices.

State: the active periods not yet reported, oldest first: activity less than 45 days apart
is one period. ``acts`` holds each period's latest activity ``[ts, messageId]`` and
``starts`` its earliest activity's time by that ``messageId`` (left out for a period of one).
The timer, due 45 days after the first period's latest activity, walks them once the clock
passes. The trigger key is the ``messageId`` of the activity that started the quiet spell.

The start of a period is kept because activity arrives out of order: a store's POS upload
or another channel's backlog lands after later activity was seen, and a merge joins two
profiles' histories. A late event is measured against the start of the activity after it;
measured against its latest activity, a late event 47 days before it would open a quiet
spell the customer never had (and trigger a false "we miss you"). The starts live beside
``acts`` rather than in it so that a worker of the version before (a rolling upgrade, a
rollback) still reads the state: it only loses them, as it always did.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams.constants import DAY_MS
from streams.model import Event, JSONDict

ANONYMOUS_TYPES = frozenset({"anonymous_id", "device_id"})


class Inactive45d(Rule):
    name = "inactive_45d"
    version = 1
    description = "A known customer with no activity on any channel for 45 days"
    calls = frozenset({"track", "page", "screen"})
    purpose = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email", "push", "ads")

    quiet_ms: ClassVar[int] = 45 * DAY_MS

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        fired = state.get("fired")
        if fired is not None and event.ts <= fired[0]:
            return Outcome(state)  # older than a spell already reported: changes nothing
        rest = {k: v for k, v in state.items() if k not in ("acts", "starts")}
        acts = state.get("acts")
        if acts and event.ts > acts[-1][0]:
            return self._schedule({**rest, **self._after_all(acts, state.get("starts", {}), event)})
        periods = [*_periods(state), [event.ts, event.message_id, event.ts]]
        return self._schedule({**rest, **_stored(self._compact(periods))})

    def _after_all(self, acts: list[list[Any]], starts: dict[str, int], event: Event) -> JSONDict:
        """``_stored(_compact(...))`` of the stored periods and an activity later than all of
        them (the usual case), without sorting: such an activity starts after every period, so
        it joins the last one (within 45 days of its end) or opens one of its own."""
        end, key = acts[-1][0], acts[-1][1]
        if event.ts - end > self.quiet_ms:
            out: JSONDict = {"acts": [*acts, [event.ts, event.message_id]]}
            if starts:
                out["starts"] = starts
            return out
        starts = dict(starts)
        start = min(starts.pop(key, end), end)  # the last period's start (as _periods reads it)
        starts[event.message_id] = start  # before the event: the period is no longer one point
        return {"acts": [*acts[:-1], [event.ts, event.message_id]], "starts": starts}

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        acts = _periods(state)
        known = bool(ctx.identifier_types - ANONYMOUS_TYPES)
        triggers = []
        fired = state.get("fired")
        while acts:
            ts, key = acts[0][0], acts[0][1]
            nxt = acts[1][2] if len(acts) > 1 else None
            spell_end = ts + self.quiet_ms
            if spell_end > timer.due:
                break
            if nxt is not None and nxt <= spell_end:
                acts.pop(0)  # not quiet long enough
                continue
            if known:
                triggers.append(
                    TriggerSpec(
                        key=key,
                        time=spell_end,
                        context={"days_inactive": self.quiet_ms // DAY_MS, "last_activity_at": ts},
                    )
                )
            fired = [ts, key]
            acts.pop(0)
        out = self._schedule({**_stored(acts), **({"fired": fired} if fired else {})})
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        fired = max((f for f in (survivor.get("fired"), absorbed.get("fired")) if f), default=None)
        periods = self._compact(_periods(survivor) + _periods(absorbed))
        if fired:
            periods = [a for a in periods if a[0] > fired[0]]
        return {**_stored(periods), **({"fired": fired} if fired else {})}

    def _compact(self, periods: list[list[Any]]) -> list[list[Any]]:
        """Periods ``[latest ts, its messageId, earliest ts]`` in any order -> the same joined,
        oldest first: one that starts within 45 days of the end of the one before joins it."""
        out: list[list[Any]] = []
        for end, key, start in sorted(periods, key=lambda a: (a[2], a[0], a[1])):
            if out and start - out[-1][0] <= self.quiet_ms:
                last = out[-1]
                if (end, key) > (last[0], last[1]):
                    last[0], last[1] = end, key
            else:
                out.append([end, key, start])
        return out

    def _schedule(self, state: JSONDict) -> Outcome:
        acts = state.get("acts", [])
        if not acts:
            return Outcome(state, cancel_timers=["quiet"])
        # an earlier timer stays: it fires as a re-check (on_timer finds no spell and sets it again)
        return Outcome(state, set_timers=[TimerSpec("quiet", acts[0][0] + self.quiet_ms, keep_earlier=True)])


def _periods(state: JSONDict) -> list[list[Any]]:
    """The stored periods as ``[latest ts, its messageId, earliest ts]``."""
    starts = state.get("starts", {})
    return [[a[0], a[1], min(starts.get(a[1], a[0]), a[0])] for a in state.get("acts", [])]


def _stored(periods: list[list[Any]]) -> JSONDict:
    out: JSONDict = {"acts": [[end, key] for end, key, _ in periods]}
    starts = {key: start for end, key, start in periods if start != end}
    if starts:
        out["starts"] = starts
    return out

"""Inactive 45 days: a known customer with no activity (track/page/screen, any channel) for 45 days.

One retention trigger per quiet spell; new activity resets it (README, "Built-in rules").
"Known" means the profile has an identifier besides anonymous ids and devices.

State: the latest activity ``[ts, messageId]`` (and any seen ahead of the clock); the
timer, due 45 days after the latest activity, walks them once the clock passes. The
trigger key is the ``messageId`` of the activity that started the quiet spell.
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
        acts: list[list[Any]] = list(state.get("acts", []))
        fired = state.get("fired")
        if fired is not None and event.ts <= fired[0]:
            return Outcome(state)  # older than a spell already reported: changes nothing
        acts.append([event.ts, event.message_id])
        acts.sort()
        acts = self._compact(acts)
        return self._schedule({**state, "acts": acts})

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        acts: list[list[Any]] = list(state.get("acts", []))
        known = bool(ctx.identifier_types - ANONYMOUS_TYPES)
        triggers = []
        fired = state.get("fired")
        while acts:
            ts, key = acts[0]
            nxt = acts[1][0] if len(acts) > 1 else None
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
        out = self._schedule({"acts": acts, **({"fired": fired} if fired else {})})
        out.triggers = triggers
        return out

    def merge(self, survivor: JSONDict, absorbed: JSONDict) -> JSONDict:
        acts = sorted({tuple(a) for a in survivor.get("acts", []) + absorbed.get("acts", [])})
        fired = max((f for f in (survivor.get("fired"), absorbed.get("fired")) if f), default=None)
        out: JSONDict = {"acts": self._compact([list(a) for a in acts])}
        if fired:
            out["fired"] = fired
            out["acts"] = [a for a in out["acts"] if a[0] > fired[0]]
        return out

    def _compact(self, acts: list[list[Any]]) -> list[list[Any]]:
        """Drop activity that a later one within 45 days makes irrelevant (keeps the state small)."""
        out: list[list[Any]] = []
        for a in acts:
            if out and a[0] - out[-1][0] <= self.quiet_ms:
                out[-1] = a
            else:
                out.append(a)
        return out

    def _schedule(self, state: JSONDict) -> Outcome:
        acts = state.get("acts", [])
        if not acts:
            return Outcome(state, cancel_timers=["quiet"])
        return Outcome(state, set_timers=[TimerSpec("quiet", acts[0][0] + self.quiet_ms)])

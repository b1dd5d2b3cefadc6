"""Rules that misbehave on purpose, for the chaos suite.

Enabled by class, e.g. ``CXSTREAM_RULES=cart_abandoned,...,faulty:RaisesSometimes`` with this
folder on ``PYTHONPATH``. Which events they fail on is a pure function of the ``messageId``
(:func:`fails_on`), so a test knows in advance every ``error`` decision it must see.
"""

from __future__ import annotations

import zlib
from typing import Any

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec
from streams.model import Event, JSONDict


def bucket(message_id: str, n: int) -> int:
    return zlib.crc32(message_id.encode()) % n


class RaisesSometimes(Rule):
    """Counts activity; raises on one event in seven."""

    name = "raises_sometimes"
    calls = frozenset({"track", "page", "screen"})
    purpose = "marketing"
    channels = ("email",)

    @staticmethod
    def fails_on(event: Event) -> bool:
        return bucket(event.message_id, 7) == 0

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        if self.fails_on(event):
            raise RuntimeError("injected failure")
        return Outcome({"n": int(state.get("n", 0)) + 1})


class ReturnsGarbage(Rule):
    """Sees every call; one event in eleven gets ``None``, one a set in its state, one a string."""

    name = "returns_garbage"
    calls = frozenset({"track", "page", "screen", "identify", "group", "alias"})
    purpose = "marketing"
    channels = ("email",)

    @staticmethod
    def fails_on(event: Event) -> bool:
        return bucket(event.message_id, 11) in (0, 1, 2)

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Any:
        b = bucket(event.message_id, 11)
        if b == 0:
            return None
        if b == 1:
            return Outcome({"seen": {event.message_id}})  # a set: not JSON
        if b == 2:
            return "not an Outcome"
        return Outcome({"last": event.message_id})


class TimerRaises(Rule):
    """``Chaos Timer Armed`` sets a timer due a second later; firing it always raises."""

    name = "timer_raises"
    events = frozenset({"Chaos Timer Armed"})
    purpose = "marketing"
    channels = ("email",)

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return Outcome(state, set_timers=[TimerSpec("boom", event.ts + 1000, {"armed": event.message_id})])

    def on_timer(self, state: JSONDict, timer: Timer, ctx: RuleContext) -> Outcome:
        raise RuntimeError("injected timer failure")

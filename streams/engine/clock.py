"""Clocks: ``wall`` (the system clock) or ``event`` (a watermark, as in Flink).

Event clock, per partition ``p`` of the repartition topic: intake sends, in-band after
each batch, a marker ``(source partition s, highest event time seen on s)`` for each source
the batch read to every partition (one ``wms`` record per partition carries them all).
``p``'s clock is the minimum over all source partitions of the latest marker from each, so
it only passes time ``T`` once every source has passed ``T``, and every event up to ``T``
that is produced in time order has been seen.

A source stops holding the clock back only on evidence that it has nothing more to
deliver, never because nobody reported on it lately. The worker that owns source ``s``
sends an *idle* marker for it (in-band, so after every event of ``s`` it produced) each
:data:`IDLE_REPORT_SECONDS` while it has processed ``s`` to its end (at its high-water mark,
every record fetched from it done, its fetch position unmoved since the last report:
``streams.metrics.Lag.caught_up``) and ``s`` has brought nothing for half the idle timeout. ``s``
counts as idle on ``p`` only while all three hold:

* an idle marker for ``s`` arrived within :data:`IDLE_FRESH_MS` (its owner is alive and
  caught up: a dead or stuck owner sends none, so its sources hold the clock until a new
  owner has re-read them);
* that marker came after the last advance of ``s`` (nothing newer was seen since);
* ``s`` has not advanced for ``idle_timeout`` (a live source that is caught up for a moment
  is not idle).

A source never heard from holds the clock too, unless its owner says it is idle. When
every source is idle, the clock is the highest mark (the end of a replay fires what is due
by then). Marks are persisted per partition and restored after a restart or rebalance as
just advanced; idleness is not restored, it must be reported again.

Timer lateness is measured on the wall clock on both clocks: from the wall moment a
partition's clock first reached a timer's due time until the timer fired. On the event
clock each partition keeps a short history of ``(clock value, wall ms when first reached)``
(:meth:`EventClock.lateness_ms`), so a replay whose clock jumps hours in one batch reports
the seconds its timers actually waited, not the hours the clock jumped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


def wall_ms() -> int:
    return int(time.time() * 1000)


#: How often a worker reports its caught-up source partitions that have been quiet for half
#: the idle timeout (only those can count as idle: a live source reports nothing). One marker
#: per repartition partition each: with 8 and 8, at most 32 small records a second, and only
#: while traffic is quiet.
IDLE_REPORT_SECONDS = 2.0
#: An idle report is believed this long: five reports, so one slow round trip does not flap,
#: and a dead owner's sources hold the clock again within 10 s.
IDLE_FRESH_MS = 10_000

_NEVER = -(2**62)

#: Advances of a partition's clock within this many wall ms of the previous history entry
#: update that entry instead of adding one: a timer that became due in that window counts as
#: due from the window's start, so lateness is overstated by at most this much.
REACHED_RESOLUTION_MS = 200
#: Entries kept per partition. Each is at least :data:`REACHED_RESOLUTION_MS` after the one
#: before, so the history spans at least ~6.8 minutes; a timer that became due before the
#: oldest entry counts as due from it, an understatement that is still over any sane alert
#: threshold.
REACHED_HISTORY = 2048


@dataclass
class PartitionMarks:
    marks: dict[int, int] = field(default_factory=dict)  # source partition -> watermark
    advanced: dict[int, int] = field(default_factory=dict)  # source partition -> wall ms of last advance
    idle: dict[int, int] = field(default_factory=dict)  # source partition -> wall ms of last idle report
    # the clock's history, both columns increasing: value i was first seen at wall ms reached_at[i]
    reached: deque[int] = field(default_factory=lambda: deque(maxlen=REACHED_HISTORY))
    reached_at: deque[int] = field(default_factory=lambda: deque(maxlen=REACHED_HISTORY))


class EventClock:
    def __init__(
        self,
        sources: int,
        idle_timeout_ms: int,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        self.sources = sources
        self.idle_timeout_ms = idle_timeout_ms
        self.wall = wall
        self.parts: dict[int, PartitionMarks] = {}

    def restore(self, partition: int, marks: dict[int, int]) -> None:
        """Load persisted marks (after a restart or a rebalance). Restored marks count as just advanced."""
        pm = self.parts.setdefault(partition, PartitionMarks())
        now = self.wall()
        for s, wm in marks.items():
            if wm > pm.marks.get(s, _NEVER):
                pm.marks[s] = wm
                pm.advanced[s] = now

    def observe(self, partition: int, source: int, wm: int) -> bool:
        """A marker arrived on ``partition``. Returns whether it advanced the source's mark."""
        return self.observe_all(partition, ((source, wm),))

    def observe_all(self, partition: int, marks: Iterable[tuple[int, int]]) -> bool:
        """Markers of several sources arrived on ``partition`` (one ``wms`` record). Returns
        whether any advanced its source's mark."""
        pm = self.parts.setdefault(partition, PartitionMarks())
        moved = False
        for source, wm in marks:
            if wm > pm.marks.get(source, _NEVER):
                pm.marks[source] = wm
                pm.advanced[source] = self.wall()
                moved = True
        if moved:
            self.now(partition)  # note when the clock moved, for timer lateness
        return moved

    def report_idle(self, partition: int, source: int) -> None:
        """An idle marker arrived on ``partition``: ``source``'s owner has read it to its end."""
        self.parts.setdefault(partition, PartitionMarks()).idle[source] = self.wall()

    def marks(self, partition: int) -> dict[int, int]:
        return dict(self.parts.get(partition, PartitionMarks()).marks)

    def is_idle(self, partition: int, source: int) -> bool:
        pm = self.parts.get(partition)
        if pm is None:
            return False
        reported = pm.idle.get(source)
        if reported is None:
            return False
        wall = self.wall()
        advanced = pm.advanced.get(source, _NEVER)
        return (
            wall - reported <= IDLE_FRESH_MS
            and reported >= advanced
            and wall - advanced >= self.idle_timeout_ms
        )

    def now(self, partition: int) -> int | None:
        """The partition's event clock, or ``None`` while it cannot tell."""
        pm = self.parts.get(partition)
        if pm is None or not pm.marks:
            return None
        active: list[int] = []
        for s in range(self.sources):
            if self.is_idle(partition, s):
                continue
            if s not in pm.marks:
                return None  # a source never heard from, not reported idle: it may hold older events
            active.append(pm.marks[s])
        clock = min(active) if active else max(pm.marks.values())
        self._reached(pm, clock)
        return clock

    def _reached(self, pm: PartitionMarks, clock: int) -> None:
        """Record that the clock shows ``clock`` now (a value below the last one is ignored)."""
        if pm.reached and clock <= pm.reached[-1]:
            return
        wall = self.wall()
        if pm.reached and wall - pm.reached_at[-1] < REACHED_RESOLUTION_MS:
            pm.reached[-1] = clock
        else:
            pm.reached.append(clock)
            pm.reached_at.append(wall)

    def lateness_ms(self, partition: int, due: int) -> int:
        """Wall ms since the partition's clock first reached ``due`` (0 if it has not, as far
        as its history tells). Called by the decide stage for each timer it fires on the
        event clock; never raises."""
        pm = self.parts.get(partition)
        if pm is None or not pm.reached:
            return 0
        i = bisect_left(pm.reached, due)
        if i == len(pm.reached):
            return 0
        return max(0, self.wall() - pm.reached_at[i])

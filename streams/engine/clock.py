"""Clocks: ``wall`` (the system clock) or ``event`` (a watermark, as in Flink).

Event clock, per partition ``p`` of the repartition topic: intake sends, in-band after
each batch, a marker ``(source partition s, highest event time seen on s)`` to every
partition. ``p``'s clock is the minimum over all source partitions of the latest marker
from each, so it only passes time ``T`` once every source has passed ``T``, and every
event up to ``T`` that is produced in time order has been seen. A source partition that
has not advanced for ``idle_timeout`` (wall time) stops holding the clock back; when
every source is idle the clock is the highest mark (the end of a replay fires what is
due by then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PartitionMarks:
    marks: dict[int, int] = field(default_factory=dict)  # source partition -> watermark
    advanced: dict[int, int] = field(default_factory=dict)  # source partition -> wall ms of last advance


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
        self.started = wall()
        self.parts: dict[int, PartitionMarks] = {}

    def restore(self, partition: int, marks: dict[int, int]) -> None:
        """Load persisted marks (after a restart or a rebalance). Restored marks count as just advanced."""
        pm = self.parts.setdefault(partition, PartitionMarks())
        now = self.wall()
        for s, wm in marks.items():
            if wm > pm.marks.get(s, -(2**62)):
                pm.marks[s] = wm
                pm.advanced[s] = now

    def observe(self, partition: int, source: int, wm: int) -> bool:
        """A marker arrived on ``partition``. Returns whether it advanced the source's mark."""
        pm = self.parts.setdefault(partition, PartitionMarks())
        if wm > pm.marks.get(source, -(2**62)):
            pm.marks[source] = wm
            pm.advanced[source] = self.wall()
            return True
        return False

    def marks(self, partition: int) -> dict[int, int]:
        return dict(self.parts.get(partition, PartitionMarks()).marks)

    def now(self, partition: int) -> int | None:
        """The partition's event clock, or ``None`` while it cannot tell."""
        pm = self.parts.get(partition)
        if pm is None or not pm.marks:
            return None
        wall = self.wall()
        active: list[int] = []
        for s in range(self.sources):
            if s in pm.marks:
                if wall - pm.advanced[s] <= self.idle_timeout_ms:
                    active.append(pm.marks[s])
            elif wall - self.started <= self.idle_timeout_ms:
                return None  # a source never heard from, not yet idle: it may still hold older events
        if active:
            return min(active)
        return max(pm.marks.values())

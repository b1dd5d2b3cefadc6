"""``cxstream simulate``: the Kafka pipeline's own stages over a file, in one process.

In-memory stores, the event clock, one partition. The stages are the very classes the
worker runs, so the same input gives the same triggers and decisions, ids included.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.pipeline.envelope import batched
from streams.pipeline.records import InRecord, OutRecord
from streams.replay import key_of, lines
from streams.runtime import Runtime, Stores
from streams.settings import Settings

_FOREVER = 2**62


@dataclass
class SimResult:
    events: int = 0
    deadletters: int = 0
    activations: list[bytes] = field(default_factory=list)
    decisions: list[bytes] = field(default_factory=list)
    identity_changes: list[bytes] = field(default_factory=list)
    conversions: list[bytes] = field(default_factory=list)
    deadletter_records: list[OutRecord] = field(default_factory=list)


class LocalPipeline:
    """Both stages wired through an in-memory repartition queue."""

    def __init__(self, settings: Settings, stores: Stores | None = None) -> None:
        self.settings = settings
        self.runtime = Runtime(settings, stores or Stores.memory(settings))
        self._wall = 0
        # sources never go idle mid-run; finish() makes them all idle at once
        self.runtime.event_clock.wall = lambda: self._wall
        self.runtime.event_clock.idle_timeout_ms = _FOREVER
        self.queue: deque[InRecord] = deque()
        self.offsets: dict[int, int] = {}
        self.result = SimResult()
        self._raw_offset = 0

    def _route(self, records: Iterable[OutRecord]) -> None:
        s = self.settings
        for r in records:
            if r.topic == s.topic_profiled:
                p = r.partition or 0
                off = self.offsets.get(p, 0)
                self.offsets[p] = off + 1
                self.queue.append(InRecord(r.topic, p, off, r.key, r.value))
            elif r.topic == s.topic_activations:
                self.result.activations.append(r.value)
            elif r.topic == s.topic_decisions:
                self.result.decisions.append(r.value)
            elif r.topic == s.topic_identity_changes:
                self.result.identity_changes.append(r.value)
            elif r.topic == s.topic_conversions:
                self.result.conversions.append(r.value)
            elif r.topic == s.topic_deadletter:
                self.result.deadletters += 1
                self.result.deadletter_records.append(r)

    async def _produce(self, records: Sequence[OutRecord]) -> None:
        self._route(records)

    async def feed(self, values: Sequence[bytes], now_ms: int | None = None) -> None:
        """One intake batch, then everything it causes downstream."""
        batch = []
        for v in values:
            batch.append(InRecord(self.settings.topic_raw, 0, self._raw_offset, key_of(v), v))
            self._raw_offset += 1
        self.result.events += len(batch)
        out = await self.runtime.intake.process(
            batch, now_ms if now_ms is not None else int(time.time() * 1000)
        )
        s = self.settings
        if s.repartition_batches:  # as a worker writes them: one batch record per partition
            out = batched(out, s.topic_profiled, s.kafka_max_request_size)
        self._route(out)
        await self._drain()

    async def _drain(self) -> None:
        rt = self.runtime
        while self.queue:
            batch = list(self.queue)
            self.queue.clear()
            await rt.adopt(rt.known_partitions | {r.partition for r in batch})
            # as a worker does: on the event clock, what the batch made due fires with it
            fire = rt.known_partitions if self.settings.clock == "event" else None
            await rt.decide_batch(batch, self._produce, fire)
            await self._fire()

    async def _fire(self) -> None:
        rt = self.runtime
        while await rt.fire_round(rt.known_partitions, self._produce):
            if self.queue:
                await self._drain()

    async def finish(self) -> SimResult:
        """End of input: every source is idle, so the clock moves to the last event time."""
        self._wall = _FOREVER
        clock = self.runtime.event_clock
        clock.idle_timeout_ms = 0  # every source read to its end: the clock is the last mark
        for p in list(clock.parts):
            for src in range(clock.sources):
                clock.report_idle(p, src)
        await self._fire()
        await self._drain()
        return self.result


async def simulate_file(settings: Settings, path: Path, batch: int | None = None) -> SimResult:
    settings = settings.model_copy(update={"partitions": 1, "clock": "event"})
    pipe = LocalPipeline(settings)
    size = batch or settings.batch_size
    buf: list[bytes] = []
    for line in lines(path):
        buf.append(line)
        if len(buf) >= size:
            await pipe.feed(buf)
            buf = []
    if buf:
        await pipe.feed(buf)
    return await pipe.finish()

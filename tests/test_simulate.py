"""LocalPipeline (`cxstream simulate`) with several partitions behaves like one."""

from __future__ import annotations

import asyncio

from streams.demo import DEMO_FILE
from streams.replay import lines
from streams.settings import load_settings
from streams.simulate import LocalPipeline


def test_partition_count_does_not_change_the_triggers() -> None:
    async def run(partitions: int) -> list[bytes]:
        pipe = LocalPipeline(load_settings(partitions=partitions, clock="event"))
        batch: list[bytes] = []
        for line in list(lines(DEMO_FILE))[:1500]:
            batch.append(line)
            if len(batch) == 100:
                await pipe.feed(batch)
                batch = []
        await pipe.feed(batch)
        return sorted((await pipe.finish()).decisions)

    one, four = asyncio.run(run(1)), asyncio.run(run(4))
    assert len(one) > 20
    assert four == one

"""Both stages over ``Stores.redis`` with ``redis_cluster=True``: the demo journeys give the
same triggers and decisions on the cluster as over the in-memory stores."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.demo import DEMO_FILE
from streams.engine.state import RedisStateStore
from streams.replay import lines
from streams.runtime import Stores
from streams.settings import load_settings
from streams.simulate import LocalPipeline, SimResult
from streams.stack import LocalCluster

pytestmark = pytest.mark.stack


def test_the_demo_through_both_stages_on_the_cluster_matches_memory(redis_cluster: LocalCluster) -> None:
    s = load_settings(
        redis_url=redis_cluster.redis_url,
        redis_cluster=True,
        redis_prefix=f"demo-{uuid.uuid4().hex[:8]}",
        partitions=4,  # four timer partitions: four hash tags
        clock="event",
    )
    data = list(lines(DEMO_FILE))

    async def run(stores: Stores) -> SimResult:
        pipe = LocalPipeline(s, stores)
        for i in range(0, len(data), s.batch_size):
            await pipe.feed(data[i : i + s.batch_size])
        return await pipe.finish()

    async def on_cluster() -> SimResult:
        stores = Stores.redis(s)
        assert isinstance(stores.states, RedisStateStore)
        try:
            return await run(stores)
        finally:
            await stores.states.client.aclose()

    want = asyncio.run(run(Stores.memory(s)))
    got = asyncio.run(on_cluster())
    assert len(want.activations) > 100 and len(want.decisions) > len(want.activations)
    assert got.activations == want.activations
    assert got.decisions == want.decisions
    assert got.identity_changes == want.identity_changes
    assert got.deadletters == want.deadletters

"""A decide batch's commit landing behind it on a Redis Cluster, where it is a command per key and
kind, node by node: the same records and stored states as every commit awaited in turn over the
in-memory stores (``tests/pipeline/test_commit_behind.py`` on one server and in memory)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pipeline.test_commit_behind import check, journeys, on_redis

from streams.settings import load_settings
from streams.stack import LocalCluster

pytestmark = pytest.mark.stack


def test_on_a_cluster_a_batch_computed_while_the_last_commit_lands_gives_the_same(
    redis_cluster: LocalCluster,
) -> None:
    s = load_settings(
        redis_url=redis_cluster.redis_url,
        redis_cluster=True,
        redis_prefix=f"behind-{uuid.uuid4().hex[:8]}",
        partitions=4,
        clock="event",
    )
    want, shared, got, want_states, got_states = asyncio.run(on_redis(s, journeys(4000, seed=4)))
    check(want, got, shared, s)
    assert got_states == want_states

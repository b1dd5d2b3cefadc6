"""A primary killed in the middle of a loop of store calls: its replica takes over, every call
eventually succeeds (``redis_io.call`` waits the outage out), and no write is lost."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import pytest

from streams.constants import Keys
from streams.engine.state import RedisStateStore
from streams.engine.timers import RedisTimerStore, TimerOps
from streams.intake import RedisDedupeStore
from streams.redis_io import connect_cluster
from streams.stack import LocalCluster
from streams.state import ProfileState, TimerId

pytestmark = pytest.mark.stack

ROUNDS = 120
KILL_AT = 30
IDS, PROFILES, PARTITIONS = 20, 5, 6


def test_every_store_call_succeeds_and_no_write_is_lost_across_a_failover(
    fresh_cluster: LocalCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = fresh_cluster
    keys = Keys("fo")
    caplog.set_level(logging.DEBUG, logger="streams.redis_io")

    async def run() -> dict[str, Any]:
        client = connect_cluster(cluster.redis_url)
        dedupe = RedisDedupeStore(client, keys, ttl_seconds=3600)
        states = RedisStateStore(client, keys)
        timers = RedisTimerStore(client, keys)
        slowest, killed_at, dead = 0.0, 0.0, 0
        promoted: asyncio.Task[float] | None = None

        def promotion(dead: int) -> float:
            new = cluster.wait_promoted(dead)
            return time.monotonic() - killed_at if new else 0.0

        try:
            for n in range(ROUNDS):
                if n == KILL_AT:
                    dead = cluster.kill_primary(int(cluster.redis_url.rsplit(":", 1)[1].split("/")[0]))
                    killed_at = time.monotonic()
                    promoted = asyncio.create_task(asyncio.to_thread(promotion, dead))
                start = time.monotonic()
                batch = [(f"m{n}-{i}", f"raw/0/{n * IDS + i}") for i in range(IDS)]
                assert all(await dedupe.check(batch)), "each id is fresh (or our own retried claim)"
                await states.save({f"p{n}-{i}": ProfileState(rules={"n": {"v": n}}) for i in range(PROFILES)})
                await timers.apply(
                    n % PARTITIONS, TimerOps({str(TimerId(f"p{n}", "r", "t")): (n, {"n": n})}, set())
                )
                slowest = max(slowest, time.monotonic() - start)
                await asyncio.sleep(0.02)
            assert promoted is not None
            promoted_after = await promoted
            # count what is there: a marker answers "duplicate" to another coordinate
            again = await dedupe.check(
                [(f"m{n}-{i}", "other/9/9") for n in range(ROUNDS) for i in range(IDS)]
            )
            pids = [f"p{n}-{i}" for n in range(ROUNDS) for i in range(PROFILES)]
            loaded = await states.load(pids)
            pending = [await timers.pending(p) for p in range(PARTITIONS)]
            return {
                "markers": again.count(False),
                "states": sum(1 for p in pids if loaded[p].rules == {"n": {"v": int(p[1:].split("-")[0])}}),
                "timers": sum(pending),
                "slowest": slowest,
                "promoted_after": promoted_after,
                "dead": dead,
            }
        finally:
            await client.aclose()

    got = asyncio.run(run())
    retried = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    classes = sorted({m for r in retried for m in re.findall(r"(?:failed|unavailable) \((\w+)", r)})
    print(
        f"\nkilled primary :{got['dead']}, its replica took over after {got['promoted_after']:.1f}s; "
        f"slowest round {got['slowest']:.2f}s; {len(retried)} retries by redis_io.call: {classes}"
    )
    assert got["markers"] == ROUNDS * IDS
    assert got["states"] == ROUNDS * PROFILES
    assert got["timers"] == ROUNDS
    assert got["slowest"] > 0.5, "the kill should land while the loop runs (the outage is waited out)"

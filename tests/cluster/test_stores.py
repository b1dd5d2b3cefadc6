"""Every Redis store gives on a Redis Cluster the answers it gives on one server.

The one-server tests compare each Redis store with its in-memory twin; here the same
checks run against ``redis_cluster`` (3 primaries + 3 replicas). Where a one-server test
only needs a client, it is reused as is with the cluster client swapped in.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from streams.constants import Keys
from streams.engine.state import MemoryStateStore, RedisStateStore, StateStore
from streams.engine.timers import MemoryTimerStore, RedisTimerStore, TimerOps, TimerStore
from streams.intake import MemoryDedupeStore, RedisDedupeStore
from streams.redis_io import connect, connect_cluster
from streams.stack import LocalCluster, LocalStack
from streams.state import ProfileState, TimerId

pytestmark = pytest.mark.stack


@pytest.fixture(params=["one server", "cluster"])
def where(request: pytest.FixtureRequest) -> LocalStack:
    """The timer and state checks have no one-server twin elsewhere: run them on both."""
    servers: LocalStack = request.getfixturevalue(
        "stack" if request.param == "one server" else "redis_cluster"
    )
    return servers


def on_cluster(module: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A one-server test module whose ``connect`` makes cluster clients."""
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, "connect", connect_cluster)
    return mod


def with_client(where: LocalStack, body: Callable[[Any], Awaitable[Any]]) -> Any:
    """``body(client)`` with a cluster client on a :class:`LocalCluster`, else a one-server one."""

    async def run() -> Any:
        client = (
            connect_cluster(where.redis_url) if isinstance(where, LocalCluster) else connect(where.redis_url)
        )
        try:
            return await body(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


# ------------------------------------------------------------------------------------------ dedupe


def test_dedupe_store_agrees_with_memory(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-server check (fresh, duplicate in the batch, redelivery, TTL) on the cluster."""
    on_cluster("intake.test_dedupe", monkeypatch).test_memory_and_redis_stores_agree(redis_cluster)


def test_dedupe_random_batches_agree_with_memory(redis_cluster: LocalCluster) -> None:
    """Batches of 500 over every bucket: first claim wins, redeliveries pass, as in memory."""
    rnd = random.Random(5)
    batches = [
        [(f"m{rnd.randint(0, 1500)}", f"raw/{rnd.randint(0, 1)}/{rnd.randint(0, 2)}") for _ in range(500)]
        for _ in range(6)
    ]

    async def body(client: Any) -> tuple[list[list[bool]], list[list[bool]]]:
        redis_store = RedisDedupeStore(client, Keys(f"ddr-{uuid.uuid4().hex[:8]}"), ttl_seconds=600)
        memory = MemoryDedupeStore()
        return [await redis_store.check(b) for b in batches], [await memory.check(b) for b in batches]

    got, want = with_client(redis_cluster, body)
    assert got == want
    flat = [x for b in got for x in b]
    assert flat.count(True) > 500 and flat.count(False) > 500


# ------------------------------------------------------------------------------------------ timers


async def timer_story(store: TimerStore) -> list[Any]:
    """Schedule, claim under leases, reschedule while claimed, done, release, cancel, marks:
    everything a caller can observe, on 6 partitions (6 hash tags, so several primaries)."""
    seen: list[Any] = []
    parts = range(6)
    for p in parts:
        schedule = {
            str(TimerId(f"p{p}-{i:02d}", "r", "t")): (1000 + 10 * i, {"i": i} if i % 2 else {})
            for i in range(20)
        }
        await store.apply(p, TimerOps(schedule, set()))
    seen.append([(await store.pending(p), await store.next_due(p)) for p in parts])
    seen.append(await store.pending_many([*parts, 7]))  # 7: no timers
    for p in parts:
        first = await store.claim(p, clock=1100, wall=5000, limit=4)
        rest = await store.claim(p, clock=1100, wall=5000, limit=50)  # the leased four are skipped
        seen.append((first, rest))
        again = await store.claim(p, clock=1100, wall=5000 + 30_001, limit=50)  # every lease lapsed
        seen.append(again)
        m0, m1 = first[0].member, first[1].member
        await store.apply(p, TimerOps({m0: (2000, {"moved": True})}, {str(TimerId(f"p{p}-19", "r", "t"))}))
        await store.done(p, first)  # m0 was rescheduled since the claim: it stays
        await store.release(p, rest[:2])
        seen.append(await store.claim(p, clock=2000, wall=5000 + 30_002, limit=3))
        seen.append((await store.pending(p), await store.next_due(p), m1))
        await store.save_marks(p, {0: 1000 + p, 3: 7})
        await store.save_marks(p, {0: 1000 + p, 3: 9})  # whole maps: the memory twin replaces, Redis merges
        seen.append(await store.load_marks(p))
    for p in parts:  # profiles waiting for a merge hand-off (since: wall ms)
        await store.set_waiting(p, {f"w{p}-{i}": 100 * (i % 3) for i in range(5)}, set())
    await store.set_waiting(2, {}, {"w2-0"})
    seen.append(await store.waiting_many([*parts, 7], since_before=150, limit=3))
    seen.append([await store.waiting(p, 150, 3) for p in parts])
    return seen


def test_timer_store_agrees_with_memory(where: LocalStack) -> None:
    async def body(client: Any) -> list[Any]:
        return await timer_story(RedisTimerStore(client, Keys(f"tm-{uuid.uuid4().hex[:8]}")))

    got = with_client(where, body)
    assert got == asyncio.run(timer_story(MemoryTimerStore()))


# ------------------------------------------------------------------------------------------- state


async def state_story(store: StateStore) -> list[Any]:
    """500 profiles in one pipelined save (over every slot), then tombstones, deletes, reloads."""
    pids = [f"pid{i:04d}" for i in range(500)]
    await store.save(
        {p: ProfileState(rules={"r": {"n": i}}, country="DE" if i % 2 else None) for i, p in enumerate(pids)}
    )
    loaded = await store.load([*pids, "never-seen"])
    seen: list[Any] = [{p: s.to_json() for p, s in sorted(loaded.items())}]
    gone = ProfileState(rules={"r": {"n": -1}})
    gone.become_tombstone("pid0001")
    await store.save({"pid0000": gone, "pid0002": None, "pid0003": ProfileState(country="FR")})
    loaded = await store.load(pids[:5])
    seen.append({p: s.to_json() for p, s in sorted(loaded.items())})
    return seen


def test_state_store_agrees_with_memory(where: LocalStack) -> None:
    keys = Keys(f"st-{uuid.uuid4().hex[:8]}")

    async def body(client: Any) -> tuple[list[Any], int]:
        seen = await state_story(RedisStateStore(client, keys, tombstone_ttl=3600))
        return seen, int(await client.ttl(keys.state("pid0000")))

    got, ttl = with_client(where, body)
    assert got == asyncio.run(state_story(MemoryStateStore()))
    assert 0 < ttl <= 3600, "a tombstone expires, as on one server"


# ---------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize("seed", range(3))
def test_identity_store_agrees_with_memory(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    mod = on_cluster("identity.test_stores_agree", monkeypatch)
    mod.test_redis_and_memory_resolve_random_streams_identically(redis_cluster, seed)


def test_identity_store_groups_like_union_find(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The property test (random streams and limits, batches of 1-12) on the cluster: ~8 s."""
    on_cluster("identity.test_reference_model", monkeypatch).test_redis_store_groups_like_union_find(
        redis_cluster
    )


def test_identity_forget_agrees_with_memory(
    redis_cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_cluster("identity.test_erasure", monkeypatch).test_memory_forget_erases_the_same_profiles_as_redis(
        redis_cluster
    )


# ------------------------------------------------------------------------------------------ spread


def keys_per_primary(cluster: LocalCluster, match: str) -> dict[int, int]:
    out = {}
    for port in cluster.primary_ports():
        with redis.Redis(port=port) as node:
            out[port] = sum(1 for _ in node.scan_iter(match=match, count=1000))
    return out


def test_dedupe_markers_and_states_spread_over_every_primary(redis_cluster: LocalCluster) -> None:
    prefix = "spread"  # fixed: the slot split is fixed too, so the counts are the same every run
    keys = Keys(prefix)

    async def body(client: Any) -> None:
        dedupe = RedisDedupeStore(client, keys, ttl_seconds=600)
        for b in range(4):
            assert all(await dedupe.check([(f"msg-{b}-{i}", f"raw/0/{b * 500 + i}") for i in range(500)]))
        await RedisStateStore(client, keys).save({f"pid{i}": ProfileState(country="DE") for i in range(500)})

    with_client(redis_cluster, body)
    markers = keys_per_primary(redis_cluster, "{" + prefix + ":dd:*")
    states = keys_per_primary(redis_cluster, "{" + prefix + ":s:*")
    print(f"dedupe markers per primary: {markers}; profile states per primary: {states}")
    assert len(markers) == len(states) == 3
    assert sum(markers.values()) == 2000 and sum(states.values()) == 500
    assert min(markers.values()) >= 2000 * 0.2, markers
    assert min(states.values()) >= 500 * 0.25, states


def test_stores_load_their_scripts_again_when_a_primary_lost_them(redis_cluster: LocalCluster) -> None:
    """After a failover (or a restart) a primary may not know a script: NOSCRIPT loads it again."""
    keys = Keys(f"ns-{uuid.uuid4().hex[:8]}")

    async def body(client: Any) -> tuple[list[bool], list[Any]]:
        dedupe = RedisDedupeStore(client, keys, ttl_seconds=600)
        timers = RedisTimerStore(client, keys)
        assert all(await dedupe.check([(f"a{i}", "raw/0/0") for i in range(200)]))
        for port in redis_cluster.primary_ports():
            with redis.Redis(port=port) as node:
                node.script_flush()
        answers = await dedupe.check([(f"a{i}", "raw/0/1") for i in range(100)] + [("b", "raw/0/2")])
        await timers.apply(0, TimerOps({"p|r|t": (5, {})}, set()))
        return answers, await timers.claim(0, clock=10, wall=1, limit=5)

    answers, claimed = with_client(redis_cluster, body)
    assert answers == [False] * 100 + [True]
    assert [t.member for t in claimed] == ["p|r|t"]

"""The Lua resolution (Redis) and the Python reference (memory) give the same answers."""

from __future__ import annotations

import asyncio
import random

import pytest

from streams.constants import Keys
from streams.identity.base import ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack

pytestmark = pytest.mark.stack
TYPES = ["user_id", "anonymous_id", "email", "device_id", "phone", "loyalty_id"]


@pytest.mark.parametrize("seed", range(8))
def test_redis_and_memory_resolve_random_streams_identically(stack: LocalStack, seed: int) -> None:
    rnd = random.Random(seed)
    reqs = []
    for n in range(400):
        ids = {Identifier(t, str(rnd.randint(0, 40))) for t in rnd.sample(TYPES, rnd.randint(1, 3))}
        reqs.append(
            ResolveRequest(
                f"m{n}",
                1000 + rnd.randint(0, 10_000),
                rnd.choice(["web", "app", "pos"]),
                tuple(ids),
                {"n": n},
            )
        )

    async def run() -> None:
        client = connect(stack.redis_url)
        try:
            redis_store = RedisIdentityStore(client, Keys(f"agree{seed}"))
            memory = MemoryIdentityStore()
            got = []
            for i in range(0, len(reqs), 50):  # batches, as the worker sends them
                got += await redis_store.resolve(reqs[i : i + 50])
            assert got == await memory.resolve(reqs)
            assert any(r.outcome == "merged" for r in got) and any(r.dropped for r in got)
            for pid in {r.profile_id for r in got}:
                a, b = await redis_store.profile(pid), await memory.profile(pid)
                assert a is not None and b is not None
                assert sorted(map(str, a.identifiers)) == sorted(map(str, b.identifiers))
                assert (a.traits, a.channels, a.first_seen, a.last_seen) == (
                    b.traits,
                    b.channels,
                    b.first_seen,
                    b.last_seen,
                )
        finally:
            await client.aclose()

    asyncio.run(run())

"""A batch resolved again from the same source coordinates (its outputs were lost: a crash, or a
timeout after Redis ran the call) gets the same resolutions: ``new`` stays ``new`` and the merges are
reported again, so neither the ``created`` record nor the merge hand-off is lost. Another occurrence
of the same message (another source) or one past the memo TTL resolves afresh, as does an event
without a source. Erasure takes the memos with the profile.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import redis
from identity.redis_scan import dump, holding

from streams.constants import Keys
from streams.identity.base import IdentityStore, Resolution, ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack

pytestmark = pytest.mark.stack

ANN = [("anonymous_id", "ann-anon-7f3"), ("email", "ann@example.com"), ("user_id", "ann-42")]


def I(t: str, v: str) -> Identifier:  # noqa: E743
    return Identifier(t, v)


def batch(tag: str, offset: int = 0, source: bool = True) -> list[ResolveRequest]:
    """Ann: two profiles, merged; a match; a limit hit. Bob: one profile."""
    ids = [
        (I(*ANN[0]),),  # new
        (I(*ANN[1]),),  # new
        (I(*ANN[0]), I(*ANN[1])),  # merged
        (I(*ANN[0]),),  # matched: not remembered
        (I(*ANN[2]), I(*ANN[0])),  # matched, adds the user id
        (I(*ANN[2]), I("user_id", "ann-typo-43")),  # matched, drops the second user id
        (I("anonymous_id", "bob-anon-c1d"), I("email", "bob@example.com")),  # new
    ]
    return [
        ResolveRequest(
            f"{tag}-{n}", 1000 + n, "web", i, {"n": n}, f"cx.events.raw/3/{offset + n}" if source else ""
        )
        for n, i in enumerate(ids)
    ]


Factory = Callable[..., IdentityStore]


@asynccontextmanager
async def stores(stack: LocalStack) -> AsyncIterator[tuple[Factory, Factory]]:
    """Makers of a fresh memory store and a fresh Redis store, with the same keyword arguments."""
    client = connect(stack.redis_url)

    def redis_store(**kw: object) -> IdentityStore:
        return RedisIdentityStore(client, Keys(f"rp-{uuid.uuid4().hex[:8]}"), **kw)  # type: ignore[arg-type]

    try:
        yield MemoryIdentityStore, redis_store
    finally:
        await client.aclose()


def outcomes(res: list[Resolution]) -> list[str]:
    return [r.outcome + ("+dropped" if r.dropped else "") for r in res]


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_the_same_batch_again_gets_the_same_resolutions(stack: LocalStack, kind: str) -> None:
    tag = uuid.uuid4().hex[:6]

    async def run() -> None:
        async with stores(stack) as (memory, redis_):
            store = memory() if kind == "memory" else redis_()
            first = await store.resolve(batch(tag))
            assert outcomes(first) == ["new", "new", "merged", "matched", "matched", "matched+dropped", "new"]
            survivor = first[2].profile_id
            before = await store.profile(survivor)

            assert await store.resolve(batch(tag)) == first, "created and merges reported again"
            assert await store.profile(survivor) == before, "and nothing applied twice"

            other = await store.resolve(batch(tag, offset=100))  # same messages, another occurrence
            assert outcomes(other) == ["matched"] * 5 + ["matched+dropped", "matched"]
            assert {r.profile_id for r in other[:6]} == {survivor}
            assert not any(r.created or r.merges for r in other)

    asyncio.run(run())


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_without_a_source_nothing_is_remembered(stack: LocalStack, kind: str) -> None:
    tag = uuid.uuid4().hex[:6]

    async def run() -> None:
        async with stores(stack) as (memory, redis_):
            store = memory() if kind == "memory" else redis_()
            await store.resolve(batch(tag, source=False))
            again = await store.resolve(batch(tag, source=False))
            assert outcomes(again) == ["matched"] * 5 + ["matched+dropped", "matched"]
            if isinstance(store, RedisIdentityStore):
                raw = redis.Redis.from_url(stack.redis_url)
                assert not [k for k in dump(raw, store.keys.graph + "*") if ":r" in k]

    asyncio.run(run())


def test_an_expired_memo_resolves_afresh(stack: LocalStack) -> None:
    tag = uuid.uuid4().hex[:6]
    now = [1000.0]

    async def run() -> None:
        async with stores(stack) as (memory, redis_):
            mem, red = memory(memo_ttl=1, clock=lambda: now[0]), redis_(memo_ttl=1)
            for store in (mem, red):
                assert outcomes(await store.resolve(batch(tag)))[:3] == ["new", "new", "merged"]
            now[0] += 1.0
            await asyncio.sleep(1.1)
            for store in (mem, red):
                assert outcomes(await store.resolve(batch(tag)))[:3] == ["matched"] * 3
            # the expired memos are gone from memory too; the limit hit is remembered afresh
            assert [m for m, _ in mem.memos] == [f"{tag}-5"]

    asyncio.run(run())


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_a_call_that_ran_but_was_not_answered_is_safe_to_repeat(stack: LocalStack, chunk: int) -> None:
    """The first chunks ran (Redis applied them) and the batch is resolved again from the start:
    the answers are those of a single uninterrupted run, in Redis and in memory."""
    tag = uuid.uuid4().hex[:6]
    reqs = batch(tag)

    async def run() -> None:
        async with stores(stack) as (memory, redis_):
            expected = await redis_().resolve(reqs)
            assert expected == await memory().resolve(reqs)
            for store in (redis_(max_ids_per_call=chunk), memory()):
                await store.resolve(reqs[:3])  # lost: a timeout on the socket after Redis ran it
                assert await store.resolve(reqs) == expected

    asyncio.run(run())


def test_memos_live_in_the_graph_tag_for_the_ttl(stack: LocalStack) -> None:
    tag = uuid.uuid4().hex[:6]
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> RedisIdentityStore:
        async with stores(stack) as (_, redis_):
            store = redis_(memo_ttl=3600)
            assert isinstance(store, RedisIdentityStore)
            await store.resolve(batch(tag))
            return store

    store = asyncio.run(run())
    reqs = batch(tag)
    prefix = store.keys.graph[1:].split(":")[0]
    assert all(k.startswith(store.keys.graph) for k in dump(raw, "*" + prefix + "*")), "one cluster slot"
    remembered = [r for r in reqs if raw.exists(store.keys.resolution(r.message_id, r.source))]
    assert [r.message_id for r in remembered] == [f"{tag}-{n}" for n in (0, 1, 2, 5, 6)]
    assert 3500 < raw.ttl(store.keys.resolution(reqs[0].message_id, reqs[0].source)) <= 3600


def test_erasure_takes_the_memos_with_the_profile(stack: LocalStack) -> None:
    tag = uuid.uuid4().hex[:6]
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> tuple[Keys, list[str], list[str]]:
        async with stores(stack) as (memory, redis_):
            red, mem = redis_(), memory()
            assert isinstance(red, RedisIdentityStore) and isinstance(mem, MemoryIdentityStore)
            res = await red.resolve(batch(tag))
            await mem.resolve(batch(tag))
            ann = await red.lookup(I(*ANN[0]))
            assert ann is not None
            gone = await red.forget(ann)
            assert await mem.forget(ann) == gone
            assert [m.profile_id for m, _ in mem.memos.values()] == [res[6].profile_id], "bob's memo stays"
            return red.keys, gone, [v for _, v in ANN]

    keys, gone, ann_values = asyncio.run(run())
    assert len(gone) == 2
    assert holding(raw, {*gone, *ann_values, "ann-typo-43"}, keys.graph + "*") == []
    assert [k for k in dump(raw, keys.graph + "*") if ":r:" in k] == [
        keys.resolution(f"{tag}-6", "cx.events.raw/3/6")
    ]

"""Resolution is one pass over an event's identifiers, with exactly the results of drop-and-retry.

The one-pass memory store gives the old quadratic algorithm's results (``quadratic.py``) to the
letter: survivor, merges and their linking identifiers, dropped identifiers and their order. The
Lua gives the memory store's, in batches split into chunks of any size. One event with 1,000
identifiers resolves alike in all three, and Redis does a number of lookups linear in them.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from identity.quadratic import QuadraticMemoryStore

from streams.constants import BLOCKED_IDENTIFIER_VALUES, Keys
from streams.identity.base import IdentityRules, IdentityStore, Resolution, ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore, chunks
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack

TYPES = ["user_id", "email", "phone", "device_id", "anonymous_id", "crm_ref"]
VALUES = ["a", "b", "c", "d", "e", "f", "g"]

events = st.lists(
    st.tuples(
        st.lists(
            st.tuples(st.sampled_from(TYPES), st.sampled_from([*VALUES, "null"])), min_size=1, max_size=8
        ),
        st.integers(0, 50),
    ),
    min_size=1,
    max_size=40,
)
rules_ = st.builds(
    IdentityRules,
    priority=st.fixed_dictionaries({t: st.integers(0, 3) for t in TYPES}),  # ties on purpose
    limits=st.dictionaries(st.sampled_from(TYPES), st.integers(1, 3)),
    max_identifiers=st.sampled_from([2, 3, 5, 8, 100]),
    max_merges=st.sampled_from([0, 1, 2, 3, 50]),
    blocked=st.just(BLOCKED_IDENTIFIER_VALUES),
)


def requests(stream: list[tuple[list[tuple[str, str]], int]]) -> list[ResolveRequest]:
    return [
        ResolveRequest(
            f"m{n}", 1000 + ts, "web", tuple(Identifier(t, v) for t, v in ids), {"n": n}, f"raw/0/{n}"
        )
        for n, (ids, ts) in enumerate(stream)
    ]


async def in_batches(store: IdentityStore, reqs: Sequence[ResolveRequest], size: int) -> list[Resolution]:
    out: list[Resolution] = []
    for i in range(0, len(reqs), size):
        out += await store.resolve(reqs[i : i + size])
    return out


async def views(store: IdentityStore, res: list[Resolution]) -> list[object]:
    out: list[object] = []
    for pid in sorted({r.profile_id for r in res}):
        v = await store.profile(pid)
        assert v is not None
        out.append((v.profile_id, sorted(map(str, v.identifiers)), v.traits, v.channels, v.merges))
    return out


@settings(max_examples=400, deadline=None)
@given(stream=events, rules=rules_)
def test_one_pass_memory_store_resolves_exactly_as_drop_and_retry(
    stream: list[tuple[list[tuple[str, str]], int]], rules: IdentityRules
) -> None:
    async def run() -> None:
        reqs = requests(stream)
        new, old = MemoryIdentityStore(rules), QuadraticMemoryStore(rules)
        got = await new.resolve(reqs)
        assert got == await old.resolve(reqs)
        assert await views(new, got) == await views(old, got)

    asyncio.run(run())


_prefix = itertools.count()


@pytest.mark.stack
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=events, rules=rules_, batch=st.integers(1, 40), chunk=st.integers(1, 20))
def test_redis_resolves_as_memory_in_chunks_of_any_size_and_again_on_replay(
    stack: LocalStack,
    stream: list[tuple[list[tuple[str, str]], int]],
    rules: IdentityRules,
    batch: int,
    chunk: int,
) -> None:
    async def run() -> None:
        client = connect(stack.redis_url)
        prefix = f"op{next(_prefix)}-{uuid.uuid4().hex[:8]}"
        try:
            reqs = requests(stream)
            store = RedisIdentityStore(client, Keys(prefix), rules, max_ids_per_call=chunk)
            memory = MemoryIdentityStore(rules)
            got = await in_batches(store, reqs, batch)
            assert got == await memory.resolve(reqs)
            assert await views(store, got) == await views(memory, got)
            # replayed from the same sources: what was reported is reported again, the rest matches
            again = await in_batches(store, reqs, batch)
            assert again == await memory.resolve(reqs)
            for first, second in zip(got, again, strict=True):
                if first.outcome != "matched" or first.dropped:
                    assert second == first
                else:
                    assert second == Resolution(memory._live(first.profile_id), "matched")
        finally:
            keys = [k async for k in client.scan_iter(match="{" + prefix + ":*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    asyncio.run(run())


def test_chunks_are_consecutive_and_bounded() -> None:
    assert list(chunks([], 5)) == []
    assert list(chunks([2, 2, 2, 9, 1, 5, 5], 5)) == [
        range(0, 2),
        range(2, 3),
        range(3, 4),  # alone, bigger than the bound: an event is never split
        range(4, 5),
        range(5, 6),
        range(6, 7),
    ]
    assert list(chunks([1] * 7, 3)) == [range(0, 3), range(3, 6), range(6, 7)]


# ------------------------------------------------------------------ one event, 1,000 identifiers

UNLIMITED = IdentityRules(limits={}, max_identifiers=10**6, max_merges=10**6)


def thousand(kind: str) -> tuple[list[ResolveRequest], ResolveRequest]:
    """Setup requests, then the event with 1,000 identifiers."""
    if kind == "new":  # nothing known: the identifier cap keeps 100
        return [], ResolveRequest(
            "big", 5000, "web", tuple(Identifier("external_id", f"x{n}") for n in range(1000))
        )
    # 300 known people, each a crm_ref and a device; the event names them all and 700 new cookies
    setup = [
        ResolveRequest(
            f"s{k}", 1000 + k, "web", (Identifier("crm_ref", f"c{k:03d}"), Identifier("device_id", f"d{k}"))
        )
        for k in range(300)
    ]
    ids = [Identifier("crm_ref", f"c{k:03d}") for k in range(300)]
    ids += [Identifier("anonymous_id", f"a{n}") for n in range(700)]
    return setup, ResolveRequest("big", 5000, "web", tuple(ids), {"plan": "gold"})


def get_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0)) + int(
        stats.get("cmdstat_smembers", {}).get("calls", 0)
    )


@pytest.mark.stack
@pytest.mark.parametrize(
    ("kind", "rules"),
    [("new", IdentityRules()), ("known", IdentityRules()), ("known", UNLIMITED)],
    ids=["new-capped", "known-capped", "known-unlimited"],
)
def test_one_event_with_a_thousand_identifiers(stack: LocalStack, kind: str, rules: IdentityRules) -> None:
    setup, big = thousand(kind)
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> tuple[Resolution, int]:
        client = connect(stack.redis_url)
        try:
            store = RedisIdentityStore(client, Keys(f"big-{uuid.uuid4().hex[:8]}"), rules)
            memory, old = MemoryIdentityStore(rules), QuadraticMemoryStore(rules)
            for s in (store, memory, old):
                await s.resolve(setup)
            before = get_calls(raw)
            (got,) = await store.resolve([big])
            reads = get_calls(raw) - before
            assert [got] == await memory.resolve([big]) == await old.resolve([big])
            assert await views(store, [got]) == await views(memory, [got])
            return got, reads
        finally:
            await client.aclose()

    got, reads = asyncio.run(run())
    assert reads <= 2 * 1000, f"{reads} GET/SMEMBERS: linear in the identifiers (drop-and-retry: ~500k)"
    if rules is UNLIMITED:
        assert got.outcome == "merged" and len(got.merges) == 299 and not got.dropped
    else:
        ordered = rules.prepare(big)
        kept = len(ordered) - len(got.dropped)
        assert kept <= 100, "the caps keep at most 100 identifiers"
        assert list(got.dropped) == ordered[kept:][::-1], "dropped lowest priority first"

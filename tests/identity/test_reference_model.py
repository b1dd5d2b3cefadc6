"""Both stores group identifiers into profiles exactly as a plain union-find with the same rules does.

Random streams with shared identifiers (small value pools, so people collide), blocked
values, and random rules (priorities with ties, per-type limits, identifier and merge
caps), so the drop-and-retry rule is exercised on most examples.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from identity.reference import Ident, Rules, UnionFind

from streams.constants import BLOCKED_IDENTIFIER_VALUES, Keys
from streams.identity.base import (
    DEFAULT_LIMITS,
    DEFAULT_PRIORITY,
    IdentityRules,
    IdentityStore,
    ResolveRequest,
)
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack

TYPES = ["user_id", "email", "phone", "device_id", "anonymous_id", "loyalty_id"]
VALUES = ["a", "b", "c", "d", "e", "f"]
BLOCKED = ["null", "Guest", "unknown"]  # blocked by default (case-insensitive)

identifiers = st.tuples(st.sampled_from(TYPES), st.sampled_from(VALUES + VALUES + BLOCKED))
streams_ = st.lists(
    st.tuples(
        st.lists(identifiers, min_size=1, max_size=4), st.integers(0, 50), st.sampled_from(["web", "pos"])
    ),
    min_size=1,
    max_size=40,
)
random_rules = st.builds(
    Rules,
    priority=st.fixed_dictionaries({t: st.integers(0, 3) for t in TYPES}),  # ties on purpose
    limits=st.dictionaries(st.sampled_from(TYPES), st.integers(1, 3)),
    max_identifiers=st.sampled_from([2, 3, 4, 6, 12]),
    max_merges=st.sampled_from([0, 0, 1, 1, 2, 3, 6]),  # small caps bind often enough to matter
    blocked=st.just(BLOCKED_IDENTIFIER_VALUES),
)
default_rules = st.just(Rules(DEFAULT_PRIORITY, DEFAULT_LIMITS, 100, 50, BLOCKED_IDENTIFIER_VALUES))
rules_ = st.one_of(default_rules, random_rules)

Stream = list[tuple[list[tuple[str, str]], int, str]]

#: A merge cap that binds: the third event would fuse two profiles and must drop its second id.
MERGE_CAP: Stream = [
    ([("user_id", "a")], 0, "web"),
    ([("email", "b")], 1, "web"),
    ([("user_id", "a"), ("email", "b")], 2, "web"),
]
MERGE_CAP_RULES = Rules(DEFAULT_PRIORITY, {}, 100, 0, BLOCKED_IDENTIFIER_VALUES)


def requests(stream: Stream) -> list[ResolveRequest]:
    return [
        ResolveRequest(f"m{n}", 1000 + ts, ch, tuple(Identifier(t, v) for t, v in ids), {"n": n})
        for n, (ids, ts, ch) in enumerate(stream)
    ]


def store_rules(r: Rules) -> IdentityRules:
    return IdentityRules(dict(r.priority), dict(r.limits), r.max_identifiers, r.max_merges, r.blocked)


def reference_groups(stream: Stream, rules: Rules) -> set[frozenset[Ident]]:
    uf = UnionFind(rules)
    for n, (ids, _, _) in enumerate(stream):
        uf.add(f"m{n}", ids)
    return uf.groups()


async def store_groups(store: IdentityStore, stream: Stream) -> set[frozenset[Ident]]:
    """Group every identifier the stream mentions by the profile the store resolves it to."""
    universe = {i for ids, _, _ in stream for i in ids} | {
        ("message_id", f"m{n}") for n in range(len(stream))
    }
    by_pid: dict[str, set[Ident]] = {}
    for t, v in sorted(universe):
        pid = await store.lookup(Identifier(t, v))
        if pid is not None:
            by_pid.setdefault(pid, set()).add((t, v))
    for pid, group in by_pid.items():  # and the profile lists exactly those identifiers
        view = await store.profile(pid)
        assert view is not None and view.profile_id == pid
        assert {(i.type, i.value) for i in view.identifiers} == group
    return {frozenset(g) for g in by_pid.values()}


async def resolve_in_batches(store: IdentityStore, reqs: Sequence[ResolveRequest], size: int) -> None:
    for i in range(0, len(reqs), size):
        await store.resolve(reqs[i : i + size])


@settings(max_examples=300, deadline=None)
@given(stream=streams_, rules=rules_)
@example(stream=MERGE_CAP, rules=MERGE_CAP_RULES)
def test_memory_store_groups_like_union_find(stream: Stream, rules: Rules) -> None:
    async def run() -> set[frozenset[Ident]]:
        store = MemoryIdentityStore(store_rules(rules))
        await store.resolve(requests(stream))
        return await store_groups(store, stream)

    assert asyncio.run(run()) == reference_groups(stream, rules)


_prefix = itertools.count()


@pytest.mark.stack
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams_, rules=rules_, batch=st.integers(1, 12))
@example(stream=MERGE_CAP, rules=MERGE_CAP_RULES, batch=2)
def test_redis_store_groups_like_union_find(
    stack: LocalStack, stream: Stream, rules: Rules, batch: int
) -> None:
    async def run() -> set[frozenset[Ident]]:
        client = connect(stack.redis_url)
        prefix = f"uf{next(_prefix)}-{uuid.uuid4().hex[:8]}"
        try:
            store = RedisIdentityStore(client, Keys(prefix), store_rules(rules))
            await resolve_in_batches(store, requests(stream), batch)
            return await store_groups(store, stream)
        finally:
            keys = [k async for k in client.scan_iter(match="{" + prefix + ":*", count=1000)]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    assert asyncio.run(run()) == reference_groups(stream, rules)


def test_the_reference_can_tell_a_wrong_grouping() -> None:
    """Guard against a vacuous comparison: limits change the reference's answer."""
    stream: Stream = [
        ([("user_id", "a"), ("device_id", "t")], 0, "web"),
        ([("user_id", "b"), ("device_id", "t")], 1, "web"),
    ]
    loose = Rules(DEFAULT_PRIORITY, {}, 100, 50, BLOCKED_IDENTIFIER_VALUES)
    strict = Rules(DEFAULT_PRIORITY, {"user_id": 1}, 100, 50, BLOCKED_IDENTIFIER_VALUES)
    assert reference_groups(stream, loose) == {
        frozenset({("user_id", "a"), ("user_id", "b"), ("device_id", "t")})
    }
    assert reference_groups(stream, strict) == {
        frozenset({("user_id", "a"), ("device_id", "t")}),
        frozenset({("user_id", "b")}),
    }

"""Retention on a real Redis: anonymous-only profiles are removed by Redis expiry after the retention
period without activity (graph keys and decide-stage state), known profiles stay, a profile that
becomes known is persisted, activity refreshes the clock, and merge leftovers expire.

The stores take the retention in seconds (``Settings.anonymous_retention_days`` x 86,400 in
production, see ``streams.runtime.Stores.redis``); these tests give them 2 seconds and wait for
Redis to expire the keys, the same mechanism as in production, only shorter.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

import pytest
import redis
from identity.redis_scan import dump

from streams.constants import ANONYMOUS_TYPES, Keys, retention_margin
from streams.engine.state import RedisStateStore
from streams.exceptions import ConfigError
from streams.identity.base import ResolveRequest
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.settings import Settings
from streams.stack import LocalStack
from streams.state import ProfileState

pytestmark = pytest.mark.stack

TTL = 2  # seconds: the retention period of these tests


def I(t: str, v: str) -> Identifier:  # noqa: E743
    return Identifier(t, v)


def req(ts: int, *ids: Identifier) -> ResolveRequest:
    return ResolveRequest(uuid.uuid4().hex, ts, "web", ids, {"plan": "free"})


def wait_until_gone(raw: redis.Redis, keys: list[str], seconds: float = 8.0) -> None:
    """Redis expires keys actively (sampling, ~10 times a second) and on access: touch them."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not raw.exists(*keys):
            return
        time.sleep(0.2)


def test_anonymous_only_profiles_expire_known_ones_stay(stack: LocalStack) -> None:
    keys = Keys(f"ret-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> dict[str, str]:
        client = connect(stack.redis_url)
        try:
            ids = RedisIdentityStore(client, keys, anonymous_ttl=TTL, merged_ttl=TTL)
            states = RedisStateStore(client, keys, anonymous_ttl=TTL)
            res = await ids.resolve(
                [
                    req(1, I("anonymous_id", "visitor-1"), I("device_id", "dev-1")),  # a one-time visitor
                    req(2, I("anonymous_id", "visitor-2")),  # two anonymous profiles that merge
                    req(3, I("device_id", "dev-2")),
                    req(4, I("anonymous_id", "visitor-2"), I("device_id", "dev-2")),
                    req(5, I("user_id", "known-1")),  # known from the start
                    req(6, I("anonymous_id", "becomes-known")),  # anonymous, then known
                    req(7, I("anonymous_id", "becomes-known"), I("email", "h:" + "a" * 40)),
                ]
            )
            pids = {
                "visitor": res[0].profile_id,
                "merged": res[3].profile_id,
                "absorbed": res[3].merges[0].absorbed,
                "known": res[4].profile_id,
                "linked": res[6].profile_id,
            }
            await states.save(
                {
                    pids["visitor"]: ProfileState(reach=["anonymous_id", "device_id"]),
                    pids["merged"]: ProfileState(reach=["anonymous_id", "device_id"]),
                    pids["known"]: ProfileState(reach=["user_id"]),
                    pids["linked"]: ProfileState(reach=["anonymous_id", "email"]),
                }
            )
            return pids
        finally:
            await client.aclose()

    pids = asyncio.run(run())
    everything = dump(raw, f"*{keys.prefix}*")
    anon = [k for k in everything if pids["visitor"] in k or pids["merged"] in k or pids["absorbed"] in k]
    anon += [k for k in everything if any(v in k for v in ("visitor-1", "dev-1", "visitor-2", "dev-2"))]
    assert anon and all(0 < raw.ttl(k) <= TTL for k in anon), {k: raw.ttl(k) for k in anon}
    kept = [k for k in everything if k not in anon]
    assert any(pids["known"] in k for k in kept) and any(pids["linked"] in k for k in kept)
    assert all(raw.ttl(k) == -1 for k in kept), "known (and newly known) profiles never expire"

    wait_until_gone(raw, anon, TTL + 6)
    left = dump(raw, f"*{keys.prefix}*")
    assert not [k for k in left if k in anon], "the anonymous-only profiles are gone, with their state"
    assert set(left) == set(kept), "nothing else went"

    async def after() -> None:
        client = connect(stack.redis_url)
        try:
            ids = RedisIdentityStore(client, keys, anonymous_ttl=TTL)
            assert await ids.lookup(I("anonymous_id", "visitor-1")) is None
            assert await ids.lookup(I("device_id", "dev-2")) is None
            assert await ids.lookup(I("user_id", "known-1")) == pids["known"]
            linked = await ids.profile(pids["linked"])
            assert linked is not None and {i.type for i in linked.identifiers} == {"anonymous_id", "email"}
            assert linked.traits["plan"][0] == "free"
            loaded = await RedisStateStore(client, keys).load([pids["known"], pids["visitor"]])
            assert loaded[pids["known"]].reach == ["user_id"]
            assert loaded[pids["visitor"]].reach == [], "an expired state loads as a fresh one"
        finally:
            await client.aclose()

    asyncio.run(after())


def test_activity_refreshes_the_retention_and_old_profiles_are_classified(stack: LocalStack) -> None:
    keys = Keys(f"ret-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)
    retention = 60

    async def run() -> tuple[str, str]:
        client = connect(stack.redis_url)
        try:
            legacy = RedisIdentityStore(client, keys)  # written before retention existed: no TTL
            old_anon = (await legacy.resolve([req(1, I("anonymous_id", "old-visitor"))]))[0].profile_id
            old_known = (await legacy.resolve([req(1, I("crm_id", "crm-7"))]))[0].profile_id
            assert raw.ttl(keys.profile(old_anon)) == -1
            store = RedisIdentityStore(client, keys, anonymous_ttl=retention)
            raw.expire(keys.identifier("anonymous_id", "old-visitor"), 5)  # as if most time had passed
            await store.resolve([req(2, I("anonymous_id", "old-visitor")), req(2, I("crm_id", "crm-7"))])
            return old_anon, old_known
        finally:
            await client.aclose()

    anon, known = asyncio.run(run())
    assert raw.ttl(keys.identifier("anonymous_id", "old-visitor")) > 50, "activity restarts the clock"
    assert raw.ttl(keys.profile(anon)) > 50 and raw.hget(keys.profile(anon), "an") == b"1"
    assert raw.ttl(keys.profile(known)) == -1 and raw.hget(keys.profile(known), "an") == b"0"
    assert raw.ttl(keys.identifier("crm_id", "crm-7")) == -1


def test_a_merge_into_a_known_profile_persists_the_anonymous_keys(stack: LocalStack) -> None:
    keys = Keys(f"ret-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> str:
        client = connect(stack.redis_url)
        try:
            store = RedisIdentityStore(client, keys, anonymous_ttl=3600, merged_ttl=600)
            await store.resolve([req(1, I("user_id", "u-9")), req(2, I("anonymous_id", "a-9"))])
            res = await store.resolve([req(3, I("anonymous_id", "a-9"), I("user_id", "u-9"))])
            assert res[0].merges
            return res[0].merges[0].absorbed
        finally:
            await client.aclose()

    absorbed = asyncio.run(run())
    assert raw.ttl(keys.identifier("anonymous_id", "a-9")) == -1, "it belongs to a known profile now"
    assert 0 < raw.ttl(keys.profile(absorbed)) <= 600, "the merge leftover expires"


def test_an_anonymous_survivor_that_absorbs_a_known_profile_is_persisted(stack: LocalStack) -> None:
    """The survivor is the older profile: here the anonymous one. It becomes known by the merge."""
    keys = Keys(f"ret-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> tuple[str, str]:
        client = connect(stack.redis_url)
        try:
            store = RedisIdentityStore(client, keys, anonymous_ttl=3600, merged_ttl=600)
            await store.resolve([req(1, I("anonymous_id", "a-8"), I("device_id", "d-8"))])
            await store.resolve([req(2, I("user_id", "u-8"))])
            res = await store.resolve([req(3, I("user_id", "u-8"), I("anonymous_id", "a-8"))])
            (m,) = res[0].merges
            return m.survivor, m.absorbed
        finally:
            await client.aclose()

    survivor, absorbed = asyncio.run(run())
    assert raw.hget(keys.profile(survivor), "an") == b"0"
    k = keys.profile(survivor)
    for key in (k, k + ":ids", k + ":ch", k + ":absorbed", k + ":traits"):
        assert raw.ttl(key) == -1, key
    for t, v in (("anonymous_id", "a-8"), ("device_id", "d-8"), ("user_id", "u-8")):
        assert raw.get(keys.identifier(t, v)) == survivor.encode()
        assert raw.ttl(keys.identifier(t, v)) == -1, (t, v)
    assert 0 < raw.ttl(keys.profile(absorbed)) <= 600


def test_a_visitors_keys_outlive_the_retention_and_a_burst_refreshes_them_once(stack: LocalStack) -> None:
    """Keys get the retention plus a margin (``retention_margin``) and are refreshed only once their
    TTL falls below the retention, or when an event may have created a key (an identifier, a merge,
    the first trait). Whatever a visitor does, every key of the profile has a TTL between
    the retention and the retention plus the margin after each event: none is left without one,
    none expires early. Time passing is simulated by lowering the TTLs, as in production, and a
    lowered retention setting by raising them."""
    keys = Keys(f"ret-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)
    retention = 3600
    top = (retention + retention_margin(retention)) * 1000
    rnd = random.Random(7)

    def event(n: int) -> ResolveRequest:
        ids = [I("anonymous_id", "visitor")]
        if rnd.random() < 0.2:
            ids.append(I("device_id", f"dev-{n}"))  # a new identifier
        traits = {rnd.choice(["plan", "theme", "lang"]): n} if rnd.random() < 0.3 else {}
        channel = rnd.choice(["web", "web", "web", "app", "email"])
        return ResolveRequest(f"m{n}", 1000 + n, channel, ids, traits)

    def expires() -> dict[str, int]:
        return {k.decode(): int(raw.pttl(k)) for k in raw.scan_iter(match=f"*{keys.prefix}*", count=1000)}

    async def run() -> tuple[int, int]:
        client = connect(stack.redis_url)
        try:
            # the absorbed profile's pointer lives the retention here too (30 days by default)
            store = RedisIdentityStore(client, keys, anonymous_ttl=retention, merged_ttl=retention)
            visitor = [I("anonymous_id", "visitor")]
            scripted = [  # each thing that may create a key, first on its own, then at random
                ResolveRequest("m0", 1000, "web", visitor, {}),  # no traits hash yet
                ResolveRequest("m1", 1001, "web", visitor, {"plan": 1}),  # the traits hash
                ResolveRequest("m2", 1002, "app", visitor, {}),  # a channel
                ResolveRequest("m3", 1003, "app", [*visitor, I("device_id", "dev-0")], {}),  # an id
                ResolveRequest("m4", 1004, "web", [I("anonymous_id", "tab-2")], {}),  # a second profile
                ResolveRequest("m5", 1005, "web", [*visitor, I("anonymous_id", "tab-2")], {}),  # a merge
            ]
            repeats = repeat_expires = 0
            pointers: list[str] = []
            for n in range(150):
                lowered = n >= len(scripted) and rnd.random() < 0.2
                if lowered and rnd.random() < 0.75:  # a while passes: the TTLs fell below the retention
                    for k in expires():
                        raw.pexpire(k, retention * 1000 - rnd.randrange(1, 60_000))
                elif lowered:  # the retention setting was lowered: the TTLs are the old, longer one's
                    for k in expires():
                        raw.pexpire(k, 30 * retention * 1000)
                before = raw.info("commandstats").get("cmdstat_expire", {}).get("calls", 0)
                ev = scripted[n] if n < len(scripted) else event(n)
                (res,) = await store.resolve([ev])
                pointers += [keys.profile(m.absorbed) for m in res.merges]  # expire on their own clock
                ttl = {k: t for k, t in expires().items() if k not in pointers}
                low = {k: t for k, t in ttl.items() if not retention * 1000 - 5000 <= t <= top}
                assert not low, (n, ev, low)
                if n > len(scripted) and not lowered and len(ev.identifiers) == 1 and not ev.traits:
                    repeats += 1  # a page view within the margin (any channel), nothing new: no refresh
                    repeat_expires += raw.info("commandstats")["cmdstat_expire"]["calls"] - before
            return repeats, repeat_expires
        finally:
            await client.aclose()

    repeats, repeat_expires = asyncio.run(run())
    assert repeats > 50 and repeat_expires == 0, (repeats, repeat_expires)


def test_the_retention_setting_is_validated(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().anonymous_retention_days == 395
    assert make_settings(anonymous_retention_days=30).anonymous_retention_days == 30
    with pytest.raises(ConfigError) as err:
        make_settings(anonymous_retention_days=0)
    assert str(err.value) == (
        "CXSTREAM_ANONYMOUS_RETENTION_DAYS=0 is invalid: Input should be greater than or equal to 1"
    ), "one line naming the setting, the value and what is expected"


def test_anonymous_types_are_the_contracts() -> None:
    assert {"anonymous_id", "device_id"} <= ANONYMOUS_TYPES
    assert not ANONYMOUS_TYPES & {"user_id", "email", "phone", "crm_id", "loyalty_id"}


def test_a_timer_whose_state_expired_is_dropped_not_fired(make_settings: Callable[..., Settings]) -> None:
    """An anonymous visitor's cart timer outlives its state (retention shorter than the cart wait
    here): when it comes due, the fresh state does not hold it, so it is dropped as stale; a
    known customer's cart, same time, decides."""
    import dataclasses

    import orjson
    from identity.test_erasure import MIN, pending_timers, seg

    from streams.simulate import LocalPipeline
    from streams.testing import at

    s = make_settings(rules=("cart_abandoned",))
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    t0 = at("2026-03-02T09:00:00Z")
    cart = {"event": "Product Added", "properties": {"sku": "mug"}}

    async def run() -> tuple[list[bytes], str | None]:
        from streams.runtime import Stores

        prod = Stores.redis(s)
        assert isinstance(prod.identity, RedisIdentityStore) and isinstance(prod.states, RedisStateStore)
        client, keys = prod.identity.client, Keys(s.redis_prefix)
        stores = dataclasses.replace(
            prod,
            identity=RedisIdentityStore(client, keys, anonymous_ttl=TTL),
            states=RedisStateStore(client, keys, anonymous_ttl=TTL),
        )
        pipe = LocalPipeline(s.model_copy(update={"clock": "event", "partitions": 1}), stores)
        try:
            await pipe.feed(
                [
                    orjson.dumps(seg("track", t0, anonymousId="visitor-cart", **cart)),
                    orjson.dumps(seg("track", t0, userId="known-cart", **cart)),
                ]
            )
            assert len(pending_timers(raw, s.redis_prefix)) == 2
            anon = await stores.identity.lookup(I("anonymous_id", "visitor-cart"))
            assert anon is not None
            wait_until_gone(raw, [keys.state(anon), keys.profile(anon)], TTL + 6)
            assert not raw.exists(keys.state(anon)), "the visitor's state expired"
            # someone else moves the event clock past both cart timers
            await pipe.feed([orjson.dumps(seg("page", t0 + 120 * MIN, anonymousId="other", name="Home"))])
            res = await pipe.finish()
            assert pending_timers(raw, s.redis_prefix) == {}, "both timers are gone from Redis"
            return res.decisions, await stores.identity.lookup(I("user_id", "known-cart"))
        finally:
            await client.aclose()

    raw_decisions, known = asyncio.run(run())
    decisions = [orjson.loads(d) for d in raw_decisions]
    assert [(d["rule"]["name"], d["profileId"]) for d in decisions] == [("cart_abandoned", known)], (
        "only the known cart decides"
    )

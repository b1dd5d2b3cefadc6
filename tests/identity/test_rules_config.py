"""Identity rules as configuration: settings -> IdentityRules -> both stores; caps counted when hit."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.constants import Keys
from streams.exceptions import ConfigError
from streams.identity.base import DEFAULT_LIMITS, IdentityRules, ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.runtime import Stores
from streams.settings import Settings, load_settings
from streams.simulate import LocalPipeline
from streams.stack import LocalStack
from streams.testing import at, segment


def test_settings_override_the_default_tables_per_type() -> None:
    s = load_settings(
        identity_limits="email=2, device_id=3",
        identity_priority="device_id=95",
        identity_max_identifiers="20",
        identity_max_merges="4",
        blocked_identifiers="Shared-Kiosk,00000",
    )
    rules = IdentityRules.from_settings(s)
    assert rules.limits == {**DEFAULT_LIMITS, "email": 2, "device_id": 3}
    assert rules.rank("device_id") == 95 and rules.rank("user_id") == 100 and rules.rank("unheard_of") == 50
    assert (rules.max_identifiers, rules.max_merges) == (20, 4)
    assert {"shared-kiosk", "00000", "null"} <= rules.blocked
    # and they survive the trip to a child worker's environment
    env = {
        k.removeprefix("CXSTREAM_").lower(): v
        for k, v in s.to_env().items()
        if k.startswith("CXSTREAM_IDENTITY_")
    }
    assert (
        IdentityRules.from_settings(load_settings(**env, blocked_identifiers="Shared-Kiosk,00000")) == rules
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("identity_limits", "email=five", "TYPE=N"),
        ("identity_limits", "email=0", ">= 1"),
        ("identity_limits", "email", "e.g. user_id=1,email=5"),
        ("identity_priority", "email=high", "TYPE=RANK"),
        ("identity_priority", "e-mail=3", "TYPE=RANK"),
        ("identity_max_identifiers", "0", "greater than or equal to 1"),
        ("identity_max_merges", "-1", "greater than or equal to 0"),
    ],
)
def test_a_bad_identity_setting_is_one_line_naming_it(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**{name: value})
    msg = str(err.value)
    assert (
        "\n" not in msg
        and msg.startswith(f"CXSTREAM_{name.upper()}={value!r} is invalid")
        and expected in msg
    )


def count(outcome: str) -> float:
    return REGISTRY.get_sample_value("cxstream_identity_outcomes_total", {"outcome": outcome}) or 0.0


def test_configured_limit_reaches_the_pipeline_and_is_counted_when_hit() -> None:
    """CXSTREAM_IDENTITY_LIMITS=email=1: a second email is not attached, and the hit is counted."""
    s = Settings(partitions=1, clock="event", rules=(), identity_limits="email=1")
    t0 = at("2026-02-01T10:00:00Z")
    msgs = [
        segment("identify", t0, userId="u1", traits={"email": "a@example.com"}),
        segment("identify", t0 + 1, userId="u1", traits={"email": "b@example.com"}),
    ]
    before = count("limit_hit")

    async def go() -> tuple[str | None, str | None]:
        pipe = LocalPipeline(s, Stores.memory(s))
        await pipe.feed([orjson.dumps(m) for m in msgs])
        store = pipe.runtime.stores.identity
        return await store.lookup(Identifier("email", "a@example.com")), await store.lookup(
            Identifier("email", "b@example.com")
        )

    a, b = asyncio.run(go())
    assert a is not None and b is None
    assert count("limit_hit") == before + 1


def test_priority_decides_which_identifier_goes_first() -> None:
    """u2 shares u1's device: with devices ranked low the device goes and u2 keeps the email; with
    devices ranked above emails the email is dropped first (then the device still has to go)."""
    reqs = [
        ResolveRequest("m1", 1, "app", (Identifier("user_id", "u1"), Identifier("device_id", "tab"))),
        ResolveRequest(
            "m2",
            2,
            "app",
            (Identifier("user_id", "u2"), Identifier("device_id", "tab"), Identifier("email", "e@x.io")),
        ),
    ]

    def dropped(priority: str) -> list[str]:
        store = MemoryIdentityStore(IdentityRules.from_settings(load_settings(identity_priority=priority)))
        res = asyncio.run(store.resolve(reqs))
        return [str(i) for i in res[1].dropped]

    assert dropped("device_id=30") == ["device_id:tab"]
    assert dropped("device_id=95") == ["email:e@x.io", "device_id:tab"]


@pytest.mark.stack
def test_redis_store_built_from_settings_applies_them(stack: LocalStack) -> None:
    s = load_settings(
        redis_url=stack.redis_url, redis_prefix=f"rc-{uuid.uuid4().hex[:8]}", identity_max_merges="1"
    )
    stores = Stores.redis(s)
    assert isinstance(stores.identity, RedisIdentityStore)
    reqs = [ResolveRequest(f"m{n}", n, "web", (Identifier("anonymous_id", f"a{n}"),)) for n in range(3)] + [
        ResolveRequest("j1", 10, "web", (Identifier("anonymous_id", "a0"), Identifier("anonymous_id", "a1"))),
        ResolveRequest("j2", 11, "web", (Identifier("anonymous_id", "a0"), Identifier("anonymous_id", "a2"))),
    ]

    async def go() -> list[int]:
        try:
            return [len(r.merges) for r in await stores.identity.resolve(reqs)]
        finally:
            assert isinstance(stores.identity, RedisIdentityStore)
            await stores.identity.client.aclose()

    assert asyncio.run(go()) == [0, 0, 0, 1, 0], "the second merge would pass CXSTREAM_IDENTITY_MAX_MERGES=1"


@pytest.mark.stack
def test_blocked_values_never_link_in_either_store(stack: LocalStack) -> None:
    rules = IdentityRules(blocked=frozenset({"kiosk-1"}))
    reqs = [
        ResolveRequest("m1", 1, "pos", (Identifier("user_id", "u1"), Identifier("device_id", "KIOSK-1"))),
        ResolveRequest("m2", 2, "pos", (Identifier("user_id", "u2"), Identifier("device_id", "kiosk-1"))),
        ResolveRequest("m3", 3, "pos", (Identifier("device_id", "kiosk-1"),)),
    ]

    async def go() -> None:
        client = connect(stack.redis_url)
        try:
            for store in (
                MemoryIdentityStore(rules),
                RedisIdentityStore(client, Keys(f"bl-{uuid.uuid4().hex[:8]}"), rules),
            ):
                res = await store.resolve(reqs)
                assert [r.outcome for r in res] == ["new", "new", "new"]
                assert len({r.profile_id for r in res}) == 3
                assert await store.lookup(Identifier("device_id", "kiosk-1")) is None
                assert await store.lookup(Identifier("message_id", "m3")) == res[2].profile_id, (
                    "its own profile"
                )
        finally:
            await client.aclose()

    asyncio.run(go())

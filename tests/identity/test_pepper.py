"""With ``CXSTREAM_IDENTITY_PEPPER`` set, Redis holds no raw email or phone, in any spelling; without
it the same scan finds them (so the scan can fail), and ``profile show`` still finds people by email."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner
from identity.redis_scan import holding
from identity.test_erasure import close, pipeline_over_redis, seg

from streams.cli import main
from streams.settings import Settings
from streams.testing import at

pytestmark = pytest.mark.stack

MIN = 60_000
#: every spelling of the person's email and phone that could leak
RAW = {
    "ann.lee@example.com",
    "ann.lee",
    "4155550123",
    "415-555-0123",
    "555-0123",
    "5550123",
    "erin@example.org",
}


def journey(t0: int) -> list[dict[str, Any]]:
    return [
        seg(
            "identify",
            t0,
            anonymousId="anon-1",
            traits={"email": "Ann.Lee@Example.com", "phone": "(415) 555-0123"},
        ),
        seg(
            "track",
            t0 + MIN,
            anonymousId="anon-1",
            event="Product Added",
            properties={"sku": "kettle"},
            context={
                "traits": {"email": "ann.lee@example.com"},
                "externalIds": [{"id": "erin@example.org", "type": "email"}],
            },
        ),
        seg("identify", t0 + 2 * MIN, userId="u-1", traits={"phone": "+1 415-555-0123", "name": "Ann"}),
    ]


def load(s: Settings) -> list[str]:
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())

    async def run() -> None:
        pipe, stores = pipeline_over_redis(s)
        try:
            await pipe.feed([orjson.dumps(m) for m in journey(at("2026-03-02T09:00:00Z"))])
        finally:
            await close(stores)

    asyncio.run(run())
    return holding(raw, RAW, "*" + s.redis_prefix + "*")


def test_with_a_pepper_redis_holds_no_raw_email_or_phone(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(rules=("cart_abandoned",), identity_pepper="correct horse battery staple")
    assert load(s) == []
    out = CliRunner().invoke(main, ["profile", "show", "email:ANN.LEE@example.com"], env=s.to_env())
    assert out.exit_code == 0, out.output
    assert "profile p_" in out.output and "keyed hash" in out.output
    assert "ann.lee@example.com" not in "\n".join(out.output.lower().splitlines()[1:]), (
        "only the query echoed"
    )
    by_phone = CliRunner().invoke(main, ["profile", "show", "phone:415 555 0123"], env=s.to_env())
    assert by_phone.output.splitlines()[0].split()[1] == out.output.splitlines()[0].split()[1], "one person"


def test_without_a_pepper_the_scan_finds_them(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(rules=("cart_abandoned",))
    assert load(s), "the raw values are in Redis when no pepper is set"

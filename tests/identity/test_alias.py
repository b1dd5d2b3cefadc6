"""Segment's alias: ``previousId`` may be an anonymousId (the usual case) or an earlier userId."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from streams.identity.base import IdentityStore
from streams.intake.normalize import ms_to_iso
from streams.model import Identifier
from streams.pipeline.records import InRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.testing import at

T0 = at("2026-04-01T09:00:00Z")


def msg(i: int, **fields: object) -> bytes:
    base = {"messageId": f"m{i}", "timestamp": ms_to_iso(T0 + i * 1000), "context": {"channel": "web"}}
    return orjson.dumps({**base, **fields})


WANTED = [("user_id", "old-crm-42"), ("user_id", "ann-2026"), ("email", "ann@example.com")]
WANTED += [("anonymous_id", "old-crm-42"), ("anonymous_id", "anon-7"), ("user_id", "bob")]


def profiles_after(
    make_stores: Callable[[], Stores], values: list[bytes], batch: int
) -> Callable[[str, str], str | None]:
    """Intake (identity included) over ``values`` in batches; then the profile of each identifier."""

    async def run() -> dict[tuple[str, str], str | None]:
        stores = make_stores()  # inside the loop: a Redis client belongs to the loop it was made in
        rt = Runtime(Settings(partitions=1), stores)
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            await rt.intake.process([InRecord("raw", 0, start + j, None, v) for j, v in enumerate(part)], T0)
        ident: IdentityStore = stores.identity
        found = {w: await ident.lookup(Identifier(*w)) for w in WANTED}
        client = getattr(stores.states, "client", None)
        if client is not None:
            await client.aclose()
        return found

    found = asyncio.run(run())
    return lambda type_, value: found[(type_, value)]


JOURNEY = [
    msg(1, type="identify", userId="old-crm-42", traits={"email": "ann@example.com"}),
    msg(2, type="alias", userId="ann-2026", previousId="old-crm-42"),
    msg(3, type="track", event="Product Viewed", userId="ann-2026"),
]


@pytest.mark.parametrize("batch", [1, 3])
def test_an_alias_of_an_earlier_user_id_links_both_users(batch: int) -> None:
    lookup = profiles_after(lambda: Stores.memory(Settings(partitions=1)), JOURNEY, batch)
    old = lookup("user_id", "old-crm-42")
    assert old is not None
    assert lookup("user_id", "ann-2026") == old
    assert lookup("email", "ann@example.com") == old
    assert lookup("anonymous_id", "old-crm-42") is None  # not a second, anonymous reading of it


def test_an_alias_of_an_anonymous_id_links_as_before() -> None:
    values = [
        msg(1, type="page", anonymousId="anon-7"),
        msg(2, type="alias", userId="bob", previousId="anon-7"),
    ]
    lookup = profiles_after(lambda: Stores.memory(Settings(partitions=1)), values, 2)
    assert lookup("anonymous_id", "anon-7") == lookup("user_id", "bob") is not None


@pytest.mark.stack
@pytest.mark.parametrize("batch", [1, 3])
def test_redis_links_an_alias_of_a_user_id_as_the_reference_does(
    make_settings: Callable[..., Settings], batch: int
) -> None:
    s = make_settings(partitions=1)
    lookup = profiles_after(lambda: Stores.redis(s), JOURNEY, batch)
    old = lookup("user_id", "old-crm-42")
    assert old is not None and lookup("user_id", "ann-2026") == old
    assert lookup("anonymous_id", "old-crm-42") is None

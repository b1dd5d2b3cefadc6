"""The omnichannel journeys of docs/domain.md resolve as a person would expect, through the whole
pipeline (raw Segment messages in, in-memory stores)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from streams.identity.base import IdentityStore
from streams.model import Identifier
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.testing import at, segment

DAY = 86_400_000
T0 = at("2026-01-10T18:00:00Z")


def run(messages: list[dict[str, Any]]) -> tuple[IdentityStore, list[dict[str, Any]]]:
    async def go() -> tuple[IdentityStore, list[dict[str, Any]]]:
        pipe = LocalPipeline(Settings(partitions=1, clock="event", rules=("cart_abandoned",)))
        for m in messages:  # one by one: the order a person lived it
            await pipe.feed([orjson.dumps(m)])
        res = await pipe.finish()
        assert res.deadletters == 0, [r.headers for r in res.deadletter_records]
        return pipe.runtime.stores.identity, [orjson.loads(c) for c in res.identity_changes]

    return asyncio.run(go())


def profiles_of(store: IdentityStore, *refs: str) -> list[str | None]:
    async def go() -> list[str | None]:
        return [await store.lookup(Identifier.parse(r)) for r in refs]

    return asyncio.run(go())


def ext(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"type": t, "id": i} for t, i in pairs]


def test_automotive_web_lead_test_drive_and_dealer_crm_are_one_buyer() -> None:
    """Months of touchpoints: anonymous configurator visits, an email lead from a campaign, a test-drive
    request from the website, and the dealer's CRM record (historically a separate record)."""
    web = "cookie-7d1f"
    messages = [
        segment(
            "page",
            T0,
            anonymousId=web,
            name="Configurator",
            properties={"model": "EV6"},
            context={"channel": "web"},
        ),
        segment("page", T0 + 3 * DAY, anonymousId=web, name="Configurator", context={"channel": "web"}),
        segment(
            "identify",
            T0 + 20 * DAY,
            anonymousId="lead-4711",
            traits={"email": "Mia.Kranz@example.de"},
            context={"channel": "email"},
        ),
        segment(
            "track",
            T0 + 45 * DAY,
            anonymousId=web,
            event="Test Drive Requested",
            properties={"model": "EV6", "dealer": "D-114"},
            context={
                "channel": "web",
                "traits": {"email": "mia.kranz@example.de", "phone": "+49 30 1234567"},
            },
        ),
        segment(
            "identify",
            T0 + 52 * DAY,
            anonymousId="dms-row-88213",
            traits={"phone": "+49 (0)30 1234567", "name": "Mia Kranz"},
            context={"channel": "crm", "externalIds": ext(("crm_id", "CRM-88213"))},
        ),
    ]
    store, changes = run(messages)
    refs = [
        f"anonymous_id:{web}",
        "anonymous_id:lead-4711",
        "email:mia.kranz@example.de",
        "phone:+49301234567",
        "crm_id:CRM-88213",
        "anonymous_id:dms-row-88213",
    ]
    pids = profiles_of(store, *refs)
    assert None not in pids and len(set(pids)) == 1, dict(zip(refs, pids, strict=True))
    created = [c for c in changes if c["change"] == "created"]
    merged = [c for c in changes if c["change"] == "merged"]
    assert len(created) == 2 and len(merged) == 1, (
        "web and lead fused by the test drive; the dealer's phone joins"
    )
    assert created[0]["profileId"] == pids[0], "the oldest record, the first web visit, survives"


def test_retail_loyalty_app_web_and_card_on_file_under_different_names_are_one_customer() -> None:
    """One customer: a loyalty card at the till, an app account, a web cookie, a card on file, under
    slightly different names and emails; the loyalty id and the card prove it is one person. A namesake
    and the husband on the family tablet stay separate people."""
    messages = [
        segment(
            "track",
            T0,
            anonymousId="pos-7-txn-1001",
            event="Order Completed",
            properties={"order_id": "S-1001", "total": 54.9},
            traits={"name": "Ann Lee"},
            context={
                "channel": "pos",
                "externalIds": ext(("loyalty_id", "LOY-5521"), ("card_fingerprint", "cf_9f8e")),
            },
        ),
        segment(
            "identify",
            T0 + 2 * DAY,
            userId="app-ann-77",
            traits={"email": "ann.lee@example.com", "name": "Annie Lee"},
            context={
                "channel": "app",
                "device": {"id": "tablet-kitchen"},
                "externalIds": ext(("loyalty_id", "LOY-5521")),
            },
        ),
        segment("page", T0 + 3 * DAY, anonymousId="cookie-a1", name="Kettles", context={"channel": "web"}),
        segment(
            "identify",
            T0 + 3 * DAY + 60_000,
            anonymousId="cookie-a1",
            traits={"email": " Ann.Lee@Example.com "},
            context={"channel": "web"},
        ),
        segment(
            "track",
            T0 + 9 * DAY,
            anonymousId="cookie-b2",
            event="Order Completed",
            properties={"order_id": "W-2002", "total": 19.0},
            traits={"name": "A. Lee", "email": "annlee.work@example.com"},
            context={"channel": "web", "externalIds": ext(("card_fingerprint", "cf_9f8e"))},
        ),
        # not her: the same name, nothing shared
        segment(
            "identify",
            T0 + DAY,
            userId="app-other-5",
            traits={"name": "Ann Lee", "email": "ann.lee@another.org"},
        ),
        # her husband, on the family tablet: one user id per person, so the device does not fuse them
        segment(
            "identify",
            T0 + 4 * DAY,
            userId="app-tom-12",
            context={"channel": "app", "device": {"id": "tablet-kitchen"}},
        ),
    ]
    store, _ = run(messages)
    ann = [
        "loyalty_id:LOY-5521",
        "card_fingerprint:cf_9f8e",
        "anonymous_id:pos-7-txn-1001",
        "user_id:app-ann-77",
        "email:ann.lee@example.com",
        "anonymous_id:cookie-a1",
        "anonymous_id:cookie-b2",
        "email:annlee.work@example.com",
        "device_id:tablet-kitchen",
    ]
    pids = profiles_of(store, *ann)
    assert None not in pids and len(set(pids)) == 1, dict(zip(ann, pids, strict=True))
    other, tom = profiles_of(store, "user_id:app-other-5", "user_id:app-tom-12")
    assert other is not None and tom is not None
    assert len({pids[0], other, tom}) == 3

    async def traits() -> dict[str, Any]:
        view = await store.profile(pids[0])
        assert view is not None
        return {k: v for k, (v, _) in view.traits.items()}

    got = traits()
    assert asyncio.run(got)["name"] == "A. Lee", "the newest name wins; all her identifiers stay"

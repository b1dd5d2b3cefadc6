"""One person across web, email, CRM and store, as raw Segment messages, and what they imply.

Ann browses anonymously, signs in (user id + email), opens an email (the ESP knows her email),
is synced from the CRM (crm id, email, phone), and buys in a store with her loyalty card: the
store first knew her only by the card (a profile of its own, with an order), later by card and
phone, which merges the two. She also orders on the web and checks her loan eligibility three
times (one trigger). Every identifier ends in one profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.constants import DAY_MS, HOUR_MS, MINUTE_MS
from streams.engine.clock import wall_ms
from streams.model import JSONDict
from streams.testing import segment

EMAIL = "ann.lee@example.com"
PHONE = "+1 (415) 555-0123"
PHONE_E164 = "+14155550123"


@dataclass(frozen=True)
class Journey:
    messages: list[JSONDict]
    t0: int
    #: every way to name her, as TYPE:VALUE references a member of staff would type
    refs: tuple[str, ...]
    orders: int
    revenue: float
    first_order: int
    last_order: int
    last_activity: int
    channels: frozenset[str]


def ann(t0: int | None = None, tag: str = "") -> Journey:
    """The journey, starting ``t0`` (default: 10 days ago, so it is recent on the wall clock)."""
    t0 = t0 if t0 is not None else (wall_ms() - 10 * DAY_MS) // MINUTE_MS * MINUTE_MS
    anon, user, crm, card = f"anon-{tag}1", f"ann-{tag}1", f"CRM-{tag}77", f"L-{tag}123"
    email = EMAIL if not tag else f"ann.lee.{tag}@example.com"
    consent = {"consent": {"categoryPreferences": {"marketing": True, "personalization": True}}}
    m: list[JSONDict] = [
        # the store, before anything else: only the loyalty card; an order of 45.00
        segment(
            "track",
            t0,
            event="Order Completed",
            anonymousId=f"pos-{tag}tx1",
            properties={"order_id": "o1", "total": 45.0, "currency": "EUR"},
            context={"channel": "pos", "externalIds": [{"id": card, "type": "loyalty_id"}]},
        ),
        # the web, anonymous
        segment("page", t0 + HOUR_MS, anonymousId=anon, name="Home", context={"channel": "web"}),
        segment(
            "track",
            t0 + HOUR_MS + MINUTE_MS,
            event="Product Viewed",
            anonymousId=anon,
            properties={"product_id": "sku-1"},
            context={"channel": "web"},
        ),
        # signs in: user id + email, consent
        segment(
            "identify",
            t0 + HOUR_MS + 2 * MINUTE_MS,
            anonymousId=anon,
            userId=user,
            traits={"email": email, "first_name": "Ann"},
            context={"channel": "web", **consent},
        ),
        # the ESP: the email address, an anonymous id of its own
        segment(
            "track",
            t0 + DAY_MS,
            event="Email Opened",
            anonymousId=f"esp-{tag}9",
            properties={"campaign": "spring"},
            context={"channel": "email", "traits": {"email": email}},
        ),
        # the CRM sync: crm id, email, phone
        segment(
            "identify",
            t0 + 2 * DAY_MS,
            anonymousId=f"crm-sync-{tag}77",
            traits={"email": email, "phone": PHONE, "tier": "gold"},
            context={"channel": "crm", "externalIds": [{"id": crm, "type": "crm_id"}]},
        ),
        # the store again: card + phone at the till: merges the card's profile in; 120.50
        segment(
            "track",
            t0 + 3 * DAY_MS,
            event="Order Completed",
            anonymousId=f"pos-{tag}tx2",
            properties={"order_id": "o2", "total": 120.5, "currency": "EUR"},
            context={
                "channel": "pos",
                "traits": {"phone": PHONE},
                "externalIds": [{"id": card, "type": "loyalty_id"}],
            },
        ),
        # the web: an order with revenue only (no total): 80
        segment(
            "track",
            t0 + 4 * DAY_MS,
            event="Order Completed",
            userId=user,
            properties={"order_id": "o3", "revenue": 80, "currency": "EUR"},
            context={"channel": "web"},
        ),
    ]
    for i in range(3):
        m.append(
            segment(
                "track",
                t0 + 5 * DAY_MS + i * HOUR_MS,
                event="Loan Eligibility Checked",
                userId=user,
                context={"channel": "web"},
            )
        )
    return Journey(
        messages=m,
        t0=t0,
        refs=(
            f"user_id:{user}",
            f"email:{email.upper()}",
            f"phone:{PHONE}",
            f"crm_id:{crm}",
            f"loyalty_id:{card}",
            f"anonymous_id:{anon}",
        ),
        orders=3,
        revenue=245.5,
        first_order=t0,
        last_order=t0 + 4 * DAY_MS,
        last_activity=t0 + 5 * DAY_MS + 2 * HOUR_MS,
        channels=frozenset({"web", "email", "crm", "pos"}),
    )

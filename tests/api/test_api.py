"""The Profile API on a live ``cxstream api`` process over the test stack's Redis (contract 11)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from api.journey import EMAIL, PHONE_E164, ann
from api.server import OTHER_TOKEN, TOKEN, load_sync, running_api

from streams.api.app import authorized, id_type
from streams.api.models import openapi
from streams.engine.clock import wall_ms
from streams.settings import Settings

pytestmark = pytest.mark.stack

PEPPER = "pepper-for-the-api-tests-0123456789"


def _ms(iso: str) -> int:
    from streams.intake.normalize import parse_time_ms

    return parse_time_ms(iso)


@pytest.mark.parametrize("pepper", [None, PEPPER], ids=["plain", "pseudonymized"])
def test_one_person_by_every_identifier(
    api_settings: Callable[..., Settings], tmp_path: Path, pepper: str | None
) -> None:
    """Web, email, CRM and store events resolve to one profile; every identifier finds it, with
    the computed traits the events imply, consent as of now, segments and the recent triggers."""
    s = api_settings(identity_pepper=pepper)
    j = ann()
    load_sync(s, j.messages)
    with running_api(s, tmp_path / "api.log") as api:
        answers = [api.get(f"/v1/profiles/{ref}") for ref in j.refs]
    assert [a[0] for a in answers] == [200] * len(j.refs)
    profiles = [a[1] for a in answers]
    assert len({p["profileId"] for p in profiles}) == 1
    p = profiles[0]
    types = {i["type"] for i in p["identifiers"]}
    assert {"user_id", "email", "phone", "crm_id", "loyalty_id", "anonymous_id"} <= types
    c = p["computed"]
    assert c["orderCount"] == j.orders and c["revenue"] == j.revenue
    assert c["averageOrderValue"] == round(j.revenue / j.orders, 2)
    assert (_ms(c["firstOrder"]), _ms(c["lastOrder"])) == (j.first_order, j.last_order)
    assert _ms(c["lastActivity"]) == j.last_activity
    assert c["daysSinceLastActivity"] == (wall_ms() - j.last_activity) // 86_400_000
    assert {ch["channel"] for ch in c["channelsLast30Days"]} == j.channels
    # last order 6 days ago (<= 30 days: 5), 3 orders (>= 3: 3), 245.50 (>= 200: 3)
    assert c["rfm"] == {"recency": 5, "frequency": 3, "monetary": 3, "score": "533"}
    assert p["consent"]["marketing"] == {
        "granted": True,
        "basis": "consent",
        "since": p["consent"]["marketing"]["since"],
        "source": p["consent"]["marketing"]["source"],
    }
    assert p["consent"]["advertising"]["granted"] is False  # nothing said; opt-in by default
    assert p["segments"] == ["frequent_buyer"]
    triggers = {(t["rule"], t["outcome"]) for t in p["recentTriggers"]}
    assert ("loan_eligibility_repeat", "activated") in triggers
    assert ("segments", "activated") in triggers
    loan = next(t for t in p["recentTriggers"] if t["rule"] == "loan_eligibility_repeat")
    assert "email" in loan["channels"]
    assert p["traits"]["tier"]["value"] == "gold"
    body = str(profiles)
    ids = {i["type"]: i for i in p["identifiers"]}
    if pepper:
        assert ids["email"]["hashed"] and ids["email"]["value"].startswith("h:")
        assert ids["phone"]["hashed"]
        assert EMAIL not in body and PHONE_E164 not in body
    else:
        assert ids["email"] == {"type": "email", "value": EMAIL, "hashed": False}
        assert ids["phone"]["value"] == PHONE_E164
    # the access log names identifier types, never values
    log = (tmp_path / "api.log").read_text()
    assert '"id_type":"email"' in log and '"id_type":"phone"' in log and '"status":200' in log
    for secret in (EMAIL, EMAIL.upper(), "555-0123", PHONE_E164, "ann-1", "CRM-77", "L-123", TOKEN):
        assert secret not in log


def test_errors_and_documents(api_settings: Callable[..., Settings], tmp_path: Path) -> None:
    s = api_settings()
    j = ann(tag="e")
    load_sync(s, j.messages)
    with running_api(s, tmp_path / "api.log") as api:
        ref = f"/v1/profiles/{j.refs[0]}"
        assert api.get(ref)[0] == 200
        assert api.get(ref, token=OTHER_TOKEN)[0] == 200  # every configured token
        # 401 before anything else: no token, a wrong one, another scheme, a bad reference too
        for token in (None, "wrong-token-0123456789", TOKEN[:-1], TOKEN + "x", ""):
            status, body, headers = api.get(ref, token=token)
            assert (status, body["error"]) == (401, "unauthorized"), token
            assert headers["www-authenticate"].startswith("Bearer")
        assert api.get(ref, token=None, Authorization=f"Basic {TOKEN}")[0] == 401
        assert api.get("/v1/profiles/nocolon", token=None)[0] == 401
        # 400: not TYPE:VALUE, or not a valid value of its type
        for bad in ("nocolon", ":x", "email:", "email:not-an-email", "phone:12", "bad type!:x", "a" * 2000):
            status, body, _ = api.get(f"/v1/profiles/{bad}")
            assert (status, body["error"]) == (400, "bad_reference"), bad
        assert api.get("/v1/profiles/")[0] == 400
        # 404: nobody has it
        for unknown in ("user_id:nobody", "email:nobody@example.com", "loyalty_id:L-0"):
            status, body, _ = api.get(f"/v1/profiles/{unknown}")
            assert (status, body["error"]) == (404, "not_found")
        assert api.get("/nowhere")[0] == 404
        status, health, _ = api.get("/healthz", token=None)
        assert (status, health) == (200, {"status": "ok"})
        status, doc, _ = api.get("/openapi.json", token=None)
        assert status == 200 and doc["openapi"] == "3.1.0"
        assert doc == openapi()
        # the document's Profile schema accepts what the API answers
        _, profile, _ = api.get(ref)
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Profile", **doc}
        jsonschema.validate(profile, schema, cls=jsonschema.Draft202012Validator)


def test_a_merge_after_a_lookup_is_seen(api_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The card's profile is found alone, then, once a later event links it, as part of the person."""
    s = api_settings()
    j = ann(tag="m")
    load_sync(s, j.messages[:1])  # the store order with the card only
    with running_api(s, tmp_path / "api.log") as api:
        card = next(r for r in j.refs if r.startswith("loyalty_id:"))
        status, alone, _ = api.get(f"/v1/profiles/{card}")
        assert status == 200 and alone["computed"]["orderCount"] == 1
        assert api.get(f"/v1/profiles/{j.refs[0]}")[0] == 404
        load_sync(s, j.messages[1:])
        _, merged, _ = api.get(f"/v1/profiles/{card}")
        _, by_user, _ = api.get(f"/v1/profiles/{j.refs[0]}")
    assert merged["profileId"] == by_user["profileId"]
    assert merged["computed"]["orderCount"] == j.orders


def test_authorized_compares_every_token() -> None:
    tokens = [b"a" * 16, b"b" * 16]
    assert authorized("Bearer " + "b" * 16, tokens)
    assert authorized("bearer " + "a" * 16, tokens)
    assert not authorized("Bearer " + "c" * 16, tokens)
    assert not authorized("Bearer ", tokens)
    assert not authorized(None, tokens)
    assert not authorized("Bearer " + "a" * 16, [])


def test_access_log_type_only() -> None:
    assert id_type("/v1/profiles/email:ann@example.com") == "email"
    assert id_type("/v1/profiles/ann@example.com") == "invalid"
    assert id_type("/v1/profiles/" + "x" * 40 + ":1") == "invalid"
    assert id_type("/v1/profiles/e mail:x") == "invalid"


def test_redis_away_is_503_not_a_hang(api_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """No Redis at all: a lookup answers 503 after the read timeout; the process stays alive."""
    from streams.api.app import READ_TIMEOUT
    from streams.stack import free_port

    s = api_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with running_api(s, tmp_path / "api.log") as api:
        start = time.monotonic()
        status, body, _ = api.get("/v1/profiles/user_id:u1")
        took = time.monotonic() - start
        assert (status, body["error"]) == (503, "unavailable")
        assert READ_TIMEOUT <= took < READ_TIMEOUT + 5
        assert api.get("/healthz", token=None)[0] == 200

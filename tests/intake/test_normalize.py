"""Intake.parse: one error code per cause, identifier and consent normalization, event time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.intake import CONSENT_EVENT, DeadLetter, ErrorCode, Intake, IntakeConfig, parse_time_ms
from streams.model import Event, Identifier, SourceRef

SRC = SourceRef("cx.events.raw", 3, 41)
NOW = parse_time_ms("2026-03-01T12:00:00Z")
EXAMPLES = sorted((Path(__file__).parent / "segment_examples").glob("*.json"))


def parse(msg: dict[str, Any] | bytes, intake: Intake | None = None, **kw: Any) -> Event | DeadLetter:
    raw = msg if isinstance(msg, bytes) else orjson.dumps(msg)
    return (intake or Intake()).parse(raw, b"k", SRC, kw.pop("now", NOW), **kw)


def ok(msg: dict[str, Any], intake: Intake | None = None, **kw: Any) -> Event:
    ev = parse(msg, intake, **kw)
    assert isinstance(ev, Event), ev
    return ev


def code(msg: dict[str, Any] | bytes, intake: Intake | None = None) -> ErrorCode:
    dl = parse(msg, intake)
    assert isinstance(dl, DeadLetter), dl
    return dl.code


def track(**kw: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Product Added",
        "userId": "u1",
        "timestamp": "2026-03-01T10:00:00Z",
        **kw,
    }


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


# ------------------------------------------------------------------------------ Segment's own examples
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_segment_documented_examples_are_accepted_unchanged(path: Path) -> None:
    raw = path.read_bytes()
    doc = orjson.loads(raw)
    ev = parse(raw)
    assert isinstance(ev, Event), ev
    assert ev.call == doc["type"]
    assert Identifier("user_id", str(doc["userId"])) in ev.identifiers
    if "messageId" in doc:
        assert ev.message_id == doc["messageId"]
    assert ev.ts == parse_time_ms(doc["timestamp"])


def test_all_six_segment_examples_are_there() -> None:
    assert {p.stem for p in EXAMPLES} >= {"identify", "track", "page", "screen", "group", "alias"}


# ------------------------------------------------------------------------------ one code per cause
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", ErrorCode.EMPTY),
        (b"{not json", ErrorCode.NOT_JSON),
        (b"\xff\xfe\x00binary", ErrorCode.NOT_JSON),
        (b"[1, 2]", ErrorCode.NOT_OBJECT),
        (b'"track"', ErrorCode.NOT_OBJECT),
        (b"null", ErrorCode.NOT_OBJECT),
        (b'{"userId": "u1"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "purchase", "userId": "u1"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": ["track"], "userId": "u1"}', ErrorCode.UNKNOWN_TYPE),
        (b'{"type": "track", "event": "X"}', ErrorCode.MISSING_IDENTITY),
        (b'{"type": "track", "userId": "u1"}', ErrorCode.MISSING_FIELD),
        (b'{"type": "track", "userId": "u1", "event": "  "}', ErrorCode.MISSING_FIELD),
        (b'{"type": "alias", "userId": "u1"}', ErrorCode.MISSING_FIELD),
        (b'{"type": "alias", "previousId": "a1", "anonymousId": "a1"}', ErrorCode.MISSING_FIELD),
        (b'{"type": "track", "userId": "u1", "event": 7}', ErrorCode.WRONG_TYPE),
        (b'{"type": "track", "userId": true, "event": "X"}', ErrorCode.WRONG_TYPE),
        (b'{"type": "identify", "userId": "u1", "traits": []}', ErrorCode.WRONG_TYPE),
        (b'{"type": "identify", "userId": "u1", "timestamp": 1700000000}', ErrorCode.WRONG_TYPE),
        (b'{"type": "identify", "userId": "u1", "context": "web"}', ErrorCode.WRONG_TYPE),
        (b'{"type": "identify", "userId": "u1", "context": {"channel": 3}}', ErrorCode.WRONG_TYPE),
        (
            b'{"type": "identify", "userId": "u1", "context": {"externalIds": {"id": 1}}}',
            ErrorCode.WRONG_TYPE,
        ),
        (
            b'{"type": "identify", "userId": "u1", "context": {"externalIds": [{"id": 1}]}}',
            ErrorCode.WRONG_TYPE,
        ),
        (
            b'{"type": "identify", "userId": "u1", '
            b'"context": {"consent": {"categoryPreferences": {"a": "yes"}}}}',
            ErrorCode.WRONG_TYPE,
        ),
        (b'{"type": "identify", "userId": "u1", "context": {"consentManagement": []}}', ErrorCode.WRONG_TYPE),
        (b'{"type": "identify", "userId": "u1", "timestamp": "yesterday"}', ErrorCode.BAD_TIMESTAMP),
        (
            b'{"type": "identify", "userId": "u1", "timestamp": "1969-12-31T00:00:00Z"}',
            ErrorCode.BAD_TIMESTAMP,
        ),
    ],
)
def test_each_cause_has_its_own_code(raw: bytes, expected: ErrorCode) -> None:
    assert code(raw) == expected


def test_too_large_uses_the_32_kb_default_and_the_setting() -> None:
    small = orjson.dumps(track(properties={"blob": "x" * 1000}))
    big = orjson.dumps(track(properties={"blob": "x" * (32 * 1024)}))
    assert isinstance(parse(small), Event)
    assert code(big) == ErrorCode.TOO_LARGE
    assert code(small, Intake(IntakeConfig(max_event_bytes=500))) == ErrorCode.TOO_LARGE


def test_too_many_properties_counts_properties_and_traits() -> None:
    intake = Intake(IntakeConfig(max_properties=5))
    assert isinstance(parse(track(properties={str(i): i for i in range(5)}), intake), Event)
    msg = track(properties={str(i): i for i in range(3)}, context={"traits": {"a": 1, "b": 2, "c": 3}})
    assert code(msg, intake) == ErrorCode.TOO_MANY_PROPERTIES


def test_a_dead_letter_keeps_bytes_key_and_source_in_its_headers() -> None:
    raw = b'\x00\x01{"type": nope'
    dl = Intake().parse(raw, b"the-key", SRC, NOW)
    assert isinstance(dl, DeadLetter)
    assert (dl.value, dl.key, dl.source) == (raw, b"the-key", SRC)
    h = dict(dl.headers())
    assert h["cx-error-code"] == b"not_json"
    assert h["cx-source-topic"] == b"cx.events.raw"
    assert (h["cx-source-partition"], h["cx-source-offset"]) == (b"3", b"41")
    assert h["cx-error-detail"]


# ------------------------------------------------------------------------------ identifiers
def test_identifiers_are_extracted_and_normalized() -> None:
    ev = ok(
        {
            "type": "identify",
            "userId": 12345,
            "anonymousId": " anon-1 ",
            "traits": {"email": "  Ann.Lee@Example.COM ", "phone": "(415) 555-0100"},
            "context": {
                "device": {"id": "dev-9"},
                "externalIds": [
                    {"id": "L-77", "type": "Loyalty ID", "collection": "users"},
                    {"id": 991, "type": "crm_id"},
                ],
            },
        }
    )
    assert set(ev.identifiers) == {
        Identifier("user_id", "12345"),
        Identifier("anonymous_id", "anon-1"),
        Identifier("email", "ann.lee@example.com"),
        Identifier("phone", "+14155550100"),
        Identifier("device_id", "dev-9"),
        Identifier("loyalty_id", "L-77"),
        Identifier("crm_id", "991"),
    }


def test_context_traits_email_counts_and_phone_uses_the_default_region() -> None:
    msg = track(context={"traits": {"email": "B@X.io", "phone": "020 7946 0018"}})
    uk = ok(msg, Intake(IntakeConfig(phone_default_region="GB")))
    assert uk.identifier("email") == "b@x.io"
    assert uk.identifier("phone") == "+442079460018"
    assert ok(track(traits={"phone": "+33 1 23 45 67 89"})).identifier("phone") == "+33123456789"


def test_unusable_email_and_phone_are_dropped_not_fatal() -> None:
    ev = ok(track(context={"traits": {"email": "not-an-email", "phone": "12"}}))
    assert ev.identifier("email") is None and ev.identifier("phone") is None


@pytest.mark.parametrize(
    "blocked",
    ["null", "NULL", "anonymous", "-1", "0", "0000", "00000000-0000-0000-0000-000000000000", " undefined "],
)
def test_blocked_values_are_never_identifiers(blocked: str) -> None:
    before = sample("cxstream_identifiers_blocked_total", {"type": "user_id"})
    assert code(track(userId=blocked)) == ErrorCode.MISSING_IDENTITY
    assert sample("cxstream_identifiers_blocked_total", {"type": "user_id"}) == before + 1
    ev = ok(track(anonymousId="a-1", userId=blocked, context={"device": {"id": blocked}}))
    assert [i.type for i in ev.identifiers] == ["anonymous_id"]


def test_configured_blocked_values_add_to_the_built_in_ones() -> None:
    intake = Intake(IntakeConfig(blocked_values=frozenset({"Guest-User", "555-555-5555"})))
    assert code(track(userId="guest-user"), intake) == ErrorCode.MISSING_IDENTITY
    ev = ok(track(traits={"phone": "555-555-5555"}), intake)
    assert ev.identifier("phone") is None
    assert code(track(userId="null"), intake) == ErrorCode.MISSING_IDENTITY  # built-ins stay


def test_an_external_id_of_type_user_id_is_not_the_required_identity() -> None:
    msg = {"type": "track", "event": "X", "context": {"externalIds": [{"id": "u1", "type": "user_id"}]}}
    assert code(msg) == ErrorCode.MISSING_IDENTITY


def test_blocked_counts_for_external_types_use_one_label() -> None:
    before = sample("cxstream_identifiers_blocked_total", {"type": "external"})
    ok(track(context={"externalIds": [{"id": "null", "type": "any_sender_chosen_type_42"}]}))
    assert sample("cxstream_identifiers_blocked_total", {"type": "external"}) == before + 1
    assert sample("cxstream_identifiers_blocked_total", {"type": "any_sender_chosen_type_42"}) == 0


# ------------------------------------------------------------------------------ channel
@pytest.mark.parametrize(
    ("msg", "channel"),
    [
        (track(context={"channel": "Call Center"}), "call_center"),
        (track(context={"channel": "pos"}), "pos"),
        (track(channel="browser"), "web"),
        (track(channel="mobile"), "app"),
        (track(context={"library": {"name": "analytics-ios"}}), "app"),
        (track(context={"channel": "!!!"}), "unknown"),
        (track(), "unknown"),
        (track(context={"channel": "x" * 500}), "x" * 64),
    ],
)
def test_channel(msg: dict[str, Any], channel: str) -> None:
    assert ok(msg).channel == channel


# ------------------------------------------------------------------------------ consent
def consent_of(ev: Event) -> dict[str, tuple[bool, str]]:
    assert all(c.ts == ev.ts for c in ev.consent)
    return {c.purpose: (c.granted, c.source) for c in ev.consent}


def test_segment_category_preferences_become_purposes() -> None:
    ev = ok(
        track(context={"consent": {"categoryPreferences": {"Advertising": True, "Email Marketing": False}}})
    )
    assert consent_of(ev) == {"advertising": (True, "segment"), "marketing": (False, "segment")}


def test_two_categories_for_one_purpose_grant_only_if_both_do() -> None:
    ev = ok(track(context={"consent": {"categoryPreferences": {"marketing": True, "email": False}}}))
    assert consent_of(ev) == {"marketing": (False, "segment")}


def test_the_consent_preference_updated_event() -> None:
    ev = ok(track(event=CONSENT_EVENT, context={"consent": {"categoryPreferences": {"Marketing": True}}}))
    assert consent_of(ev) == {"marketing": (True, "segment")}
    # some CMP wrappers put the preferences in properties; only the consent event reads them there
    ev = ok(track(event=CONSENT_EVENT, properties={"categoryPreferences": {"Analytics": False}}))
    assert consent_of(ev) == {"analytics": (False, "segment")}
    assert ok(track(properties={"categoryPreferences": {"Analytics": False}})).consent == ()
    assert code(track(event=CONSENT_EVENT)) == ErrorCode.MISSING_FIELD
    assert (
        code(track(event=CONSENT_EVENT, properties={"categoryPreferences": {"a": 1}})) == ErrorCode.WRONG_TYPE
    )


def test_rudderstack_consent_management() -> None:
    cm = {
        "provider": "oneTrust",
        "allowedConsentIds": ["marketing", "C0004"],
        "deniedConsentIds": ["analytics"],
    }
    ev = ok(track(context={"consentManagement": cm}))
    assert consent_of(ev) == {
        "marketing": (True, "rudderstack"),
        "c0004": (True, "rudderstack"),
        "analytics": (False, "rudderstack"),
    }
    ev = ok(track(context={"consentManagement": {"deniedConsentIds": {"marketing": "Marketing"}}}))
    assert consent_of(ev) == {"marketing": (False, "rudderstack")}
    assert code(track(context={"consentManagement": {"allowedConsentIds": [True]}})) == ErrorCode.WRONG_TYPE


# ------------------------------------------------------------------------------ event time
def test_timestamp_wins() -> None:
    ev = ok(track(originalTimestamp="2026-01-01T00:00:00Z", receivedAt="2026-03-01T11:00:00Z"))
    assert ev.ts == parse_time_ms("2026-03-01T10:00:00Z")
    assert ev.received_ts == parse_time_ms("2026-03-01T11:00:00Z")


def test_segment_skew_correction_without_timestamp() -> None:
    # device clock 1 h slow: it says it happened at 09:00 and was sent at 09:00:05; we got it at 10:00:06
    msg = {
        "type": "page",
        "anonymousId": "a1",
        "originalTimestamp": "2026-03-01T09:00:00Z",
        "sentAt": "2026-03-01T09:00:05Z",
        "receivedAt": "2026-03-01T10:00:06Z",
    }
    assert ok(msg).ts == parse_time_ms("2026-03-01T10:00:01Z")
    del msg["sentAt"]
    assert ok(msg).ts == parse_time_ms("2026-03-01T09:00:00Z")
    del msg["originalTimestamp"]
    assert ok(msg).ts == parse_time_ms("2026-03-01T10:00:06Z")
    del msg["receivedAt"]
    assert ok(msg, record_ts=NOW - 5000).ts == NOW - 5000
    assert ok(msg, record_ts=-1).ts == NOW  # Kafka's "no timestamp"
    assert ok(msg).ts == NOW


def test_future_events_are_clamped_and_counted() -> None:
    before = sample("cxstream_future_clamped_total")
    ev = ok(track(timestamp="2030-01-01T00:00:00Z"))
    assert ev.ts == NOW
    assert sample("cxstream_future_clamped_total") == before + 1
    within = ok(track(timestamp="2026-03-02T11:00:00Z"))  # 23 h ahead: inside the default tolerance
    assert within.ts == parse_time_ms("2026-03-02T11:00:00Z")
    assert sample("cxstream_future_clamped_total") == before + 1


def test_naive_and_offset_timestamps() -> None:
    assert ok(track(timestamp="2026-03-01T10:00:00")).ts == parse_time_ms("2026-03-01T10:00:00Z")
    assert ok(track(timestamp="2026-03-01T12:00:00+02:00")).ts == parse_time_ms("2026-03-01T10:00:00Z")


# ------------------------------------------------------------------------------ the rest of the event
def test_message_id_falls_back_to_a_hash_of_the_bytes() -> None:
    a, b = ok(track()), ok(track())
    assert a.message_id == b.message_id and a.message_id.startswith("sha256:")
    assert ok(track(messageId="m-1")).message_id == "m-1"
    assert ok(track(messageId="  ")).message_id.startswith("sha256:")


def test_name_traits_country_previous_id() -> None:
    ev = ok(
        {
            "type": "identify",
            "userId": "u1",
            "traits": {"email": "a@b.co", "address": {"country": "de"}},
            "context": {"traits": {"email": "old@b.co", "plan": "pro"}},
        }
    )
    assert ev.traits == {"email": "a@b.co", "plan": "pro", "address": {"country": "de"}}
    assert ev.country == "DE"
    assert ok(track(event=" Order Completed ")).name == "Order Completed"
    alias = ok({"type": "alias", "userId": "u2", "previousId": "anon-7"})
    assert alias.previous_id == "anon-7"
    assert Identifier("anonymous_id", "anon-7") in alias.identifiers

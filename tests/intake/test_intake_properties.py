"""Property test: whatever arrives, ``Intake.parse`` returns exactly one of Event / DeadLetter.

About 10,800 generated payloads over six strategies (valid Segment calls of all six types, mutated
ones, wrong field types, random JSON, random bytes, huge blobs). For each:

- exactly one outcome; a dead letter carries a known code (never ``processing_error``: that would
  be a bug of ours) and the original bytes, key and source untouched;
- an accepted event has a usable ``user_id`` or ``anonymous_id``, uses no blocked value, has its
  email lower-cased and its phone in E.164, survives the repartition round trip (``to_dict`` ->
  JSON -> ``from_dict``), matches ``schemas/normalized-event.schema.json``, and its input matches
  ``schemas/segment-call.schema.json`` (the published input schema is never stricter than intake).
"""

from __future__ import annotations

import string
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.constants import BLOCKED_IDENTIFIER_VALUES
from streams.intake import CONSENT_EVENT, DeadLetter, ErrorCode, Intake, IntakeConfig, ms_to_iso
from streams.model import CALL_TYPES, Event, SourceRef, dumps

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = 1_772_000_000_000  # 2026-02-25
SRC = SourceRef("cx.events.raw", 2, 99)
INTAKE = Intake(
    IntakeConfig(
        blocked_values=frozenset({"guest-42"}), max_properties=6, max_depth=4, max_identifiers_per_event=4
    )
)  # small enough for the generators to reach
RUNS: Counter[str] = Counter()  # payloads per strategy
OUTCOMES: Counter[str] = Counter()  # "event" or the dead-letter code


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = orjson.loads((SCHEMAS / name).read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


INPUT = _validator("segment-call.schema.json")
NORMALIZED = _validator("normalized-event.schema.json")

COMMON = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------------------------------ strategies
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
blocked = st.sampled_from(
    sorted(BLOCKED_IDENTIFIER_VALUES | {"NULL", " null ", "0000", "-1", "guest-42", "0-0-0"})
)
ids = (
    st.text(string.ascii_letters + string.digits + "-_@.", min_size=1, max_size=24)
    | st.integers(0, 10**12)
    | blocked
)
timestamps = st.datetimes(
    min_value=__import__("datetime").datetime(1971, 1, 1),
    max_value=__import__("datetime").datetime(2100, 1, 1),
).map(lambda d: d.isoformat() + "Z")
emails = st.emails() | st.sampled_from(["ANN@Example.COM", " bob@x.io ", "no-at-sign", "null@x.io", "a@b"])
phones = st.sampled_from(
    ["+1 415 555 0100", "(415) 555-0100", "020 7946 0018", "+44 20 7946 0018", "12", "abc", "0000000000"]
) | st.text("0123456789 +-()", max_size=16)
channels = st.sampled_from(
    ["web", "app", "email", "pos", "crm", "call_center", "ads", "Call Center", "", "!!"]
) | st.text(max_size=10)
categories = st.sampled_from(
    ["Advertising", "Analytics", "Functional", "marketing", "email", "DataSharing", "C0004"]
)


@st.composite
def contexts(draw: st.DrawFn) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    if draw(st.booleans()):
        ctx["channel"] = draw(channels)
    if draw(st.booleans()):
        ctx["traits"] = {"email": draw(emails), "phone": draw(phones)}
    if draw(st.booleans()):
        ctx["device"] = {"id": draw(ids), "type": "ios"}
    if draw(st.booleans()):
        ctx["externalIds"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"id": ids, "type": st.sampled_from(["loyalty_id", "crm_id", "Email", "phone", "x y"])}
                ),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        ctx["consent"] = {"categoryPreferences": draw(st.dictionaries(categories, st.booleans(), max_size=4))}
    if draw(st.booleans()):
        ctx["consentManagement"] = {
            "provider": "oneTrust",
            "allowedConsentIds": draw(st.lists(categories, max_size=3)),
            "deniedConsentIds": draw(st.lists(categories, max_size=3)),
        }
    if draw(st.booleans()):
        ctx["location"] = {"country": draw(st.sampled_from(["US", "de", "FR", ""]))}
    if draw(st.booleans()):
        ctx["library"] = {
            "name": draw(st.sampled_from(["analytics.js", "analytics-ios", "other"])),
            "version": "1",
        }
    return ctx


@st.composite
def segment_calls(draw: st.DrawFn) -> dict[str, Any]:
    call = draw(st.sampled_from(CALL_TYPES))
    msg: dict[str, Any] = {"type": call}
    for field in ("userId", "anonymousId"):
        if draw(st.integers(0, 3)):
            msg[field] = draw(ids)
    if draw(st.booleans()):
        msg["messageId"] = draw(st.uuids().map(str) | st.text(min_size=1, max_size=10))
    for field in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        if draw(st.integers(0, 2)) == 0:
            msg[field] = draw(timestamps)
    if draw(st.booleans()):
        msg["context"] = draw(contexts())
    if draw(st.booleans()):
        msg["integrations"] = {"All": draw(st.booleans())}
    if draw(st.booleans()):
        msg["channel"] = draw(st.sampled_from(["browser", "mobile", "server", "client"]))
    if call == "track":
        msg["event"] = draw(
            st.sampled_from(["Product Added", "Order Completed", CONSENT_EVENT, " X "]) | st.text(max_size=12)
        )
    if call in ("track", "page", "screen") and draw(st.booleans()):
        msg["properties"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
    if call in ("page", "screen") and draw(st.booleans()):
        msg["name"] = draw(st.text(max_size=12))
    if call in ("identify", "group") and draw(st.booleans()):
        msg["traits"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "email": emails,
                    "phone": phones,
                    "plan": st.text(max_size=5),
                    "address": st.fixed_dictionaries({"country": st.sampled_from(["US", "gb"])}),
                },
            )
        )
    if call == "group":
        msg["groupId"] = draw(ids)
    if call == "alias" and draw(st.integers(0, 4)):
        msg["previousId"] = draw(ids)
    return msg


@st.composite
def mutated_calls(draw: st.DrawFn) -> dict[str, Any]:
    msg = draw(segment_calls())
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["delete", "replace", "add", "context"]))
        keys = sorted(msg)
        if op == "delete" and keys:
            del msg[draw(st.sampled_from(keys))]
        elif op == "replace" and keys:
            msg[draw(st.sampled_from(keys))] = draw(json_values)
        elif op == "add":
            msg[draw(st.text(max_size=12))] = draw(json_values)
        else:
            ctx = msg.setdefault("context", {})
            if isinstance(ctx, dict):
                ctx[
                    draw(
                        st.sampled_from(
                            [
                                "channel",
                                "traits",
                                "device",
                                "externalIds",
                                "consent",
                                "consentManagement",
                                "location",
                            ]
                        )
                    )
                ] = draw(json_values)
    return msg


WRONG = {
    "userId": st.booleans()
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), max_size=2),
    "anonymousId": st.booleans() | st.lists(st.text(max_size=3), max_size=2),
    "timestamp": st.integers(-(2**63), 2**63 - 1)
    | st.booleans()
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=1),
    "context": st.text(max_size=5)
    | st.integers(-(2**63), 2**63 - 1)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),
    "properties": st.text(max_size=5)
    | st.integers(-(2**63), 2**63 - 1)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),
    "traits": st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),
    "event": st.integers(-(2**63), 2**63 - 1)
    | st.booleans()
    | st.dictionaries(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), max_size=1),
}


@st.composite
def wrong_types(draw: st.DrawFn) -> dict[str, Any]:
    msg = draw(segment_calls())
    field = draw(st.sampled_from(sorted(WRONG)))
    msg[field] = draw(WRONG[field])
    return msg


@st.composite
def huge(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(32 * 1024 + 1, 1024 * 1024))
    kind = draw(st.sampled_from(["json", "garbage", "spaces"]))
    if kind == "json":
        return orjson.dumps(
            {"type": "track", "event": "Big", "userId": "u1", "properties": {"blob": "x" * size}}
        )
    if kind == "spaces":
        return b" " * size
    return bytes([draw(st.integers(0, 255))]) * size


# ------------------------------------------------------------------------------------------ the check
def check(raw: bytes, kind: str) -> None:
    RUNS[kind] += 1
    key = b"key-" + kind.encode()
    out = INTAKE.parse(raw, key, SRC, NOW, record_ts=NOW - 1000)
    assert isinstance(out, Event) != isinstance(out, DeadLetter), out
    OUTCOMES["event" if isinstance(out, Event) else out.code.value] += 1
    if isinstance(out, DeadLetter):
        assert out.code in ErrorCode and out.code is not ErrorCode.PROCESSING_ERROR, out.detail
        assert out.value is raw or out.value == raw
        assert (out.key, out.source) == (key, SRC)
        headers = dict(out.headers())
        assert headers["cx-error-code"] == out.code.value.encode()
        return
    ev = out
    types = {i.type for i in ev.identifiers}
    assert types & {"user_id", "anonymous_id"}
    for i in ev.identifiers:
        assert not INTAKE.is_blocked(i.value), i
        assert i.value == i.value.strip() and i.value
        if i.type == "email":
            assert i.value == i.value.lower() and "@" in i.value
        if i.type == "phone":
            assert i.value.startswith("+") and i.value[1:].isdigit(), i
    assert 0 <= ev.ts <= NOW + INTAKE.config.future_tolerance_ms
    ms_to_iso(ev.ts)  # every record builder prints it
    assert ev.source == SRC
    doc = orjson.loads(dumps(ev.to_dict()))
    NORMALIZED.validate(doc)
    assert Event.from_dict(doc) == ev
    INPUT.validate(orjson.loads(raw))


@settings(COMMON, max_examples=3000)
@given(segment_calls())
def test_valid_calls(msg: dict[str, Any]) -> None:
    check(orjson.dumps(msg), "valid")


@settings(COMMON, max_examples=3000)
@given(mutated_calls())
def test_mutated_calls(msg: dict[str, Any]) -> None:
    check(orjson.dumps(msg), "mutated")


@settings(COMMON, max_examples=1000)
@given(wrong_types())
def test_wrong_types(msg: dict[str, Any]) -> None:
    raw = orjson.dumps(msg)
    check(raw, "wrong_type")
    out = INTAKE.parse(raw, None, SRC, NOW)
    assert isinstance(out, DeadLetter), f"accepted a wrong type: {msg}"


@settings(COMMON, max_examples=2000)
@given(json_values)
def test_random_json(value: Any) -> None:
    check(orjson.dumps(value), "json")


@settings(COMMON, max_examples=1500)
@given(st.binary(max_size=300))
def test_random_bytes(raw: bytes) -> None:
    check(raw, "bytes")


@settings(COMMON, max_examples=300)
@given(huge())
def test_huge_blobs(raw: bytes) -> None:
    check(raw, "huge")
    out = INTAKE.parse(raw, None, SRC, NOW)
    assert isinstance(out, DeadLetter) and out.code is ErrorCode.TOO_LARGE


def test_zz_at_least_ten_thousand_payloads_ran() -> None:
    """Runs last in this file: if all six strategies ran, they threw at least 10,000 payloads."""
    print(f"payloads: {dict(RUNS)}; outcomes: {dict(OUTCOMES)}")
    if len(RUNS) == 6:
        assert sum(RUNS.values()) >= 10_000, RUNS
        # the generators reach both sides and every input-caused code
        assert OUTCOMES["event"] >= 1000, OUTCOMES
        input_codes = {c.value for c in ErrorCode if c is not ErrorCode.PROCESSING_ERROR}
        assert set(OUTCOMES) >= {"event"} | input_codes, OUTCOMES

"""The intake limits of contract section 10: ``max_depth`` (``too_deep``) and
``max_identifiers_per_event`` (``too_many_identifiers``), and the ``processing_error`` dead letter."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from streams.intake import DeadLetter, ErrorCode, Intake, IntakeConfig, json_too_deep, parse_time_ms
from streams.model import Event, SourceRef, dumps
from streams.pipeline import envelope
from streams.pipeline.records import InRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings

SRC = SourceRef("cx.events.raw", 0, 7)
NOW = parse_time_ms("2026-03-01T12:00:00Z")


def track(**kw: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": "u1", "timestamp": "2026-03-01T10:00:00Z", **kw}


def nested(depth: int, leaf: Any = 1, kind: str = "object") -> Any:
    """A value that is ``depth`` containers deep (a scalar is 0)."""
    v = leaf
    for _ in range(depth):
        v = {"a": v} if kind == "object" else [v]
    return v


def at_depth(depth: int, kind: str = "object", where: str = "properties") -> bytes:
    """A track message whose nesting is exactly ``depth`` (the message itself is level 1)."""
    body: dict[str, Any] = track()
    if where == "context.traits":  # levels 1, 2, 3: the message, context, traits
        body["context"] = {"traits": {"x": nested(depth - 3, kind=kind)}}
    else:  # levels 1, 2: the message, `where`
        body[where] = {"x": nested(depth - 2, kind=kind)}
    raw = orjson.dumps(body)
    assert _depth(orjson.loads(raw)) == depth, (depth, kind, where)
    return raw


def _depth(v: Any) -> int:  # the slow, obviously right definition, for the tests only
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    return 0


def parse(raw: bytes, intake: Intake | None = None) -> Event | DeadLetter:
    return (intake or Intake()).parse(raw, b"k", SRC, NOW)


# ------------------------------------------------------------------------------ max_depth
@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("where", ["properties", "traits", "context.traits"])
def test_depth_32_is_accepted_33_is_too_deep(kind: str, where: str) -> None:
    assert IntakeConfig().max_depth == 32
    assert isinstance(parse(at_depth(32, kind, where)), Event)
    dl = parse(at_depth(33, kind, where))
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_DEEP, dl
    assert dict(dl.headers())["cx-error-code"] == b"too_deep"


def test_depth_follows_the_setting_and_counts_empty_containers() -> None:
    intake = Intake(IntakeConfig(max_depth=4))
    assert isinstance(parse(orjson.dumps(track(properties={"a": {"b": [1]}})), intake), Event)  # 4
    deeper: list[dict[str, Any]] = [{"a": {"b": [[]]}}, {"a": {"b": [{}]}}, {"a": [[1, {"c": 2}]]}]
    for too_deep in deeper:
        dl = parse(orjson.dumps(track(properties=too_deep)), intake)
        assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_DEEP, too_deep


def test_brackets_inside_strings_do_not_count() -> None:
    raw = orjson.dumps(track(properties={"s": "[" * 5000 + "{" * 5000}))
    assert isinstance(parse(raw), Event)


def test_a_big_shallow_event_is_walked_and_accepted() -> None:
    raw = orjson.dumps(track(properties={f"k{i}": [{"v": i}] for i in range(250)}))
    assert len(raw) > 4096
    assert isinstance(parse(raw), Event)


def test_too_deep_is_checked_before_the_fields() -> None:
    """Right after parsing: a deep message is too_deep whatever else is wrong with it."""
    raw = b'{"type": "nope", "properties": ' + b"[" * 40 + b"]" * 40 + b"}"
    dl = parse(raw)
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_DEEP


@pytest.mark.parametrize("depth", [254, 256, 1000, 1024, 1100, 5000])
def test_a_deep_event_is_dead_lettered_byte_identical_not_crashing(depth: int) -> None:
    """orjson reads 1,024 levels but writes 255: such an event used to pass intake and crash
    ``orjson.dumps`` downstream. Now it is a ``too_deep`` dead letter with the very bytes."""
    raw = b'{"type":"identify","userId":"u1","traits":' + b'{"a":' * depth + b"1" + b"}" * (depth + 1)
    assert len(raw) < 32 * 1024
    dl = parse(raw)
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_DEEP, dl
    assert dl.value == raw and dl.key == b"k" and dl.source == SRC


def test_a_1000_deep_event_through_the_intake_stage() -> None:
    s = Settings(partitions=2)
    rt = Runtime(s, Stores.memory(s))
    raw = orjson.dumps(track()).rstrip(b"}") + b',"properties":' + b"[" * 998 + b"]" * 998 + b"}"
    ok = orjson.dumps(track(userId="u2"))
    batch = [InRecord(s.topic_raw, 0, 0, b"key", raw), InRecord(s.topic_raw, 0, 1, None, ok)]
    out = asyncio.run(rt.intake.process(batch, NOW))
    dead = [r for r in out if r.topic == s.topic_deadletter]
    assert len(dead) == 1 and dead[0].value == raw and dead[0].key == b"key"
    assert dict(dead[0].headers)["cx-error-code"] == b"too_deep"
    assert any(r.topic == s.topic_profiled and b'"ev"' in r.value for r in out)  # the batch went on


def test_the_deepest_allowed_setting_still_writes_the_repartition_record() -> None:
    """``max_depth`` is capped at 200 so an accepted event, wrapped in its envelope, stays under
    orjson's 255 levels."""
    intake = Intake(IntakeConfig(max_depth=200))
    ev = parse(at_depth(200), intake)
    assert isinstance(ev, Event)
    assert orjson.loads(envelope.event_record("p1", ev, NOW))["ev"]["properties"]
    assert dumps(ev.to_dict())


def test_json_too_deep() -> None:
    assert not json_too_deep(1, 1) and not json_too_deep("[[[", 1)
    assert not json_too_deep({}, 1) and json_too_deep({"a": {}}, 1)
    assert not json_too_deep([[1], {"a": [2]}], 3) and json_too_deep([[1], {"a": [[2]]}], 3)
    assert json_too_deep(nested(10_000), 32)  # iterative: no RecursionError


# ------------------------------------------------------------------------------ max_identifiers_per_event
def with_ids(n_external: int, **kw: Any) -> bytes:
    """userId, anonymousId, email, phone, device id, then ``n_external`` distinct externalIds."""
    ext = [{"id": f"L{i}", "type": "loyalty_id"} for i in range(n_external)]
    return orjson.dumps(
        track(
            anonymousId="a1",
            context={
                "traits": {"email": "Ann@Example.com", "phone": "+1 415 555 0100"},
                "device": {"id": "d1"},
                "externalIds": ext,
            },
            **kw,
        )
    )


def test_50_identifiers_are_accepted_51_are_too_many() -> None:
    assert IntakeConfig().max_identifiers_per_event == 50
    ev = parse(with_ids(45))
    assert isinstance(ev, Event) and len(ev.identifiers) == 50
    dl = parse(with_ids(46))
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_MANY_IDENTIFIERS, dl
    assert dict(dl.headers())["cx-error-code"] == b"too_many_identifiers"


def test_identifiers_are_counted_after_normalization() -> None:
    intake = Intake(IntakeConfig(max_identifiers_per_event=3))
    ext: list[dict[str, Any]] = [
        {"id": "ann@EXAMPLE.com", "type": "Email"},  # the same email, normalized
        {"id": "null", "type": "crm_id"},  # blocked
        {"id": "0000", "type": "crm_id"},  # blocked
        {"id": " ", "type": "crm_id"},  # empty
        {"id": "not-a-phone", "type": "phone"},  # unusable
    ]
    msg = track(anonymousId=" a1 ", traits={"email": "ANN@example.com "}, context={"externalIds": ext})
    ev = parse(orjson.dumps(msg), intake)
    assert isinstance(ev, Event), ev
    assert {str(i) for i in ev.identifiers} == {"user_id:u1", "anonymous_id:a1", "email:ann@example.com"}
    ext.append({"id": 7, "type": "crm_id"})  # a fourth one
    dl = parse(orjson.dumps(msg), intake)
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_MANY_IDENTIFIERS


def test_identifier_limit_follows_the_setting() -> None:
    intake = Intake(IntakeConfig(max_identifiers_per_event=2))
    assert isinstance(parse(orjson.dumps(track(anonymousId="a1")), intake), Event)
    dl = parse(orjson.dumps(track(anonymousId="a1", traits={"email": "a@b.io"})), intake)
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_MANY_IDENTIFIERS


def test_a_thousand_external_ids_are_refused_quickly() -> None:
    ext = [{"id": f"+1 415 555 {i:04d}", "type": "phone"} for i in range(1000)]
    raw = orjson.dumps(track(context={"externalIds": ext}))
    intake = Intake(IntakeConfig(max_event_bytes=64 * 1024))
    t0 = time.perf_counter()
    dl = parse(raw, intake)
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.TOO_MANY_IDENTIFIERS
    assert time.perf_counter() - t0 < 0.5  # stops one past the limit, not after 1,000 phone parses


# ------------------------------------------------------------------------------ processing_error
def test_a_bug_of_ours_is_a_processing_error_without_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise ValueError("ann@example.com is personal data")

    raw = orjson.dumps(track())
    # the JSON parser stands in for any code of ours (the worker's intake may be compiled, whose
    # methods cannot be replaced; a module's attribute can)
    monkeypatch.setattr(orjson, "loads", boom)
    dl = parse(raw, Intake())
    assert isinstance(dl, DeadLetter) and dl.code is ErrorCode.PROCESSING_ERROR
    assert (dl.stage, dl.rule, dl.exception) == ("intake.parse", None, "ValueError")
    assert dl.value == raw
    h = dict(dl.headers())
    assert h["cx-error-code"] == b"processing_error"
    assert h["cx-error-stage"] == b"intake.parse" and h["cx-error-exception"] == b"ValueError"
    assert "cx-error-rule" not in h
    assert b"ann@" not in b"".join(h.values())


def test_dead_letter_headers_for_stage_rule_exception_only_when_set() -> None:
    plain = DeadLetter(ErrorCode.NOT_JSON, "x", None, b"", SRC)
    assert [k for k, _ in plain.headers()] == [
        "cx-error-code",
        "cx-error-detail",
        "cx-source-topic",
        "cx-source-partition",
        "cx-source-offset",
    ]
    dl = DeadLetter(
        ErrorCode.PROCESSING_ERROR,
        "d",
        b"k",
        b"v",
        SRC,
        stage="decide",
        rule="cart_abandoned",
        exception="KeyError",
    )
    h = dict(dl.headers())
    assert (h["cx-error-stage"], h["cx-error-rule"], h["cx-error-exception"]) == (
        b"decide",
        b"cart_abandoned",
        b"KeyError",
    )
    with pytest.raises(TypeError):
        DeadLetter(ErrorCode.PROCESSING_ERROR, "d", b"k", b"v", SRC, "decide")  # type: ignore[call-arg]

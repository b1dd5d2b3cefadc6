"""Property test: hostile Segment messages through BOTH stages, in memory ("Nothing is lost").

Generated messages are deep (up to 1,100 levels), wide (thousands of keys or array items within
the 32 KB limit), carry wrong types in every field intake or a rule reads, integers beyond 64 bits,
NaN-like tokens and strings, lone surrogates, invalid UTF-8, BOMs, duplicated keys and 1,000
``externalIds``. Batches of them run through :class:`streams.simulate.LocalPipeline` (the intake
stage, then the decide stage with every built-in rule on, then every timer).

For every batch: no exception escapes, and every input ends in exactly one of a repartition ``ev``
record, a dead letter (with a code from :class:`ErrorCode`, and the very bytes) or a counted
duplicate. The decide stage takes every ``ev`` record without a dead letter or an ``error``
decision (a rule failing on what intake accepted).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from streams.engine import registry
from streams.intake import ErrorCode, ms_to_iso, parse_time_ms
from streams.pipeline import envelope
from streams.pipeline.records import OutRecord
from streams.settings import Settings
from streams.simulate import LocalPipeline

NOW = parse_time_ms("2026-03-01T12:00:00Z")
SETTINGS = Settings(partitions=2, clock="event", rules=tuple(sorted(registry.available())), metrics_port=0)
CODES = {c.value for c in ErrorCode}
INTAKE_CODES = CODES - {ErrorCode.PROCESSING_ERROR.value}


# ------------------------------------------------------------------------------------------ encoding
@dataclass(frozen=True)
class Raw:
    """Bytes written into the JSON text as they are (deep values, bad tokens, bad strings)."""

    data: bytes


@dataclass(frozen=True)
class Dup:
    """A key written again: the message then has ``name`` twice (the last one wins in orjson)."""

    name: str
    nonce: int


def enc(v: Any) -> bytes:
    """JSON text of ``v``, allowing what orjson.dumps refuses (integers past 64 bits, Raw, Dup)."""
    if isinstance(v, Raw):
        return v.data
    if isinstance(v, dict):
        items = (
            (k.data if isinstance(k, Raw) else orjson.dumps(k.name if isinstance(k, Dup) else str(k)), enc(x))
            for k, x in v.items()
        )
        return b"{" + b",".join(k + b":" + x for k, x in items) + b"}"
    if isinstance(v, list):
        return b"[" + b",".join(enc(x) for x in v) + b"]"
    if isinstance(v, bool) or v is None:
        return orjson.dumps(v)
    if isinstance(v, int):
        return str(v).encode()
    return orjson.dumps(v)


# ------------------------------------------------------------------------------------------ strategies
DEPTHS = st.sampled_from([2, 30, 31, 32, 33, 200, 252, 254, 255, 256, 1000, 1022, 1023, 1024, 1025, 1100])


@st.composite
def deep(draw: st.DrawFn) -> Raw:
    depth = draw(DEPTHS | st.integers(1, 1100))
    kind = draw(st.sampled_from(["object", "array", "mixed"]))
    leaf = draw(st.sampled_from([b"1", b'"x"', b"null", b"{}", b"[]"]))
    if kind == "object":
        return Raw(b'{"a":' * depth + leaf + b"}" * depth)
    if kind == "array":
        return Raw(b"[" * depth + leaf + b"]" * depth)
    opens = [b'{"a":' if i % 2 else b"[" for i in range(depth)]
    return Raw(b"".join(opens) + leaf + b"".join(b"}" if i % 2 else b"]" for i in reversed(range(depth))))


@st.composite
def wide(draw: st.DrawFn) -> Raw:
    kind = draw(st.sampled_from(["keys", "items", "dup_keys", "objects"]))
    if kind == "keys":
        n = draw(st.integers(100, 2400))
        return Raw(b"{" + b",".join(b'"k%d":%d' % (i, i) for i in range(n)) + b"}")
    if kind == "dup_keys":
        n = draw(st.integers(100, 3000))
        return Raw(b"{" + b",".join(b'"k":%d' % i for i in range(n)) + b"}")
    if kind == "objects":
        n = draw(st.integers(100, 2500))
        return Raw(b"[" + b",".join(b"{}" if i % 2 else b"[]" for i in range(n)) + b"]")
    n = draw(st.integers(100, 14000))
    return Raw(b"[" + b",".join(b"1" for _ in range(n)) + b"]")


big_ints = st.integers(-(2**200), 2**200) | st.sampled_from(
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30, -(10**40)]
)
bad_tokens = st.sampled_from(
    [
        b"NaN",
        b"-NaN",
        b"Infinity",
        b"-Infinity",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"-0",
        b"0e0",
        b"01",
        b"1.",
        b".5",
    ]
).map(Raw)
nan_like = st.sampled_from(
    ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e400", "-0", "null", "None", "undefined"]
)
bad_strings = st.sampled_from(
    [
        b'"\\ud800"',  # lone high surrogate
        b'"\\udfff"',  # lone low surrogate
        b'"\\udc00\\ud800"',  # reversed pair
        b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8
        b'"\xff\xfe"',  # not UTF-8
        b'"\xc0\xaf"',  # overlong
        b'"\xe2\x82"',  # truncated sequence
    ]
).map(Raw)
odd_strings = st.sampled_from(  # valid JSON, odd text
    [
        b'"\\ud83d\\ude00"',  # a valid surrogate pair (an emoji)
        b'"\\u0000"',
        b'"\xef\xbb\xbf"',  # a BOM inside a string
        b'"\\ufeffu1"',
        b'"\xe2\x80\xae"',  # right-to-left override
    ]
).map(Raw)
texts = st.text(max_size=20) | st.text(string.whitespace, max_size=3) | nan_like
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
#: values that still parse (most of them, so that hostile content reaches the rules) ...
long_strings = st.integers(1_000, 30_000).map(lambda n: "x" * n)
parseable = st.one_of(
    json_values,
    big_ints,
    nan_like,
    odd_strings,
    deep(),
    wide(),
    long_strings,
    st.floats(allow_nan=False, allow_infinity=False),
)
#: ... and some that do not
junk = st.sampled_from([True] * 7 + [False]).flatmap(lambda ok: parseable if ok else bad_tokens | bad_strings)

NAMES = st.sampled_from(
    [
        "Product Added",
        "Checkout Started",
        "Order Completed",
        "Loan Eligibility Checked",
        "Onboarding Started",
        "Onboarding Step Completed",
        "Onboarding Completed",
        "Test Drive Requested",
        "Test Drive Completed",
        "Configuration Viewed",
        "Vehicle Purchased",
        "Product Viewed",
        "Segment Consent Preference Updated",
    ]
)
IDS = st.sampled_from(["u1", "u2", "anon-1", "anon-2"]) | big_ints | st.text(min_size=1, max_size=8)
TIMES = st.sampled_from(
    ["2026-03-01T10:00:00Z", "2026-02-27T10:00:00.123+02:00", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
) | st.integers(NOW - 90 * 86_400_000, NOW).map(ms_to_iso)

#: where hostile values go: every field intake or a rule reads
PATHS = [
    ("type",),
    ("event",),
    ("name",),
    ("userId",),
    ("anonymousId",),
    ("messageId",),
    ("previousId",),
    ("groupId",),
    ("timestamp",),
    ("originalTimestamp",),
    ("sentAt",),
    ("receivedAt",),
    ("channel",),
    ("integrations",),
    ("context",),
    ("properties",),
    ("traits",),
    ("traits", "email"),
    ("traits", "phone"),
    ("traits", "address"),
    ("traits", "address", "country"),
    ("context", "channel"),
    ("context", "traits"),
    ("context", "traits", "email"),
    ("context", "traits", "phone"),
    ("context", "device"),
    ("context", "device", "id"),
    ("context", "externalIds"),
    ("context", "externalIds", 0),
    ("context", "externalIds", 0, "id"),
    ("context", "externalIds", 0, "type"),
    ("context", "consent"),
    ("context", "consent", "categoryPreferences"),
    ("context", "consent", "categoryPreferences", "marketing"),
    ("context", "consentManagement"),
    ("context", "consentManagement", "allowedConsentIds"),
    ("context", "consentManagement", "deniedConsentIds"),
    ("context", "location"),
    ("context", "location", "country"),
    ("context", "library"),
    ("context", "library", "name"),
    ("properties", "products"),
    ("properties", "products", 0),
    ("properties", "products", 0, "price"),
    ("properties", "products", 0, "quantity"),
    ("properties", "products", 0, "product_id"),
    ("properties", "product_id"),
    ("properties", "sku"),
    ("properties", "price"),
    ("properties", "quantity"),
    ("properties", "revenue"),
    ("properties", "value"),
    ("properties", "currency"),
    ("properties", "order_id"),
    ("properties", "cart_id"),
    ("properties", "loan_type"),
    ("properties", "amount"),
    ("properties", "configuration_id"),
    ("properties", "trim"),
    ("properties", "step"),
    ("properties", "step_index"),
    ("properties", "step_name"),
    ("properties", "index"),
]


def _get(node: Any, step: Any) -> Any:
    if isinstance(node, dict):
        return node.get(step)
    return node[step] if len(node) > step else None


def _set(node: Any, step: Any, value: Any) -> None:
    if isinstance(node, dict) or len(node) > step:
        node[step] = value
    else:
        node.append(value)


def put(doc: dict[Any, Any], path: tuple[Any, ...], value: Any) -> None:
    """``doc`` at ``path`` (str: a key, int: a list index) becomes ``value``; whatever is in
    the way and is not a container of the right kind is replaced by one."""
    node: Any = doc
    for step, nxt in pairwise(path):
        want = list if isinstance(nxt, int) else dict
        child = _get(node, step)
        if not isinstance(child, want):
            child = want()
            _set(node, step, child)
        node = child
    _set(node, path[-1], value)


@st.composite
def base_call(draw: st.DrawFn) -> dict[Any, Any]:
    call = draw(st.sampled_from(["track", "track", "track", "identify", "page", "screen", "group", "alias"]))
    msg: dict[Any, Any] = {"type": call, "userId": draw(IDS), "timestamp": draw(TIMES)}
    if draw(st.booleans()):
        msg["anonymousId"] = draw(IDS)
    if draw(st.booleans()):
        msg["messageId"] = draw(st.sampled_from(["m1", "m2", "m3"]) | st.uuids().map(str))
    if call == "track":
        msg["event"] = draw(NAMES)
        msg["properties"] = {
            "products": [{"product_id": "p1", "price": 10.5, "quantity": 1}],
            "order_id": "o1",
            "revenue": 10.5,
            "cart_id": "c1",
        }
    if call == "alias":
        msg["previousId"] = draw(IDS)
    msg["context"] = {
        "channel": draw(st.sampled_from(["web", "app", "email"])),
        "traits": {"email": "ann@example.com"},
        "consent": {"categoryPreferences": {"marketing": True, "advertising": draw(st.booleans())}},
        "location": {"country": draw(st.sampled_from(["US", "DE", "FR"]))},
    }
    return msg


@st.composite
def external_ids(draw: st.DrawFn) -> list[Any]:
    n = draw(st.sampled_from([49, 50, 51, 1000]) | st.integers(0, 1000))
    kind = draw(st.sampled_from(["distinct", "same", "mixed"]))
    if kind == "distinct":
        return [{"id": i, "type": "x"} for i in range(n)]
    if kind == "same":
        return [{"id": 1, "type": "x"} for _ in range(n)]
    return [{"id": i, "type": "x"} if i % 3 else {"id": None, "type": 1} for i in range(n)]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    msg = draw(base_call())
    for _ in range(draw(st.integers(0, 4))):
        put(msg, draw(st.sampled_from(PATHS)), draw(junk))
    if draw(st.integers(0, 4)) == 0:
        put(msg, ("context", "externalIds"), draw(external_ids()))
    if draw(st.integers(0, 5)) == 0:  # an odd (or broken) key
        target = msg.get(draw(st.sampled_from(["context", "properties", "traits"])))
        if isinstance(target, dict):
            target[draw(odd_strings | bad_strings | st.just(Raw(b'""')))] = draw(junk)
    for _ in range(draw(st.integers(0, 2))):  # duplicated keys, at the top or in context
        key = Dup(draw(st.sampled_from(["type", "userId", "event", "timestamp", "context", "properties"])), _)
        target = msg if draw(st.booleans()) or not isinstance(msg.get("context"), dict) else msg["context"]
        target[key] = draw(junk | IDS)
    raw = enc(msg)
    mangle = draw(st.sampled_from(["none"] * 35 + ["bom", "bom_inside", "bad_byte", "truncate", "nul"]))
    if mangle == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mangle == "bom_inside":
        raw = raw[:1] + b"\xef\xbb\xbf" + raw[1:]
    elif mangle == "bad_byte":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\x80", b"\xed\xa0\x80", b"\xc3"])) + raw[at:]
    elif mangle == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mangle == "nul":
        raw = raw + b"\x00"
    return raw


@st.composite
def batches(draw: st.DrawFn) -> list[bytes]:
    raws = draw(st.lists(hostile(), min_size=1, max_size=4))
    if draw(st.booleans()):  # the same bytes again: a duplicate when accepted
        raws.append(draw(st.sampled_from(raws)))
    return raws


# ------------------------------------------------------------------------------------------ the check
class Recording(LocalPipeline):
    """LocalPipeline that keeps what each stage wrote."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.intake_out: list[OutRecord] = []
        self.decide_out: list[OutRecord] = []
        self._deciding = False

    def _route(self, records: Any) -> None:
        records = list(records)
        (self.decide_out if self._deciding else self.intake_out).extend(records)
        super()._route(records)

    async def _produce(self, records: Sequence[OutRecord]) -> None:
        self._deciding = True
        try:
            self._route(records)
        finally:
            self._deciding = False


def duplicates() -> float:
    return REGISTRY.get_sample_value("cxstream_duplicates_total") or 0.0


def run_both_stages(raws: list[bytes], s: Settings = SETTINGS) -> Recording:
    pipe = Recording(s)

    async def go() -> None:
        await pipe.feed(raws, now_ms=NOW)
        await pipe.finish()

    asyncio.run(go())  # no exception may escape either stage
    return pipe


def check(raws: list[bytes], s: Settings = SETTINGS) -> None:
    dups_before = duplicates()
    pipe = run_both_stages(raws, s)
    dups = int(duplicates() - dups_before)

    ends: dict[int, str] = {}  # input offset -> how it ended
    for r in pipe.intake_out:
        if r.topic == s.topic_deadletter:
            h = dict(r.headers)
            code = h["cx-error-code"].decode()
            assert code in INTAKE_CODES, (code, h)  # processing_error here is a bug of intake
            off = int(h["cx-source-offset"])
            assert r.value == raws[off], "a dead letter must keep the original bytes"
            assert off not in ends, (off, ends[off], code)
            ends[off] = code
        elif r.topic == s.topic_profiled:  # one by one, or a batch of them (envelope.batched)
            for _, rec in envelope.unpack(r.value):
                assert not isinstance(rec, envelope.EnvelopeError), rec
                if isinstance(rec, envelope.EventRecord):
                    off = rec.event["source"][2]
                    assert off not in ends, (off, ends[off], "ev")
                    ends[off] = "ev"
    assert set(ends) <= set(range(len(raws)))
    assert len(ends) + dups == len(raws), (ends, dups, len(raws))

    # The decide stage takes whatever intake accepted: no record of it dead-lettered, no rule
    # failing on it (a finding outside intake: see the module docstring).
    failed = [dict(r.headers) for r in pipe.decide_out if r.topic == s.topic_deadletter]
    assert not failed, failed
    errors = [d for d in map(orjson.loads, pipe.result.decisions) if d.get("outcome") == "error"]
    assert not errors, errors


COMMON = settings(
    deadline=None,
    max_examples=600,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@COMMON
@given(batches())
@example([b'{"type":"identify","userId":"u1","traits":' + b'{"a":' * 1000 + b"1" + b"}" * 1001])
@example(
    [
        b'{"type":"track","event":"Product Added","userId":"u1","properties":'
        + b"[" * 1100
        + b"]" * 1100
        + b"}"
    ]
)
@example(
    [b'{"type":"track","event":"X","userId":18446744073709551616,"properties":{"n":' + b"9" * 400 + b"}}"]
)
@example([b'\xef\xbb\xbf{"type":"track","event":"X","userId":"u1"}'])
@example([b'{"type":"track","type":"alias","event":"X","userId":"u1","userId":"\\ud800"}'])
def test_hostile_batches_end_in_exactly_one_place(raws: list[bytes]) -> None:
    check(raws)


# A rule that keeps an event property in its state must never be refused for its depth:
# the engine's limit (MAX_RULE_DEPTH) lies above the deepest event intake accepts.
def test_an_event_as_deep_as_max_depth_allows_is_kept_by_a_rule_that_stores_it() -> None:
    loan_type = b'{"a":' * 198 + b"1" + b"}" * 198  # the message nests 200 levels: accepted
    ts = ms_to_iso(NOW - 3_600_000).encode()
    raw = b'{"type":"track","event":"Loan Eligibility Checked","userId":"u9","timestamp":"%s",' % ts
    raw += b'"properties":{"loan_type":' + loan_type + b"}}"
    check([raw], SETTINGS.model_copy(update={"max_depth": 200}))

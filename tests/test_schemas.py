"""schemas/: generated from streams.schemas, checked in, and true of the records we really write.

The AsyncAPI document is validated against the official AsyncAPI 3.0.0 JSON Schema from the
``@asyncapi/specs`` npm package, installed by ``scripts/install-asyncapi-specs.sh`` (``make install``).
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from streams import schemas
from streams.identity.base import ERASURE_EVENT
from streams.intake import ms_to_iso
from streams.pipeline.records import InRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.sinks import records
from streams.testing import at, run_journey

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
SPEC = ROOT / ".tools/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json"
DAY = 86_400_000


def validator(stem: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(orjson.loads((SCHEMAS / f"{stem}.schema.json").read_bytes()))


def valid(stem: str, doc: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(stem).iter_errors(doc)]
    assert not errors, f"{stem}: {errors[:5]}\n{doc}"


# ------------------------------------------------------------------------------ drift
def test_checked_in_schemas_are_what_the_generator_writes() -> None:
    rendered = schemas.render()
    on_disk = {p.name for p in SCHEMAS.glob("*.json")}
    assert on_disk == set(rendered), "schemas/ holds files the generator does not write (or misses some)"
    stale = [name for name, data in rendered.items() if (SCHEMAS / name).read_bytes() != data]
    assert not stale, f"{stale} drifted from streams/schemas/records.py: run `python -m streams.schemas`"


def test_generator_check_mode_reports_drift(tmp_path: Path) -> None:
    assert schemas.main([str(tmp_path)]) == 0
    assert schemas.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "decision.schema.json").write_text("{}")
    assert schemas.main(["--check", str(tmp_path)]) == 1


@pytest.mark.parametrize("stem", sorted(schemas.SCHEMAS))
def test_each_schema_is_a_valid_draft_2020_12_schema(stem: str) -> None:
    doc = orjson.loads((SCHEMAS / f"{stem}.schema.json").read_bytes())
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)


# ------------------------------------------------------------------------------ real records
def loan_journey(user: str, start: int, *, consent: bool) -> list[dict[str, Any]]:
    first: dict[str, Any] = {
        "type": "identify",
        "userId": user,
        "anonymousId": f"anon-{user}",
        "timestamp": ms_to_iso(start),
        "traits": {"email": f"{user}@example.com"},
        "context": {"channel": "web", "location": {"country": "US"}},
    }
    if consent:
        first["context"]["consent"] = {"categoryPreferences": {"marketing": True}}
    checks = [
        {
            "type": "track",
            "event": "Loan Eligibility Checked",
            "userId": user,
            "timestamp": ms_to_iso(start + (i + 1) * DAY),
            "properties": {"amount": 12000},
        }
        for i in range(3)
    ]
    return [first, *checks]


def test_pipeline_records_match_their_schemas() -> None:
    start = at("2026-03-02T09:00:00Z")
    merge = [  # two profiles (anonymous browsing, then a CRM record), then one event links them
        {"type": "page", "anonymousId": "anon-m", "timestamp": ms_to_iso(start), "name": "Home"},
        {"type": "identify", "userId": "crm-m", "timestamp": ms_to_iso(start + 1000)},
        {
            "type": "identify",
            "userId": "crm-m",
            "anonymousId": "anon-m",
            "timestamp": ms_to_iso(start + 2000),
        },
    ]
    erase = [
        {"type": "track", "event": ERASURE_EVENT, "userId": "crm-m", "timestamp": ms_to_iso(start + 3000)}
    ]
    messages = [*loan_journey("ann", start, consent=True), *loan_journey("bob", start, consent=False), *merge]
    messages += erase
    res = asyncio.run(run_journey([*messages, b"not json"], Settings(rules=("loan_eligibility_repeat",))))

    assert res.activations and res.decisions and res.identity_changes
    for v in res.activations:
        valid("trigger-cloudevent", orjson.loads(v))
    outcomes = set()
    for v in res.decisions:
        d = orjson.loads(v)
        valid("decision", d)
        outcomes.add(d["outcome"])
    changes = set()
    for v in res.identity_changes:
        c = orjson.loads(v)
        valid("identity-change", c)
        changes.add(c["change"])
    assert "activated" in outcomes
    assert {"created", "merged"} <= changes
    assert res.deadletter_records
    for r in res.deadletter_records:
        valid("deadletter-headers", {k: v.decode() for k, v in r.headers or ()})


def test_intake_stage_records_match_their_schemas() -> None:
    """What the intake agent writes to the repartition, identity and dead-letter topics."""
    s = Settings(rules=("loan_eligibility_repeat",), partitions=3)
    rt = Runtime(s, Stores.memory(s))
    start = at("2026-03-02T09:00:00Z")
    values = [orjson.dumps(m) for m in loan_journey("cy", start, consent=True)]
    values += [
        orjson.dumps({"type": "identify", "userId": "dee", "timestamp": ms_to_iso(start)}),
        orjson.dumps({"type": "page", "anonymousId": "a-dee", "timestamp": ms_to_iso(start)}),
        orjson.dumps(
            {"type": "alias", "userId": "dee", "previousId": "a-dee", "timestamp": ms_to_iso(start)}
        ),
        b"\x00garbage",
        b"",
    ]
    batch = [InRecord(s.topic_raw, 1, off, None, v) for off, v in enumerate(values)]
    out = asyncio.run(rt.intake.process(batch, start + 10 * DAY))
    kinds = set()
    for r in out:
        if r.topic == s.topic_profiled:
            doc = orjson.loads(r.value)
            valid("profiled-record", doc)
            kinds.add(doc["k"])
            if doc["k"] == "ev":
                valid("normalized-event", doc["ev"])
        elif r.topic == s.topic_identity_changes:
            valid("identity-change", orjson.loads(r.value))
        elif r.topic == s.topic_deadletter:
            valid("deadletter-headers", {k: v.decode() for k, v in r.headers or ()})
        else:
            pytest.fail(f"intake wrote to {r.topic}")
    assert {"ev", "wms", "expect", "merge"} <= kinds


def test_record_builders_for_every_identity_change_match() -> None:
    _, v = records.identity_erased("p1", ["p1", "p2"], at("2026-01-01"), "request")
    valid("identity-change", orjson.loads(v))
    _, v = records.identity_created("p1", at("2026-01-01"), "m-1")
    valid("identity-change", orjson.loads(v))


def test_schemas_reject_what_they_should() -> None:
    """The schemas are not vacuous: broken records fail."""
    _, v = records.identity_created("p1", at("2026-01-01"), "m-1")
    doc = orjson.loads(v)
    for broken in (
        {**doc, "change": "renamed"},
        {**doc, "extra": 1},
        {k: doc[k] for k in doc if k != "profileId"},
    ):
        assert not validator("identity-change").is_valid(broken)
    segment = validator("segment-call")
    assert segment.is_valid({"type": "track", "event": "X", "userId": "u"})
    assert not segment.is_valid({"type": "track", "event": "X"})  # no identity
    assert not segment.is_valid({"type": "track", "userId": "u"})  # no event
    assert not segment.is_valid({"type": "alias", "userId": "u"})  # no previousId
    assert not segment.is_valid({"type": "purchase", "userId": "u"})
    assert not segment.is_valid({"type": "identify", "userId": True})


def test_dead_letter_headers_list_every_code_and_the_processing_error_headers() -> None:
    from streams.intake import DeadLetter, ErrorCode
    from streams.model import SourceRef

    src = SourceRef("cx.events.raw", 0, 5)
    for code in ErrorCode:
        valid(
            "deadletter-headers", {k: v.decode() for k, v in DeadLetter(code, "d", None, b"", src).headers()}
        )
    dl = DeadLetter(
        ErrorCode.PROCESSING_ERROR,
        "d",
        b"k",
        b"v",
        src,
        stage="decide",
        rule="cart_abandoned",
        exception="KeyError",
    )
    headers = {k: v.decode() for k, v in dl.headers()}
    assert {"cx-error-stage", "cx-error-rule", "cx-error-exception"} <= set(headers)
    valid("deadletter-headers", headers)
    assert not validator("deadletter-headers").is_valid({**headers, "cx-error-code": "internal"})
    assert not validator("deadletter-headers").is_valid({**headers, "cx-error-stage": ""})


def test_decision_schema_has_the_error_outcome() -> None:
    """outcome ``error``: a rule failed on an event or timer; it carries ``error`` (and only it does)."""
    tid = "84558e28-5c01-5737-9678-5cdefc054c80"
    rec: dict[str, Any] = {
        "id": tid,
        "triggerId": tid,
        "outcome": "error",
        "profileId": "p1",
        "rule": {"name": "cart_abandoned", "version": 1},
        "type": "cx.trigger.cart_abandoned",
        "time": "2026-03-01T10:00:00.000Z",
        "purpose": "marketing",
        "region": "US",
        "policyVersion": "v1",
        "allowed": [],
        "refused": [],
        "context": {},
        "error": {"rule": "cart_abandoned", "method": "on_event", "on": "m-1", "exception": "KeyError"},
    }
    valid("decision", rec)
    v = validator("decision")
    assert not v.is_valid({k: x for k, x in rec.items() if k != "error"})  # error needs its error
    assert not v.is_valid({**rec, "outcome": "activated"})  # and only error carries one
    assert not v.is_valid({**rec, "error": {**rec["error"], "message": "ann@example.com"}})  # closed
    assert not v.is_valid({**rec, "error": {"rule": "cart_abandoned"}})
    assert not v.is_valid({**rec, "outcome": "holdout"})  # holdout carries no error
    held = {k: x for k, x in rec.items() if k != "error"}
    assert v.is_valid({**held, "outcome": "holdout"})
    assert not v.is_valid({**held, "outcome": "held_out"})


# ------------------------------------------------------------------------------ AsyncAPI
def official_asyncapi_validator() -> jsonschema.protocols.Validator:
    if not SPEC.exists():
        pytest.fail(
            f"{SPEC.relative_to(ROOT)} is missing: run scripts/install-asyncapi-specs.sh "
            "(it installs the official AsyncAPI JSON Schemas from npm into .tools/asyncapi)"
        )
    spec = orjson.loads(SPEC.read_bytes())
    cls = jsonschema.validators.validator_for(spec)  # the spec file says draft-07
    cls.check_schema(spec)
    return cls(spec)


def asyncapi_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((SCHEMAS / "asyncapi.json").read_bytes())
    return doc


def test_asyncapi_document_is_valid_asyncapi_3() -> None:
    v = official_asyncapi_validator()
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in v.iter_errors(asyncapi_doc())]
    assert not errors, errors[:10]
    broken = copy.deepcopy(asyncapi_doc())
    broken["channels"]["raw"]["address"] = 42
    assert not v.is_valid(broken)  # the official schema does catch mistakes


def test_asyncapi_describes_every_topic_and_references_real_schemas() -> None:
    doc = asyncapi_doc()
    s = Settings()
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        s.topic_raw,
        s.topic_deadletter,
        s.topic_activations,
        s.topic_decisions,
        s.topic_identity_changes,
        s.topic_conversions,
        "{appId}-profiled",
    }
    assert doc["channels"]["profiled"]["parameters"]["appId"]["default"] == s.app_id
    dead = doc["components"]["messages"]["deadLetter"]
    headers = orjson.loads((SCHEMAS / dead["headers"]["schema"]["$ref"]).read_bytes())
    assert set(headers["required"]) == {
        "cx-error-code",
        "cx-error-detail",
        "cx-source-topic",
        "cx-source-partition",
        "cx-source-offset",
    }
    for name, msg in doc["components"]["messages"].items():
        assert "kafka" in msg["bindings"] and "key" in msg["bindings"]["kafka"], name
        for part in ("payload", "headers"):
            ref = msg.get(part, {}).get("schema", {}).get("$ref")
            if ref is not None:
                assert (SCHEMAS / ref).is_file(), f"{name}.{part} refers to missing {ref}"

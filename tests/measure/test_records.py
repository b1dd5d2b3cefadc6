"""What measurement writes matches the checked-in schemas (``schemas/conversion.schema.json``,
outcome ``holdout`` of ``schemas/decision.schema.json``) and the AsyncAPI document names it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from measure.journeys import plan, policy_file
from test_schemas import asyncapi_doc, valid, validator

from streams.settings import Settings
from streams.testing import at, run_journey


def test_holdout_decisions_and_conversions_match_their_schemas(tmp_path: Path) -> None:
    p = plan(60, at("2026-03-01T00:00:00Z"), seed=2)
    s = Settings(rules=("loan_eligibility_repeat",), policy_file=policy_file(tmp_path))
    res = asyncio.run(run_journey(p.messages, s, batch=20))
    outcomes = set()
    for v in res.decisions:
        d = orjson.loads(v)
        valid("decision", d)
        outcomes.add(d["outcome"])
    assert {"activated", "holdout"} <= outcomes
    groups = set()
    for v in res.conversions:
        c = orjson.loads(v)
        valid("conversion", c)
        groups.add(c["group"])
    assert groups == {"treated", "holdout"}
    c = orjson.loads(res.conversions[0])
    v = validator("conversion")
    assert not v.is_valid({**c, "group": "control"})
    assert not v.is_valid({**c, "email": "ann@example.com"})
    assert not v.is_valid({**c, "lagSeconds": 0})
    assert not v.is_valid({k: x for k, x in c.items() if k != "triggerId"})


def test_asyncapi_has_the_conversions_channel() -> None:
    doc = asyncapi_doc()
    assert doc["channels"]["conversions"]["address"] == Settings().topic_conversions
    msg = doc["components"]["messages"]["conversion"]
    assert msg["payload"]["schema"]["$ref"] == "./conversion.schema.json"
    assert "sendConversions" in doc["operations"]

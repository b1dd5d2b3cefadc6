"""Done when (issue 16): the journey through a real worker on the local broker and Redis, then
the Profile API finds the one person by every identifier with what the events imply."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from api.journey import ann
from api.server import load_sync, running_api
from helpers import person_keys, produce, running_worker

from streams.settings import Settings

pytestmark = pytest.mark.stack


def test_worker_then_api(
    api_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = api_settings()
    topics(s)
    j = ann(tag="w")
    values = [orjson.dumps(m) for m in j.messages]
    keys = person_keys(values)
    produce(s, s.topic_raw, [(keys[v], v) for v in values])
    got: dict[str, Any] = {}
    with running_worker(s, tmp_path / "worker.log"), running_api(s, tmp_path / "api.log") as api:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, body, _ = api.get(f"/v1/profiles/{j.refs[0]}")
            done = status == 200 and body["computed"]["orderCount"] == j.orders
            rules = {t["rule"] for t in body.get("recentTriggers", [])}
            if done and rules >= {"loan_eligibility_repeat", "segments"}:
                got = body
                break
            time.sleep(0.5)
        assert got, f"the worker did not get there in time:\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
        answers = [api.get(f"/v1/profiles/{ref}") for ref in j.refs]
    assert [a[0] for a in answers] == [200] * len(j.refs)
    assert {a[1]["profileId"] for a in answers} == {got["profileId"]}
    c = got["computed"]
    assert (c["orderCount"], c["revenue"]) == (j.orders, j.revenue)
    assert {ch["channel"] for ch in c["channelsLast30Days"]} == j.channels
    assert got["segments"] == ["frequent_buyer"]
    # the same journey through the simulate path gives the same computed traits
    other = api_settings()
    load_sync(other, j.messages)
    with running_api(other, tmp_path / "api2.log") as api2:
        status, sim, _ = api2.get(f"/v1/profiles/{j.refs[0]}")
    assert status == 200
    assert {k: v for k, v in sim["computed"].items() if k != "daysSinceLastActivity"} == {
        k: v for k, v in c.items() if k != "daysSinceLastActivity"
    }
    assert [(t["id"], t["outcome"]) for t in sim["recentTriggers"]] == [
        (t["id"], t["outcome"]) for t in got["recentTriggers"]
    ]

"""``cxstream profile show`` and ``profile forget`` through the CLI, on the local stack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner
from helpers import consume, json_values
from identity.redis_scan import holding
from identity.test_erasure import ANN, ann_journey, bob_journey, close, pipeline_over_redis, seg

from streams.cli import main
from streams.settings import Settings
from streams.testing import at

pytestmark = pytest.mark.stack

MIN = 60_000
T0 = at("2026-03-02T09:00:00Z")


def load(s: Settings, messages: list[dict[str, Any]]) -> None:
    async def run() -> None:
        pipe, stores = pipeline_over_redis(s)
        try:
            await pipe.feed([orjson.dumps(m) for m in messages])
        finally:
            await close(stores)

    asyncio.run(run())


def cli(s: Settings, *args: str) -> str:
    res = CliRunner().invoke(main, list(args), env=s.to_env())
    assert res.exit_code == 0, res.output
    return res.output


def test_show_reads_like_a_person(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(rules=("cart_abandoned",), partitions=1)  # as the in-process pipeline runs
    load(
        s,
        [
            *ann_journey(T0),
            seg("page", T0 + 3 * MIN, userId=ANN[2], name="Kettles", context={"channel": "app"}),
        ],
    )
    out = cli(s, "profile", "show", f"email:{ANN[1].upper()}")
    print(out)
    lines = out.splitlines()
    assert lines[0].startswith("profile p_") and "5 identifiers, 1 merge)" in lines[0]
    section = {name: lines.index("  " + name) for name in ("identifiers", "traits", "consent", "merges")}
    ids = lines[section["identifiers"] + 1 : section["identifiers"] + 6]
    assert [line.split()[0] for line in ids] == [
        "user_id",
        "loyalty_id",
        "email",
        "anonymous_id",
        "anonymous_id",
    ]
    assert '    name           "Ann Lee"  (as of 2026-03-02 09:01 UTC)' in lines
    assert any(line.split()[:2] == ["marketing", "granted"] for line in lines[section["consent"] :])
    assert "  pending timers (partition 0)" in lines
    assert any(
        line.split()[:2] == ["cart_abandoned", "cart"] and "due 2026-03-02 09:32 UTC" in line
        for line in lines
    )
    assert "    app            last 2026-03-02 09:03 UTC" in lines, "most recent channel first"
    assert lines.index("    app            last 2026-03-02 09:03 UTC") < lines.index(
        "    web            last 2026-03-02 09:00 UTC"
    )
    merge = lines[section["merges"] + 1]
    assert "absorbed p_" in merge and f"email:{ANN[1]}" in merge
    same = cli(s, "profile", "show", f"anonymous_id:{ANN[4]}")  # the absorbed lead's id finds the survivor
    assert same.splitlines()[0].split()[1] == lines[0].split()[1]
    assert (
        cli(s, "profile", "show", "email:nobody@example.com").strip()
        == "no profile has email:nobody@example.com"
    )


def test_show_rejects_a_malformed_reference(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    res = CliRunner().invoke(main, ["profile", "show", "ann@example.com"], env=s.to_env())
    assert res.exit_code != 0 and "TYPE:VALUE" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["profile", "show", "email:not-an-email"], env=s.to_env())
    assert res.exit_code != 0 and "not a valid email" in res.output


def test_forget_erases_and_announces(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None]
) -> None:
    s = make_settings(rules=("cart_abandoned",), partitions=1)  # as the in-process pipeline runs
    topics(s)
    load(s, ann_journey(T0) + bob_journey(T0))
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    out = cli(s, "profile", "forget", "--yes", f"user_id:{ANN[2]}")
    assert out.startswith("erased profile p_") and "1 absorbed profile" in out
    pid = out.split()[2]
    changes = json_values(consume(s, s.topic_identity_changes, want=1, timeout=30))
    assert [c["change"] for c in changes] == ["erased"] and changes[0]["profileId"] == pid
    gone = changes[0]["erased"]
    assert holding(raw, {*gone, *ANN, "Ann Lee"}, "*" + s.redis_prefix + "*") == []
    assert holding(raw, {"bob@example.com"}, "*" + s.redis_prefix + "*"), "bob is untouched"
    erases = json_values(consume(s, s.topic_profiled, want=len(gone), timeout=30))
    assert sorted(e["pid"] for e in erases if e["k"] == "erase") == sorted(gone), (
        "a running worker drops them too"
    )
    assert cli(s, "profile", "show", f"user_id:{ANN[2]}").strip() == f"no profile has user_id:{ANN[2]}"
    assert "nothing erased" in cli(s, "profile", "forget", "--yes", f"user_id:{ANN[2]}")


def test_export_holds_everything_about_the_person(
    make_settings: Callable[..., Settings], tmp_path: Any
) -> None:
    s = make_settings(rules=("cart_abandoned",), partitions=1, identity_pepper="correct horse battery staple")
    load(
        s,
        [
            *ann_journey(T0),
            seg("identify", T0 + 3 * MIN, userId=ANN[2], traits={"preferred_channels": ["sms"]}),
        ],
    )
    res = CliRunner().invoke(main, ["profile", "export", f"user_id:{ANN[2]}"], env=s.to_env())
    assert res.exit_code == 0, res.output
    doc = orjson.loads(res.output)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    assert doc["profileId"].startswith("p_")
    ids = {(i["type"], i["hashed"]) for i in doc["identifiers"]}
    assert ids == {("user_id", False), ("loyalty_id", False), ("email", True), ("anonymous_id", False)}
    assert {"type": "user_id", "value": ANN[2], "hashed": False} in doc["identifiers"]
    assert ANN[1] not in res.output, "the raw email is not stored where a pepper is set"
    assert doc["traits"]["name"]["value"] == "Ann Lee"
    assert doc["channels"]["app"]["lastActivity"] == "2026-03-02T09:02:00.000Z"
    assert doc["channels"]["web"]["lastActivity"] == "2026-03-02T09:00:00.000Z"
    assert (doc["firstSeen"], doc["lastSeen"]) == ("2026-03-02T09:00:00.000Z", "2026-03-02T09:03:00.000Z")
    assert len(doc["merges"]) == 1 and doc["merges"][0]["absorbed"].startswith("p_")
    assert all(
        link.split(":")[0] != "email" or link.startswith("email:h:") for link in doc["merges"][0]["linking"]
    )
    assert doc["consent"]["marketing"][-1] == {
        "granted": True,
        "time": "2026-03-02T09:00:00.000Z",
        "source": "segment",
    }
    assert doc["preferences"]["channels"] == ["sms"]
    assert "cart_abandoned" in doc["ruleState"]["rules"]
    (timer,) = doc["pendingTimers"]
    assert (timer["rule"], timer["name"], timer["due"]) == (
        "cart_abandoned",
        "cart",
        "2026-03-02T09:32:00.000Z",
    )
    assert "payload" in timer
    where = " ".join(h["where"] + " " + h["until"] for h in doc["held_elsewhere"])
    assert s.topic_raw in where and "retention" in where and "CXSTREAM_DEDUPE_TTL" in where

    out = tmp_path / "ann.json"
    res = CliRunner().invoke(
        main, ["profile", "export", f"email:{ANN[1]}", "--out", str(out)], env=s.to_env()
    )
    assert res.exit_code == 0, res.output
    again = orjson.loads(out.read_bytes())
    assert again["profileId"] == doc["profileId"] and again["identifiers"] == doc["identifiers"]

    res = CliRunner().invoke(main, ["profile", "export", "email:nobody@example.com"], env=s.to_env())
    assert res.exit_code == 2 and res.output.strip().splitlines() == [res.output.strip().splitlines()[0]], (
        res.output
    )
    assert "no profile has email:nobody@example.com" in res.output and "Traceback" not in res.output

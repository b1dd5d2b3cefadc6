"""The walking skeleton, end to end on the real local stack: Segment in, CloudEvent out."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import consume, json_values, kill9, running_worker

from streams.constants import CLOUDEVENTS_CONTENT_TYPE, Keys
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import ms_to_iso
from streams.model import Identifier
from streams.redis_io import connect
from streams.replay import replay_file
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.testing import at

pytestmark = pytest.mark.stack

DAY = 86_400_000


def loan_journey(user: str, start: int, checks: int = 3, country: str = "US") -> list[dict[str, object]]:
    evs: list[dict[str, object]] = [
        {
            "type": "identify",
            "messageId": f"{user}-id",
            "userId": user,
            "timestamp": ms_to_iso(start),
            "traits": {"email": f"{user}@example.com"},
            "context": {
                "channel": "web",
                "location": {"country": country},
                "consent": {"categoryPreferences": {"marketing": True}},
            },
        }
    ]
    for i in range(checks):
        evs.append(
            {
                "type": "track",
                "event": "Loan Eligibility Checked",
                "messageId": f"{user}-check-{i}",
                "userId": user,
                "timestamp": ms_to_iso(start + (i + 1) * DAY),
                "properties": {"product": "personal_loan", "amount": 12000},
                "context": {"channel": "app" if i % 2 else "web"},
            }
        )
    return evs


def write_jsonl(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def test_segment_events_become_a_cloudevent_read_by_an_independent_client(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(rules=("loan_eligibility_repeat",))  # wall clock: other rules' old timers are due
    topics(s)
    start = at("2026-03-02T09:00:00Z")
    journey = write_jsonl(tmp_path / "j.jsonl", loan_journey("ann", start))
    with running_worker(s, tmp_path / "worker.log") as proc:
        asyncio.run(replay_file(s, journey))  # produced with aiokafka ...
        msgs = consume(s, s.topic_activations, want=1, timeout=90, idle=2)  # ... read with confluent-kafka
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    assert len(msgs) == 1, "one trigger for three checks in a week"
    msg = msgs[0]
    ce = orjson.loads(msg.value())
    headers = dict(msg.headers() or [])
    assert headers["content-type"] == CLOUDEVENTS_CONTENT_TYPE.encode()
    assert set(headers) == {"content-type"}  # structured mode: no ce-* headers to confuse SDK readers

    async def profile_of() -> str | None:
        client = connect(s.redis_url.get_secret_value())
        try:
            return await RedisIdentityStore(client, Keys(s.redis_prefix)).lookup(Identifier("user_id", "ann"))
        finally:
            await client.aclose()

    pid = asyncio.run(profile_of())
    assert pid is not None
    assert ce["specversion"] == "1.0"
    assert ce["id"] == trigger_id("loan_eligibility_repeat", 1, "ann-check-2")
    uuid.UUID(ce["id"])
    assert ce["source"] == "urn:cxstream:rule:loan_eligibility_repeat"
    assert ce["type"] == "cx.trigger.loan_eligibility_repeat"
    assert ce["subject"] == pid == ce["partitionkey"] == msg.key().decode()
    assert ce["time"] == ms_to_iso(start + 3 * DAY)
    assert ce["datacontenttype"] == "application/json"
    data = ce["data"]
    assert data["profileId"] == pid
    assert data["rule"] == {"name": "loan_eligibility_repeat", "version": 1}
    assert [c["channel"] for c in data["channels"]] == ["email"]
    assert data["consent"]["email"]["marketing"]["basis"] == "consent"
    assert data["context"]["check_count"] == 3


def test_worker_killed_with_sigkill_resumes_from_committed_offsets_without_losing_triggers(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(batch_size=20, rules=("loan_eligibility_repeat",))
    topics(s)
    start = at("2026-04-06T08:00:00Z")
    people = [f"cust{i:03d}" for i in range(150)]
    events = [e for p in people for e in loan_journey(p, start)]  # person after person: triggers spread out
    journey = write_jsonl(tmp_path / "j.jsonl", events)
    log = tmp_path / "worker.log"
    warm = write_jsonl(tmp_path / "warm.jsonl", loan_journey("warmup", start))
    with running_worker(s, log) as first:
        # first a warm-up journey, so the worker has joined its group and is processing ...
        asyncio.run(replay_file(s, warm))
        assert consume(s, s.topic_activations, want=1, timeout=90), log.read_text()[-3000:]
        # ... then 100 events/s in the background, so the kill lands mid-stream
        replay = threading.Thread(target=lambda: asyncio.run(replay_file(s, journey, rate=100)))
        replay.start()
        assert consume(s, s.topic_activations, want=2, timeout=90), log.read_text()[-3000:]
        kill9(first)
        before = len(consume(s, s.topic_activations, want=len(people) + 1, timeout=2)) - 1
        replay.join(timeout=60)
    assert 0 < before < len(people), "the kill should land mid-stream"
    with running_worker(s, log) as second:
        msgs = consume(s, s.topic_activations, want=len(people) + 1, timeout=120, idle=3)
        assert second.poll() is None, log.read_text()[-3000:]
    ids = {ce["id"] for ce in json_values(msgs)} - {
        trigger_id("loan_eligibility_repeat", 1, "warmup-check-2")
    }
    expected = {trigger_id("loan_eligibility_repeat", 1, f"{p}-check-2") for p in people}
    assert ids == expected, f"missing {len(expected - ids)} triggers after the restart"

"""A batch processed twice by the decide stage (a crash before, or after, its commit) writes no
conversion twice: the state that holds the open exposures is on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from measure.journeys import plan, policy_file

from streams.identity.redis_store import RedisIdentityStore
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.testing import at

pytestmark = pytest.mark.stack


def test_a_redelivered_batch_writes_no_conversion_twice(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    p = plan(60, at("2026-03-01T00:00:00Z"), seed=5)
    s = make_settings(
        rules=("loan_eligibility_repeat",), policy_file=policy_file(tmp_path), partitions=1, clock="event"
    )

    async def run() -> None:
        stores = Stores.redis(s)
        try:
            rt = Runtime(s, stores)
            raw = [InRecord(s.topic_raw, 0, i, None, orjson.dumps(m)) for i, m in enumerate(p.messages)]
            out = await rt.intake.process(raw, at("2026-06-01T00:00:00Z"))
            profiled = [r for r in out if r.topic == s.topic_profiled]
            batch = [InRecord(r.topic, 0, off, r.key, r.value) for off, r in enumerate(profiled)]
            await rt.adopt({0})

            def conversions(records: list[OutRecord]) -> list[bytes]:
                return sorted(r.value for r in records if r.topic == s.topic_conversions)

            first = await rt.decide.process(batch)
            assert len(conversions(first.records)) == len(p.converts)
            # crashed before the commit: the batch comes again and gives the very same records
            again = await rt.decide.process(batch)
            assert conversions(again.records) == conversions(first.records)
            produced: list[OutRecord] = []

            async def produce(records: list[OutRecord]) -> None:
                produced.extend(records)

            await rt.run_decide(again, produce)  # type: ignore[arg-type]
            # crashed after the commit (before the consumer offset moved): nothing again
            third = await rt.decide.process(batch)
            assert conversions(third.records) == []
            assert [r for r in third.records if r.topic == s.topic_decisions] == []
            # and a fresh worker (a restart, a new owner) on the same Redis: nothing either
            fresh = await Runtime(s, stores).decide.process(batch)
            assert conversions(fresh.records) == []
            # a later event of a converter does not convert the same trigger again
            u = next(iter(p.converts))
            later = {
                "type": "track",
                "event": "Loan Application Submitted",
                "userId": u,
                "messageId": f"{u}-again",
                "timestamp": p.messages[-1]["timestamp"],
            }
            out2 = await rt.intake.process(
                [InRecord(s.topic_raw, 0, len(raw), None, orjson.dumps(later))], at("2026-06-01T00:00:00Z")
            )
            more = [
                InRecord(r.topic, 0, len(batch) + i, r.key, r.value)
                for i, r in enumerate(x for x in out2 if x.topic == s.topic_profiled)
            ]
            assert conversions((await rt.decide.process(more)).records) == []
        finally:
            assert isinstance(stores.identity, RedisIdentityStore)
            await stores.identity.client.aclose()

    asyncio.run(run())

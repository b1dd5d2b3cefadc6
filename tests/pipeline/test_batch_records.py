"""Batch records on the repartition topic (``k`` ``b``): a worker's intake writes one Kafka record
per partition and batch; the decide stage applies, skips and dead-letters each record inside on
its own, exactly as if they had come one by one. In memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from streams.constants import RECORDS_HEADER
from streams.engine.runner import Engine
from streams.intake.normalize import ms_to_iso
from streams.model import Event, JSONDict
from streams.pipeline import envelope
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.testing import at

T0 = at("2026-05-01T10:00:00Z")
TOPIC = "cxstream-profiled"


class Counts(Rule):
    """Fires on every ``Buy`` with the number of ``Buy`` events the profile has seen so far."""

    name = "counts"
    events = frozenset({"Buy"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        n = int(state.get("n", 0)) + 1
        return Outcome({"n": n}, [TriggerSpec(key=event.message_id, time=event.ts, context={"n": n})])


def runtime(partitions: int = 2) -> Runtime:
    s = Settings(partitions=partitions, clock="wall", rules=("cart_abandoned",))
    rt = Runtime(s, Stores.memory(s))
    rt.engine = rt.decide.engine = Engine([Counts()], rt.policy)
    return rt


def buy(user: str, i: int) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": "Buy",
            "messageId": f"{user}-{i}",
            "userId": user,
            "timestamp": ms_to_iso(T0 + i),
            "context": {"channel": "web", "traits": {"email": f"{user}@example.com"}},
        }
    )


async def intake(rt: Runtime, values: Sequence[bytes]) -> list[OutRecord]:
    raw = [InRecord("cx.events.raw", 0, i, None, v) for i, v in enumerate(values)]
    return await rt.intake.process(raw, T0)


def on_kafka(records: Sequence[OutRecord], topic: str = TOPIC) -> list[InRecord]:
    """The records for ``topic`` as a consumer reads them back: offsets per partition."""
    offsets: dict[int, int] = {}
    out = []
    for r in records:
        if r.topic == topic:
            p = r.partition or 0
            out.append(InRecord(topic, p, offsets.get(p, 0), r.key, r.value))
            offsets[p] = offsets.get(p, 0) + 1
    return out


def counted(records: Sequence[OutRecord]) -> list[Any]:
    """(profile, how many Buys it had seen) of each decision in ``records``."""
    docs = [orjson.loads(r.value) for r in records if r.topic == "cx.decisions"]
    return sorted((d["profileId"], d["context"]["n"]) for d in docs)


def test_batched_keeps_each_partitions_order_and_leaves_other_records_alone() -> None:
    recs = [OutRecord(TOPIC, f"p{i}".encode(), orjson.dumps({"k": "ev", "i": i}), i % 3) for i in range(30)]
    other = OutRecord("cx.decisions", b"x", b"{}")
    lone = OutRecord(TOPIC, b"solo", b'{"k":"erase","pid":"solo"}', 7)
    out = envelope.batched([recs[0], other, *recs[1:], lone], TOPIC, 4_000_000)
    assert out[0] is other and lone in out  # a record alone stays as it is
    got: dict[int, list[int]] = {}
    for r in out[1:]:
        if r is lone:
            continue
        assert r.key is None and orjson.loads(r.value)["k"] == "b"
        items = envelope.unpack(r.value)
        assert r.headers == [(RECORDS_HEADER, str(len(items)).encode())]  # the decide batch counts them
        got.setdefault(r.partition or 0, []).extend(w["i"] for w, _ in items)
    assert got == {p: list(range(p, 30, 3)) for p in range(3)}


@given(st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=60), st.integers(200, 3000))
@settings(max_examples=60, deadline=None)
def test_a_batch_record_is_split_at_the_size_limit_and_nothing_is_lost(sizes: list[int], limit: int) -> None:
    recs = [
        OutRecord(TOPIC, b"k", orjson.dumps({"k": "ev", "i": i, "pad": "x" * n}), 0)
        for i, n in enumerate(sizes)
    ]
    out = envelope.batched(recs, TOPIC, 4 * limit)
    seen = []
    for r in out:
        items = envelope.unpack(r.value)
        assert len(items) == 1 or len(r.value) <= limit + 16  # only one record alone may be larger
        seen += [orjson.loads(r.value)["i"] if w is None else w["i"] for w, _ in items]
    assert seen == list(range(len(sizes)))


def test_batches_decide_exactly_as_records_one_by_one() -> None:
    values = [buy(f"u{i % 7}", i) for i in range(60)]
    one = runtime()
    out = asyncio.run(intake(one, values))
    res1 = asyncio.run(one.decide.process(on_kafka(out)))
    two = runtime()
    out2 = asyncio.run(intake(two, values))
    packed = envelope.batched(out2, TOPIC, 4_000_000)
    assert len(on_kafka(packed)) == 2  # one Kafka record per partition
    res2 = asyncio.run(two.decide.process(on_kafka(packed)))
    assert counted(res2.records) == counted(res1.records)
    assert len(counted(res1.records)) == 60
    assert {p: s.rules for p, s in res2.commit.states.items()} == {
        p: s.rules for p, s in res1.commit.states.items()
    }


def test_a_batch_delivered_again_is_applied_only_where_it_was_not() -> None:
    """A crash after some of a batch record's records were saved: the redelivery applies the rest."""
    rt = runtime(partitions=1)
    values = [buy("u1", 0), buy("u2", 1), buy("u1", 2), buy("u2", 3), buy("u1", 4)]
    packed = on_kafka(envelope.batched(asyncio.run(intake(rt, values)), TOPIC, 4_000_000))
    (batch,) = [r for r in packed if orjson.loads(r.value or b"")["k"] == "b"]
    items = envelope.unpack(batch.value or b"")
    u1 = next(e.profile_id for _, e in items if isinstance(e, envelope.EventRecord) and "u1" in str(e.event))
    # first delivery: only the first three records made it (a batch record of its own at the same offset)
    first = InRecord(
        TOPIC,
        0,
        batch.offset,
        None,
        orjson.dumps({"k": "b", "r": [w for w, _ in items[:3]]}),
    )
    res = asyncio.run(rt.decide.process([first]))
    asyncio.run(rt.decide.commit(res.commit))
    assert len(counted(res.records)) == 3
    again = asyncio.run(rt.decide.process([batch]))
    asyncio.run(rt.decide.commit(again.commit))
    n = {s: c for s, c in counted(again.records)}
    assert len(counted(again.records)) == 2  # the two records after index 2
    assert n[u1] == 3  # u1's third Buy, counted once each
    assert asyncio.run(rt.decide.process([batch])).records == []  # all applied: nothing more


def test_one_bad_record_in_a_batch_is_dead_lettered_alone_with_its_own_bytes() -> None:
    rt = runtime(partitions=1)
    packed = on_kafka(
        envelope.batched(asyncio.run(intake(rt, [buy("u1", 0), buy("u2", 1)])), TOPIC, 4_000_000)
    )
    (batch,) = [r for r in packed if orjson.loads(r.value or b"")["k"] == "b"]
    wires = [w for w, _ in envelope.unpack(batch.value or b"")]
    bad = {"k": "ev", "pid": "p_bad", "ev": {}}
    value = orjson.dumps({"k": "b", "r": [wires[0], bad, *wires[1:]]})
    res = asyncio.run(rt.decide.process([InRecord(TOPIC, 0, 41, None, value)]))
    dead = [r for r in res.records if r.topic == rt.settings.topic_deadletter]
    assert len(dead) == 1 and orjson.loads(dead[0].value) == bad and dead[0].key == b"p_bad"
    h = {k: v.decode() for k, v in dead[0].headers}
    assert h["cx-source-offset"] == "41" and "record 1 of a batch" in h["cx-error-detail"]
    assert len(counted(res.records)) == 2  # both good ones decided


def test_batches_can_be_turned_off_for_a_rolling_upgrade_and_decide_the_same() -> None:
    """``CXSTREAM_REPARTITION_BATCHES=false``: one record per event, as workers before batches
    wrote and read them (through the in-process pipeline, which writes as a worker does)."""
    values = [buy(f"u{i % 5}", i) for i in range(40)]
    seen: dict[bool, tuple[list[str], list[Any]]] = {}
    for on in (True, False):
        s = Settings(partitions=2, clock="wall", rules=("cart_abandoned",), repartition_batches=on)
        pipe = LocalPipeline(s)
        pipe.runtime.engine = pipe.runtime.decide.engine = Engine([Counts()], pipe.runtime.policy)
        kinds: list[str] = []
        route = pipe._route

        def recording(records: Iterable[OutRecord], kinds: list[str] = kinds, route: Any = route) -> None:
            records = list(records)
            kinds += [orjson.loads(r.value)["k"] for r in records if r.topic == TOPIC]
            route(records)

        pipe._route = recording  # type: ignore[method-assign]
        asyncio.run(pipe.feed(values))
        decided = [(d["profileId"], d["context"]["n"]) for d in map(orjson.loads, pipe.result.decisions)]
        seen[on] = (kinds, sorted(decided))
    assert set(seen[True][0]) == {"b"} and "b" not in seen[False][0]
    assert seen[False][0].count("ev") == len(values)
    assert seen[True][1] == seen[False][1] and len(seen[True][1]) == len(values)

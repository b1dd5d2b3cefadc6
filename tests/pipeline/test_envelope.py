"""Typed repartition records: parsed once from the wire, wire keys unchanged. Pure logic."""

from __future__ import annotations

import orjson
import pytest

from streams.model import Event, dumps
from streams.pipeline import envelope
from streams.pipeline.envelope import (
    EnvelopeError,
    EraseRecord,
    EventRecord,
    ExpectRecord,
    HandOffRecord,
    IdleRecord,
    MergeRecord,
    WatermarkRecord,
)

EV = {
    "messageId": "m1",
    "call": "track",
    "ts": 5,
    "channel": "web",
    "identifiers": [["user_id", "u1"]],
    "name": "X",
}

#: Records as versions before the typed records wrote them (still in flight during an upgrade).
WIRE = [
    (b'{"k":"ev","pid":"p1","ev":' + dumps(EV) + b',"rx":17}', EventRecord("p1", EV, 17)),
    (b'{"k":"ev","pid":"p1","ev":' + dumps(EV) + b"}", EventRecord("p1", EV, 0)),
    (b'{"k":"expect","pid":"p1","from":"p2","ts":9}', ExpectRecord("p1", "p2", 9)),
    (b'{"k":"merge","pid":"p2","into":"p1","ts":9}', MergeRecord("p2", "p1", 9)),
    (
        b'{"k":"hand","pid":"p1","from":"p2","state":{"cool":{"r":1}},"ts":9}',
        HandOffRecord("p1", "p2", {"cool": {"r": 1}}, 9),
    ),
    (b'{"k":"wm","src":3,"wm":1000}', WatermarkRecord(((3, 1000),))),  # one source, as before
    (b'{"k":"wms","marks":[[3,1000],[5,900]]}', WatermarkRecord(((3, 1000), (5, 900)))),
    (b'{"k":"idle","src":3}', IdleRecord(3)),
    (b'{"k":"erase","pid":"p1"}', EraseRecord("p1")),
]


def parse(raw: bytes) -> envelope.Envelope:
    """The one record of ``raw`` as the decide stage reads it (``envelope.unpack``), or its error."""
    ((wire, rec),) = envelope.unpack(raw)
    assert wire is None  # a record of its own, not a batch
    if isinstance(rec, EnvelopeError):
        raise rec
    return rec


@pytest.mark.parametrize(("raw", "want"), WIRE)
def test_every_kind_is_read_from_its_wire_form(raw: bytes, want: envelope.Envelope) -> None:
    got = parse(raw)
    kind = orjson.loads(raw)["k"]
    assert got == want and got.kind == ("wms" if kind == "wm" else kind)


def test_the_builders_write_what_parse_reads_and_the_wire_keys_are_unchanged() -> None:
    event = Event.from_dict(EV)
    built = [
        envelope.event_record("p1", event, 17),
        envelope.event_record_raw("p1", dumps(event.to_dict()), 17),
        envelope.expect_record("p1", "p2", 9),
        envelope.merge_record("p2", "p1", 9),
        envelope.handoff_record("p1", "p2", {"off": 1}, 9),
        envelope.watermark_record({5: 900, 3: 1000}),
        envelope.idle_record(3),
        envelope.erase_record("p1"),
    ]
    assert orjson.loads(built[5]) == {"k": "wms", "marks": [[3, 1000], [5, 900]]}
    for raw in built:
        rec = parse(raw)
        if not isinstance(rec, WatermarkRecord | IdleRecord):
            assert rec.to_wire() == orjson.loads(raw)  # same keys, same values


def test_forwarding_readdresses_a_record_to_the_survivor() -> None:
    fwd = envelope.readdressed(EventRecord("p2", EV, 17), "p1")
    assert orjson.loads(fwd) == {"k": "ev", "pid": "p1", "ev": EV, "rx": 17}
    assert orjson.loads(envelope.readdressed(EraseRecord("p2"), "p1")) == {"k": "erase", "pid": "p1"}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "no kind"),
        (b'{"pid":"p1"}', "no kind"),
        (b'{"k":"nope","pid":"p1"}', "unknown repartition record kind 'nope'"),
        (b'{"k":"ev","ev":{}}', "'ev' record: 'pid' must be a non-empty string"),
        (b'{"k":"ev","pid":"p1","ev":[1]}', "without an event object"),
        (b'{"k":"merge","pid":"p2","ts":9}', "'merge' record: 'into'"),
        (b'{"k":"merge","pid":"p2","into":"p1"}', "'ts' must be a number"),
        (b'{"k":"hand","pid":"p1","from":"p2","state":"x"}', "without a state object"),
        (b'{"k":"wm","src":"3","wm":1}', "'src' must be a number"),
        (b'{"k":"wms","marks":[]}', "'marks' must be a non-empty list"),
        (b'{"k":"wms","marks":[[1]]}', "'marks' must be a non-empty list"),
        (b'{"k":"wms","marks":[[1, "x"]]}', "'wm' must be a number"),
        (b'{"k":"wms","marks":[[-1, 5]]}', "'src' must be a partition number"),
        (b'{"k":"expect","pid":"p1"}', "'from'"),
    ],
)
def test_a_bad_record_raises_a_clear_error(raw: bytes, says: str) -> None:
    with pytest.raises(EnvelopeError, match=says.replace("(", r"\(")):
        parse(raw)


def test_profiles_land_on_the_partition_kafkas_default_partitioner_picks() -> None:
    """Our murmur2 gives aiokafka's (the Java client's) numbers for every key length and byte,
    so a repartition record lands where a keyed record from any Kafka client would."""
    import random

    from aiokafka.partitioner import murmur2 as kafkas

    rnd = random.Random(7)
    keys = [bytes(rnd.randrange(256) for _ in range(n)) for n in range(0, 70) for _ in range(40)]
    keys += [b"\xff" * 64, b"\x80\x00\x00\x01" * 5]
    for key in keys:
        assert envelope.murmur2(key) == kafkas(key), key
    for pid in ("p_0", "p_3f2a9c0e5b7d41e8a6c2f1d0b9e8a7c6", "é" * 9):
        for partitions in (1, 8, 12, 97):
            assert envelope.partition_for(pid, partitions) == (kafkas(pid.encode()) & 0x7FFFFFFF) % partitions


def test_the_producers_partitioner_is_aiokafkas_default() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    theirs = DefaultPartitioner()
    for n in (1, 3, 8, 12):
        parts = list(range(n))
        for i in range(500):
            key = f"trigger-{i}-{'x' * (i % 7)}".encode()
            assert envelope.kafka_partitioner(key, parts, parts) == theirs(key, parts, parts)
        # no key: any available partition, else any partition
        assert envelope.kafka_partitioner(None, parts, [parts[-1]]) == parts[-1]
        assert envelope.kafka_partitioner(None, parts, []) in parts

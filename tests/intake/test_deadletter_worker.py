"""End to end on the real local stack: garbage among valid events, through a running worker.

Every garbage message lands on the dead-letter topic byte-identical, with headers naming the
cause and where it was read; every valid event is processed; the worker keeps consuming.

Message size: the local Tansu broker accepted every size tried up to 1 MiB (1,048,576 bytes,
probed with confluent-kafka and ``message.max.bytes`` raised). librdkafka's own producer limit
(``message.max.bytes``, 1,000,000 by default) is the first to refuse a 1 MiB value, so this test
raises it. The worker's producer allows ``CXSTREAM_KAFKA_MAX_REQUEST_SIZE`` (2 MiB by default),
so the dead letter of a 1 MB value (1,000,297 bytes with key and headers) goes out whole.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import consume, running_worker

from streams.intake import ms_to_iso
from streams.settings import Settings
from streams.testing import at

pytestmark = pytest.mark.stack

BLOB = 1_000_000  # bytes: "1 MB"; see the module docstring for the real limits
SAFE_BLOB = 900_000  # under librdkafka's default limit too


def garbage(blob: int) -> list[tuple[str, bytes, str]]:
    """(label, bytes, expected cx-error-code); the label is the record key."""
    return [
        ("bad json", b'{"type": "track", "userId": "u1", "event": ', "not_json"),
        ("binary", bytes(range(256)) * 4, "not_json"),
        ("empty", b"", "empty"),
        ("big blob", b"x" * blob, "too_large"),
        (
            "big json",
            orjson.dumps({"type": "track", "userId": "big", "event": "X", "p": "y" * (blob - 100)}),
            "too_large",
        ),
        (
            "40 KB json",
            orjson.dumps({"type": "track", "userId": "big", "event": "X", "p": "y" * 40_000}),
            "too_large",
        ),
        ("array", b"[1, 2, 3]", "not_object"),
        ("wrong type", orjson.dumps({"type": "identify", "userId": {"id": 1}}), "wrong_type"),
        ("unknown call", orjson.dumps({"type": "purchase", "userId": "u1"}), "unknown_type"),
        ("no identity", orjson.dumps({"type": "track", "event": "X", "userId": "null"}), "missing_identity"),
        ("no event", orjson.dumps({"type": "track", "userId": "u1"}), "missing_field"),
        (
            "bad time",
            orjson.dumps({"type": "identify", "userId": "u1", "timestamp": "soon"}),
            "bad_timestamp",
        ),
    ]


def valid(n: int, start: int) -> bytes:
    return orjson.dumps(
        {
            "type": "identify",
            "userId": f"person-{n}",
            "messageId": f"m-{n}",
            "timestamp": ms_to_iso(start + n),
        }
    )


def produce_tracked(s: Settings, records: list[tuple[bytes | None, bytes]]) -> list[tuple[int, int]]:
    """Produce in order; return each record's (partition, offset) from the broker's acks."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "message.max.bytes": 4 * BLOB})
    coords: list[Any] = [None] * len(records)
    errors: list[Any] = []

    def ack(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err:
                errors.append(err)
            else:
                coords[i] = (msg.partition(), msg.offset())

        return cb

    for i, (k, v) in enumerate(records):
        p.produce(s.topic_raw, v, k, on_delivery=ack(i))
        p.poll(0)
    assert p.flush(60) == 0, "not every record was delivered"
    assert not errors, errors
    return coords


@pytest.mark.parametrize(
    "blob",
    [
        SAFE_BLOB,
        BLOB,
    ],
    ids=["900KB", "1MB"],
)
def test_garbage_is_dead_lettered_byte_identical_and_valid_events_flow(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path, blob: int
) -> None:
    GARBAGE = garbage(blob)
    wait = 120
    s = make_settings(rules=("loan_eligibility_repeat",))
    topics(s)
    start = at("2026-03-02T09:00:00Z")
    records: list[tuple[bytes | None, bytes]] = [(f"k{n}".encode(), valid(n, start)) for n in range(10)]
    records += [(label.encode(), raw) for label, raw, _ in GARBAGE]
    records += [(f"k{n}".encode(), valid(n, start)) for n in range(10, 20)]
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        coords = produce_tracked(s, records)
        dead = consume(s, s.topic_deadletter, want=len(GARBAGE), timeout=wait, idle=2)
        assert len(dead) == len(GARBAGE), [m.key() for m in dead]
        created = consume(s, s.topic_identity_changes, want=20, timeout=wait, idle=1)
        assert proc.poll() is None, log.read_text()[-3000:]
        # still consuming after the garbage: one more valid event is processed
        produce_tracked(s, [(b"k-last", valid(99, start))])
        after = consume(s, s.topic_identity_changes, want=21, timeout=wait, idle=1)
        assert proc.poll() is None, log.read_text()[-3000:]

    assert len(dead) == len(GARBAGE), [m.key() for m in dead]
    by_key = {m.key(): m for m in dead}
    for i, (label, raw, code) in enumerate(GARBAGE, start=10):
        m = by_key[label.encode()]
        assert (m.value() or b"") == raw, f"{label}: dead letter is not byte-identical"
        h = {k: v.decode() for k, v in m.headers() or []}
        part, off = coords[i]
        assert h["cx-error-code"] == code, (label, h)
        assert h["cx-error-detail"], label
        assert (h["cx-source-topic"], h["cx-source-partition"], h["cx-source-offset"]) == (
            s.topic_raw,
            str(part),
            str(off),
        ), label
    changes = [orjson.loads(m.value()) for m in created]
    assert len(changes) == 20 and all(c["change"] == "created" for c in changes)
    assert sorted(c["messageId"] for c in changes) == sorted(f"m-{n}" for n in range(20))
    assert "m-99" in {orjson.loads(m.value())["messageId"] for m in after}

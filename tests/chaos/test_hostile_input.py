"""Hostile input mixed into valid traffic, on the real local stack: every input is accounted for.

Inputs = events on the repartition topic + dead letters (each with its code) + duplicates we
produced on purpose; zero lost, the worker never exits, its group commits past everything, and
the triggers of the valid events are exactly those of ``cxstream simulate`` on them alone.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from chaos.ledger import (
    DUP,
    VALID,
    account,
    alive_check,
    by_outcome,
    clean_run,
    demo_slice,
    produce_tracked,
    read_topic,
    repeated_ids,
    trigger_set,
)
from helpers import running_worker

from streams.settings import Settings

pytestmark = pytest.mark.stack

#: levels of nesting inside the field (the message is level 1, so the event nests 2-3 deeper):
#: around orjson's write limit (255), and up to its read limit (1,024)
DEPTHS = (252, 253, 254, 255, 256, 300, 700, 1000, 1021, 1022)
PLACES = ("properties", "traits", "context.traits")


def nested(levels: int) -> object:
    """``levels`` levels of objects and arrays (an object every 16th level), built inside out."""
    node: object = [1]
    for i in range(levels - 1):
        node = {"d": node} if i % 16 == 15 else [node]
    return node


def base_event(user: str, mid: str) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": mid,
        "userId": user,
        "timestamp": "2026-03-01T10:00:00.000Z",
        "context": {"channel": "web", "location": {"country": "US"}},
        "properties": {"product_id": "p-1"},
    }


def deep_event(user: str, n: int, levels: int, place: str) -> bytes:
    ev = base_event(user, f"chaos-deep-{n}")
    ev["properties"] = {"pad": "x" * max(0, 1800 - 2 * levels)}  # about 2 KB whatever the depth
    if place == "properties":
        ev["properties"]["deep"] = nested(levels)  # type: ignore[index]
    elif place == "traits":
        ev["type"] = "identify"
        ev["traits"] = {"deep": nested(levels)}
    else:
        ev["context"]["traits"] = {"deep": nested(levels)}  # type: ignore[index]
    raw = orjson.dumps(ev) if levels <= 250 else _dumps_deep(ev)
    assert 1500 < len(raw) < 6000, len(raw)
    return raw


def _dumps_deep(ev: dict[str, object]) -> bytes:
    """orjson writes at most 255 levels (that is why the limit exists): serialize by hand."""

    def enc(o: object) -> str:
        if isinstance(o, dict):
            return "{" + ",".join(f"{orjson.dumps(k).decode()}:{enc(v)}" for k, v in o.items()) + "}"
        if isinstance(o, list):
            return "[" + ",".join(enc(v) for v in o) + "]"
        return orjson.dumps(o).decode()

    import sys

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        return enc(ev).encode()
    finally:
        sys.setrecursionlimit(old)


def many_ids_event(user: str, n: int, count: int = 1000) -> bytes:
    ev = base_event(user, f"chaos-ids-{n}")
    ev["context"]["externalIds"] = [  # type: ignore[index]
        {"id": i, "type": ("crm_id", "loyalty_id", "x")[i % 3]} for i in range(count)
    ]
    raw = orjson.dumps(ev)
    assert len(raw) < 32 * 1024, "must be rejected for its identifiers, not its size"
    return raw


def not_json(valid: bytes) -> list[bytes]:
    return [
        valid[: len(valid) // 2],  # cut in the middle
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"{'type': 'track'}",  # Python, not JSON
        b"hello world",
    ]


def blobs(user: str) -> list[bytes]:
    ev = base_event(user, "chaos-blob-0")
    ev["properties"] = {"blob": "y" * 900_000}
    return [orjson.dumps(ev), random.Random(7).randbytes(900_000)]


def hostile_mix(valid: list[tuple[bytes, bytes]], seed: int = 2026) -> list[tuple[bytes | None, bytes, str]]:
    """The valid events in order, with hostile records and a few duplicates at random places.

    Hostile records are keyed like a random valid person, so they sit in that person's
    partition between its valid events."""
    rng = random.Random(seed)
    hostile: list[tuple[bytes, str]] = []
    n = 0
    for levels in DEPTHS:
        for place in PLACES:
            hostile.append((deep_event(f"deep-{n}", n, levels, place), "too_deep"))
            n += 1
    hostile += [(many_ids_event(f"ids-{i}", i), "too_many_identifiers") for i in range(3)]
    hostile += [(v, "not_json") for v in not_json(valid[0][1])]
    hostile += [(v, "too_large") for v in blobs("blob")]
    out: list[tuple[bytes | None, bytes, str]] = [(k, v, VALID) for k, v in valid]
    for value, code in hostile:
        key = rng.choice(valid)[0]
        out.insert(rng.randrange(len(out) + 1), (key, value, code))
    # duplicates by messageId: the same bytes again, same key, later in the same partition
    for i in rng.sample(range(len(out)), 40):
        if len([r for r in out if r[2] == DUP]) >= 5:
            break
        k, v, label = out[i]
        if label == VALID:
            out.insert(i + 1 + rng.randrange(5), (k, v, DUP))
    return out


def test_hostile_events_are_dead_lettered_with_their_codes_and_valid_triggers_are_unchanged(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    started = time.monotonic()
    s = make_settings(clock="event", watermark_idle_timeout=2.0)
    valid = demo_slice(300, every=3)
    records = hostile_mix(valid)
    want_dead = Counter(label for _, _, label in records if label not in (VALID, DUP))
    clean = asyncio.run(clean_run(s, [v for _, v in valid]))
    topics(s)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        alive = alive_check(proc, log)
        sent = produce_tracked(s, records)
        ledger, _ = account(s, sent, timeout=90, alive=alive)
        acts = read_topic(
            s,
            s.topic_activations,
            until=lambda ms: len(ms) >= len(clean.activations),
            timeout=60,
            idle=2.0,
            alive=alive,
        )
        decs = read_topic(
            s, s.topic_decisions, until=lambda ms: len(ms) >= len(clean.decisions), timeout=30, idle=1.0
        )
        alive()
    took = time.monotonic() - started
    print(
        f"\n[chaos a] {ledger.summary()}\n[chaos a] activations {len(acts)} (clean run "
        f"{len(clean.activations)}), decisions {len(decs)} (clean run {len(clean.decisions)}), {took:.1f}s"
    )
    assert not ledger.lost, [(x.partition, x.offset, x.label, x.value[:80]) for x in ledger.lost]
    assert not ledger.misplaced, [(x.label, where, x.value[:80]) for x, where in ledger.misplaced]
    assert ledger.balanced, ledger.summary()
    assert ledger.dead == want_dead
    assert not ledger.other_dead, "no dead letter that is not one of the hostile inputs"
    assert ledger.accounted == len(valid)
    assert not ledger.uncommitted, ledger.uncommitted
    values = [m.value() for m in acts]
    assert not repeated_ids(values)
    assert trigger_set(values) == trigger_set(clean.activations)
    dec_values = [m.value() for m in decs]
    assert not repeated_ids(dec_values)
    assert {orjson.loads(v)["id"] for v in dec_values} == {orjson.loads(v)["id"] for v in clean.decisions}
    assert "error" not in by_outcome(dec_values)

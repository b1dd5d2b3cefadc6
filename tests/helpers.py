"""Helpers for tests that run real workers: start, kill, read topics with an independent client."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from streams.dev import start_worker, stop_worker
from streams.settings import Settings, load_settings
from streams.stack import LocalStack

_n = itertools.count()


def fresh_settings(stack: LocalStack, **overrides: Any) -> Settings:
    """Settings on the test stack with a fresh app id, topic names and Redis prefix."""
    tag = f"t{next(_n)}{uuid.uuid4().hex[:6]}"
    base: dict[str, Any] = dict(
        kafka_bootstrap=stack.kafka_bootstrap,
        redis_url=stack.redis_url,
        app_id=f"cx-{tag}",
        redis_prefix=f"cx-{tag}",
        partitions=4,
        metrics_port=0,
        # the local broker holds a group's first join for half the session timeout
        kafka_session_timeout=6.0,
        kafka_rebalance_timeout=10.0,
        topic_raw=f"{tag}.events.raw",
        topic_deadletter=f"{tag}.events.deadletter",
        topic_activations=f"{tag}.activations",
        topic_decisions=f"{tag}.decisions",
        topic_identity_changes=f"{tag}.identity.changes",
        topic_conversions=f"{tag}.conversions",
        batch_within=0.02,
        timer_tick=0.2,
    )
    base.update(overrides)
    return load_settings(**base)


@contextlib.contextmanager
def running_worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker subprocess, always stopped (SIGKILL after a grace period) when the block ends."""
    proc = start_worker(settings, log)
    try:
        yield proc
    finally:
        stop_worker(proc, timeout=10)


def kill9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def consume(
    settings: Settings,
    topic: str,
    *,
    want: int,
    timeout: float = 60.0,
    idle: float = 0.0,
    size: Callable[[Any], int] | None = None,
) -> list[Any]:
    """Read ``topic`` from the beginning with confluent-kafka (independent of our aiokafka/faust stack)
    until ``want`` records arrived (then ``idle`` more seconds of nothing) or ``timeout``. ``size``:
    how many records a message holds (default one; :func:`records_in` for the repartition topic)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"reader-{os.getpid()}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    # assign, not subscribe: no consumer-group round trips, every partition from the start
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list[Any] = []
    n = 0
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None or msg.error():
                if n >= want and (quiet_until is None or time.monotonic() >= quiet_until):
                    break
                continue
            out.append(msg)
            n += 1 if size is None else size(msg)
            if n >= want:
                quiet_until = time.monotonic() + idle
    finally:
        c.close()
    return out


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce with confluent-kafka and wait for every delivery."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    errors: list[Any] = []
    for k, v in records:
        p.produce(topic, v, k, on_delivery=lambda err, _m: errors.append(err) if err else None)
    assert p.flush(30) == 0, "not every record was delivered"
    assert not errors, errors


def keys_covering(partitions: int, prefix: str, sources: Iterable[int] | None = None) -> list[str]:
    """One key per source partition (of ``sources``, default all), so an event on each moves
    every partition's watermark."""
    from streams.pipeline.envelope import partition_for

    want = set(range(partitions) if sources is None else sources)
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(want):
        p = partition_for(f"{prefix}{n}", partitions)
        if p in want:
            found.setdefault(p, f"{prefix}{n}")
        n += 1
    return list(found.values())


def profiled_records(msg: Any) -> list[Any]:
    """The records (decoded) of a message of the repartition topic: one, or a batch's."""
    d = orjson.loads(msg.value())
    return list(d["r"]) if isinstance(d, dict) and d.get("k") == "b" else [d]


def records_in(msg: Any) -> int:
    """How many records a message of the repartition topic holds (``consume``'s ``size``)."""
    return len(profiled_records(msg))


def json_values(msgs: list[Any]) -> list[Any]:
    return [orjson.loads(m.value()) for m in msgs]


def person_keys(values: Iterable[bytes] | Path) -> dict[bytes, bytes]:
    """Line -> a key shared by all events of one person (identifiers linked by union-find).

    Producing a person's events under one key keeps them in file order on one partition,
    which is what 'the same input' means for the order-dependent part of identity: which
    event of a person creates the profile (and so names it). ``values``: lines, or a JSONL file.
    """
    from streams.intake import Intake
    from streams.model import SourceRef
    from streams.replay import lines

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    intake = Intake()
    ids_of: dict[bytes, list[str]] = {}
    for n, line in enumerate(lines(values) if isinstance(values, Path) else values):
        ev = intake.parse(line, None, SourceRef("f", 0, n), 2**62)
        ids = [str(i) for i in getattr(ev, "identifiers", ())]
        ids_of[line] = ids
        for other in ids[1:]:
            parent[find(other)] = find(ids[0])
    return {line: find(ids[0]).encode() for line, ids in ids_of.items() if ids}


class OwnRedis:
    """A redis-server of one test alone, to stop, fill or pause. ``durable``: with an
    append-only file fsynced on every write, so a restart keeps the data."""

    def __init__(self, workdir: Path, *, durable: bool = False) -> None:
        from streams.stack import free_port

        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from streams.stack import _wait_redis, redis_binary

        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *aof,
            "--dir",
            str(self.workdir),
        ]
        self.proc = subprocess.Popen(
            [redis_binary(), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_redis(self.port, 10)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def loan_checks(user: str, start: int) -> list[tuple[bytes, bytes]]:
    """Three `Loan Eligibility Checked` a day apart for ``user`` (email, US, consent by default):
    the third fires `loan_eligibility_repeat`, keyed by the third check's messageId."""
    from streams.intake import ms_to_iso

    day = 86_400_000
    out = []
    for i in range(3):
        ev = {
            "type": "track",
            "event": "Loan Eligibility Checked",
            "messageId": f"{user}-c{i}",
            "userId": user,
            "timestamp": ms_to_iso(start + i * day),
            "properties": {"product": "auto_loan"},
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "traits": {"email": f"{user}@example.com"},
            },
        }
        out.append((user.encode(), orjson.dumps(ev)))
    return out

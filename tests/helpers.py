"""Helpers for tests that run real workers: start, kill, read topics with an independent client."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from streams.dev import start_worker, stop_worker
from streams.settings import Settings


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
) -> list[Any]:
    """Read ``topic`` from the beginning with confluent-kafka (independent of our aiokafka/faust stack)
    until ``want`` records arrived (then ``idle`` more seconds of nothing) or ``timeout``."""
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
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None or msg.error():
                if len(out) >= want and (quiet_until is None or time.monotonic() >= quiet_until):
                    break
                continue
            out.append(msg)
            if len(out) >= want:
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


def json_values(msgs: list[Any]) -> list[Any]:
    return [orjson.loads(m.value()) for m in msgs]

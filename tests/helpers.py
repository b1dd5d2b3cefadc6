"""Helpers for tests that run real workers: start, kill, read topics with an independent client."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
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

"""Producing files to topics and reading topics back: ``replay``, ``tail``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.kafka import client_options
from streams.settings import Settings


def key_of(line: bytes) -> bytes | None:
    """The key a Segment event is produced with: userId, else anonymousId (as Segment's own pipes do)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, dict):
        for field in ("userId", "anonymousId"):
            v = doc.get(field)
            if isinstance(v, str | int) and not isinstance(v, bool) and str(v):
                return str(v).encode()
    return None


def lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line:
                yield line


async def replay_file(
    settings: Settings,
    path: Path,
    *,
    rate: float = 0.0,
    topic: str | None = None,
    key: Callable[[bytes], bytes | None] = key_of,
) -> int:
    """Produce every line of ``path`` to ``topic``; returns the count. ``rate`` in events/s (0: max).

    ``key`` picks each record's key (default: userId, else anonymousId)."""
    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    n = 0
    start = time.monotonic()
    try:
        futs = []
        for line in lines(path):
            futs.append(await producer.send(topic or settings.topic_raw, line, key=key(line)))
            n += 1
            if rate > 0:
                ahead = n / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(futs) >= 1000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)
    finally:
        await producer.stop()
    return n


async def tail_topic(settings: Settings, topic: str, *, from_beginning: bool = False, limit: int = 0) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(settings),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    n = 0
    try:
        async for msg in consumer:
            value = msg.value or b""
            sys.stdout.write(value.decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
            n += 1
            if limit and n >= limit:
                return
    finally:
        await consumer.stop()

"""Reads whole topics for ``cxstream report``: from the beginning up to the end they have now.

An aiokafka consumer without a group (nothing committed, nobody's offsets moved): every
partition is assigned and read from its first offset to its end (:func:`read_topic` says how
the end is found). Records produced after the read started are left for the next report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.exceptions import ConfigError, CxStreamError
from streams.kafka import client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

#: how long one poll waits for more records before a partition at its end offset counts as read
POLL_MS = 1000


async def read_topic(settings: Settings, topic: str, within: float = 60.0) -> list[Any]:
    """Every JSON value of ``topic`` produced before the read started, partition by partition in
    offset order. A value that is not JSON is skipped (and counted in the log). Raises
    :class:`CxStreamError` (one line) if that is not read within ``within`` seconds, and
    :class:`ConfigError` if Kafka cannot be reached.

    A partition is read to its end when the consumer's position has reached the end offset the
    broker reports *and* a poll brings nothing more, or when a record produced after the read
    started arrives (left out). The second condition is what ends it on the local broker, whose
    reported end offsets can lag the records it holds (measured: 16 of 290 decisions missed when
    trusting them alone); on Kafka the first ends it after one empty poll.
    """
    started_ms = int(time.time() * 1000)
    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise ConfigError(
            f"CXSTREAM_KAFKA_BOOTSTRAP={settings.kafka_bootstrap!r}: cannot read {topic} ({exc}); "
            "expected a reachable Kafka"
        ) from None
    try:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            await consumer.client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        bad = 0
        todo = set(tps)

        async def drain() -> None:
            nonlocal bad
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=POLL_MS)
                for tp, msgs in batch.items():
                    for m in msgs:
                        if m.timestamp is not None and m.timestamp > started_ms:
                            todo.discard(tp)  # produced after we started: the end of this read
                            break
                        try:
                            out.append(orjson.loads(m.value or b""))
                        except orjson.JSONDecodeError:
                            bad += 1
                for tp in list(todo):
                    if not batch.get(tp) and await consumer.position(tp) >= ends[tp]:
                        todo.discard(tp)

        try:
            await asyncio.wait_for(drain(), within)
        except TimeoutError:
            raise CxStreamError(
                f"{topic} was not read to its end within {within:g} s ({len(out)} records read); "
                "give it longer with --timeout"
            ) from None
        if bad:
            log.warning("%d records of %s are not JSON; left out", bad, topic)
        return out
    finally:
        await consumer.stop()


async def read_measurement(settings: Settings, within: float = 60.0) -> tuple[list[Any], list[Any]]:
    """(decisions, conversions), each read whole."""
    decisions = await read_topic(settings, settings.topic_decisions, within)
    conversions = await read_topic(settings, settings.topic_conversions, within)
    return decisions, conversions

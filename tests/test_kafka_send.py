"""send_all: every record acked in order, and a record too large for good is cut, not stuck."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from helpers import consume

from streams.kafka import send_all
from streams.pipeline.records import OutRecord
from streams.settings import Settings

pytestmark = pytest.mark.stack


class FaustShapedProducer:
    """A real aiokafka producer behind faust's ``send(topic, key, value, partition, ts, headers)``."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, key: Any, value: Any, partition: Any, ts: Any, headers: Any) -> Any:
        return await self.producer.send(topic, value, key=key, partition=partition, headers=headers)


def test_an_oversized_record_goes_out_cut_with_its_length_and_hash(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None]
) -> None:
    s = make_settings()
    topics(s)
    big = bytes(range(256)) * 800  # 204,800 bytes
    records = [
        OutRecord(s.topic_deadletter, b"a", b"small before", 0),
        OutRecord(s.topic_deadletter, b"b", big, 0, [("cx-error-code", b"too_large")]),
        OutRecord(s.topic_deadletter, b"c", b"small after", 0),
    ]

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, max_request_size=64 * 1024)
        await p.start()
        try:
            await asyncio.wait_for(send_all(FaustShapedProducer(p), records, 64 * 1024), 30)
            # and when the broker (here: the producer) refuses a record the size check let through
            await asyncio.wait_for(send_all(FaustShapedProducer(p), records[1:2], 1024 * 1024), 30)
        finally:
            await p.stop()

    asyncio.run(run())
    msgs = consume(s, s.topic_deadletter, want=4, timeout=30, idle=1)
    assert [m.key() for m in msgs] == [b"a", b"b", b"c", b"b"]
    for cut in (msgs[1], msgs[3]):
        headers = dict(cut.headers() or [])
        assert headers["cx-error-code"] == b"too_large"
        assert headers["cx-truncated-from"] == str(len(big)).encode()
        assert headers["cx-value-sha256"] == hashlib.sha256(big).hexdigest().encode()
        assert 0 < len(cut.value()) < 64 * 1024 and big.startswith(cut.value())

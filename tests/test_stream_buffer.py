"""The stream buffer holds a whole delivery round below its pressure mark (streams.app).

faust's delivery waits, record by record, on a stream's full buffer, and every other stream's
records wait behind it: a round that does not fit starves the decide stage behind a raw
backlog. The buffer is faust's (mode's) flow-control queue; its pressure mark is mode's, so this
checks the sizing against the queue itself, for the shapes a deployment may have."""

from __future__ import annotations

import inspect

import pytest
from aiokafka import AIOKafkaConsumer
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.app import (
    FETCH_BYTES_PER_PARTITION,
    FETCH_BYTES_PER_REQUEST,
    ROUND_EVENT_BYTES,
    STREAM_BUFFER_BATCHES,
    stream_buffer_size,
)
from streams.settings import load_settings


@pytest.mark.parametrize(("partitions", "batch_size"), [(1, 1), (8, 1000), (8, 5000), (32, 500), (128, 1000)])
def test_a_fetch_round_of_every_partition_fits_below_the_pressure_mark(
    partitions: int, batch_size: int
) -> None:
    s = load_settings(
        kafka_bootstrap="127.0.0.1:9",
        redis_url="redis://127.0.0.1:9",
        partitions=partitions,
        batch_size=batch_size,
    )
    size = stream_buffer_size(s)
    queue: ThrowableQueue = ThrowableQueue(maxsize=size, flow_control=FlowControlEvent())
    fetch = min(partitions * FETCH_BYTES_PER_PARTITION, FETCH_BYTES_PER_REQUEST)
    round_records = fetch // ROUND_EVENT_BYTES
    assert queue.pressure_high_size >= round_records
    assert size >= STREAM_BUFFER_BATCHES * batch_size  # and whole batches in flight, as before


def test_a_fetch_request_brings_what_the_sizing_assumes() -> None:
    # faust leaves aiokafka's fetch_max_bytes at its default: the cap of one broker's round
    default = inspect.signature(AIOKafkaConsumer).parameters["fetch_max_bytes"].default
    assert default == FETCH_BYTES_PER_REQUEST

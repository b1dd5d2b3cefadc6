"""The plain record types that flow between the stages and the Kafka layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.frozen import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class InRecord:
    """A record read from Kafka (or a file, in ``simulate``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None  # Kafka record timestamp, ms


@fast_init
@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce. ``partition`` None lets the producer's partitioner choose (by key)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

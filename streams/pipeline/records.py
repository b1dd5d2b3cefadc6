"""The plain record types that flow between the stages and the Kafka layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.frozen import fast_init


@dataclass(frozen=True, slots=True, init=False)
class InRecord:
    """A record read from Kafka (or a file, in ``simulate``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None  # Kafka record timestamp, ms

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int | None = None,
    ) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "timestamp", timestamp)


@dataclass(frozen=True, slots=True, init=False)
class OutRecord:
    """A record to produce. ``partition`` None lets the producer's partitioner choose (by key)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "headers", [] if headers is None else headers)


# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(InRecord)
fast_init(OutRecord)

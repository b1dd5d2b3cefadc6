"""The internal messages every stage after intake works on.

Plain frozen dataclasses (not pydantic): intake validates once at the edge, and after
that these objects are built and read hundreds of thousands of times per second.
Each has ``to_json`` / ``from_json`` for the internal repartition topic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from streams.frozen import fast_init

JSONDict = dict[str, Any]
CallType = Literal["identify", "track", "page", "screen", "group", "alias"]
CALL_TYPES: tuple[CallType, ...] = ("identify", "track", "page", "screen", "group", "alias")


@dataclass(frozen=True, slots=True, init=False)
class Identifier:
    """One identifier of a person: ``type`` such as ``email``, normalized ``value``."""

    type: str
    value: str

    def __init__(self, type: str, value: str) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "value", value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"

    @classmethod
    def parse(cls, ref: str) -> Identifier:
        type_, sep, value = ref.partition(":")
        if not sep or not type_ or not value:
            raise ValueError(f"identifier {ref!r} is not TYPE:VALUE, e.g. email:ann@example.com")
        return cls(type_, value)


@dataclass(frozen=True, slots=True, init=False)
class ConsentSignal:
    """A customer's statement about one purpose, at event time ``ts`` (ms)."""

    purpose: str
    granted: bool
    ts: int
    source: str

    def __init__(self, purpose: str, granted: bool, ts: int, source: str) -> None:
        object.__setattr__(self, "purpose", purpose)
        object.__setattr__(self, "granted", granted)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "source", source)


@dataclass(frozen=True, slots=True, init=False)
class SourceRef:
    """Where a message was read: for dead letters, audit and redelivery-aware dedupe."""

    topic: str
    partition: int
    offset: int

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        object.__setattr__(self, "topic", topic)
        object.__setattr__(self, "partition", partition)
        object.__setattr__(self, "offset", offset)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True, init=False)
class Event:
    """A validated, normalized customer event: what every stage after intake sees."""

    message_id: str
    call: CallType
    ts: int  # event time, epoch ms
    channel: str
    identifiers: tuple[Identifier, ...]
    name: str | None = None  # track: event name; page/screen: name
    received_ts: int = 0
    properties: JSONDict = field(default_factory=dict)
    traits: JSONDict = field(default_factory=dict)
    consent: tuple[ConsentSignal, ...] = ()
    country: str | None = None
    previous_id: str | None = None
    source: SourceRef | None = None

    def __init__(
        self,
        message_id: str,
        call: CallType,
        ts: int,
        channel: str,
        identifiers: tuple[Identifier, ...],
        name: str | None = None,
        received_ts: int = 0,
        properties: JSONDict | None = None,
        traits: JSONDict | None = None,
        consent: tuple[ConsentSignal, ...] = (),
        country: str | None = None,
        previous_id: str | None = None,
        source: SourceRef | None = None,
    ) -> None:
        object.__setattr__(self, "message_id", message_id)
        object.__setattr__(self, "call", call)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "identifiers", identifiers)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "received_ts", received_ts)
        object.__setattr__(self, "properties", {} if properties is None else properties)
        object.__setattr__(self, "traits", {} if traits is None else traits)
        object.__setattr__(self, "consent", consent)
        object.__setattr__(self, "country", country)
        object.__setattr__(self, "previous_id", previous_id)
        object.__setattr__(self, "source", source)

    def to_dict(self) -> JSONDict:
        d: JSONDict = {
            "messageId": self.message_id,
            "call": self.call,
            "ts": self.ts,
            "channel": self.channel,
            "identifiers": [[i.type, i.value] for i in self.identifiers],
        }
        if self.name is not None:
            d["name"] = self.name
        if self.received_ts:
            d["receivedTs"] = self.received_ts
        if self.properties:
            d["properties"] = self.properties
        if self.traits:
            d["traits"] = self.traits
        if self.consent:
            d["consent"] = [[c.purpose, c.granted, c.ts, c.source] for c in self.consent]
        if self.country:
            d["country"] = self.country
        if self.previous_id:
            d["previousId"] = self.previous_id
        if self.source:
            d["source"] = [self.source.topic, self.source.partition, self.source.offset]
        return d

    @classmethod
    def from_dict(cls, d: JSONDict) -> Event:
        src = d.get("source")
        # positional, in __init__'s order: compiled, keyword arguments cost a parse of their names
        return cls(
            d["messageId"],
            d["call"],
            d["ts"],
            d["channel"],
            tuple(itertools.starmap(Identifier, d["identifiers"])),  # [type, value] pairs
            d.get("name"),
            d.get("receivedTs", 0),
            d.get("properties") or {},
            d.get("traits") or {},
            tuple(ConsentSignal(p, g, t, s) for p, g, t, s in d.get("consent") or ()),
            d.get("country"),
            d.get("previousId"),
            SourceRef(*src) if src else None,
        )

    def identifier(self, type_: str) -> str | None:
        for i in self.identifiers:
            if i.type == type_:
                return i.value
        return None


def dumps(obj: Any) -> bytes:
    """orjson with sorted keys: the same object always gives the same bytes (stable ids, diffs)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


loads = orjson.loads

# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(Identifier)
fast_init(ConsentSignal)
fast_init(SourceRef)
fast_init(Event)

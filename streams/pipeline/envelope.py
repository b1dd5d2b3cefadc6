"""Records of the internal repartition topic ``<app_id>-profiled`` (keyed by profile id).

On the wire each record is a JSON object whose ``k`` says its kind; the wire keys are short and
stable (``schemas/profiled-record.schema.json``): records written by an older version are still
in flight during a rolling upgrade and must be read. In code, :func:`unpack` turns the bytes into
one of the typed records below (or those of a batch), once, and gives an :class:`EnvelopeError`
for anything else.

=========  ==================  ==============================================================
``k``      record              meaning
=========  ==================  ==============================================================
``ev``     :class:`EventRecord`  a resolved event for profile ``pid`` (``ev``: the event, ``rx``:
                               intake wall ms)
``expect`` :class:`ExpectRecord` survivor ``pid`` will receive the state of ``from``: hold its
                               events and timers until then
``merge``  :class:`MergeRecord`  profile ``pid`` was absorbed into ``into``: hand its state over
``hand``   :class:`HandOffRecord` the state of absorbed profile ``from``, for survivor ``pid``
``wms``    :class:`WatermarkRecord` each source partition of ``marks`` (``[[src, wm], ...]``) has
                               seen event time up to its ``wm``: one record per repartition
                               partition and intake batch, for all the sources the batch read
``wm``     :class:`WatermarkRecord` the same for one source partition ``src`` and its ``wm``
                               (written by earlier versions; still read in a rolling upgrade)
``idle``   :class:`IdleRecord`  source partition ``src`` is read to its end by its owner (see
                               :mod:`streams.engine.clock`)
``erase``  :class:`EraseRecord`  profile ``pid`` is erased: drop its state and timers
``b``      a batch               the records above, in order (``r``: their wire objects), for
                               one partition: what a worker's intake writes (:func:`batched`)
=========  ==================  ==============================================================

A worker's intake writes a batch's repartition records as one ``b`` record per partition
(:func:`batched`): one Kafka record instead of one per event, which spared ~15% of a worker's
CPU (faust's and aiokafka's cost per message, at both ends; issue 13). The decide stage reads
both forms (:func:`unpack`); a record inside a batch is known by its Kafka offset and its
index in the batch, and is applied, skipped on redelivery and dead-lettered on its own.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from streams.constants import RECORDS_HEADER
from streams.frozen import fast_init
from streams.model import Event, JSONDict, dumps, loads
from streams.pipeline.records import InRecord, OutRecord


class EnvelopeError(ValueError):
    """Bytes that are not a repartition record this version can apply (the record is dead-lettered)."""


@dataclass(frozen=True, slots=True, init=False)
class EventRecord:
    """A resolved event for ``profile_id``."""

    profile_id: str
    #: the event as on the wire (:meth:`Event.to_dict <streams.model.Event.to_dict>`)
    event: JSONDict
    #: intake's wall clock when the event was resolved, ms (0 if unknown): trigger latency
    received_ms: int = 0
    kind: Literal["ev"] = "ev"

    def __init__(
        self,
        profile_id: str,
        event: JSONDict,
        received_ms: int = 0,
        kind: Literal["ev"] = "ev",
    ) -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "received_ms", received_ms)
        object.__setattr__(self, "kind", kind)

    def to_wire(self) -> JSONDict:
        return {"k": "ev", "pid": self.profile_id, "ev": self.event, "rx": self.received_ms}


@dataclass(frozen=True, slots=True, init=False)
class ExpectRecord:
    """Survivor ``profile_id`` will receive the state of ``absorbed``: hold events and timers until then."""

    profile_id: str
    absorbed: str
    ts: int = 0
    kind: Literal["expect"] = "expect"

    def __init__(
        self,
        profile_id: str,
        absorbed: str,
        ts: int = 0,
        kind: Literal["expect"] = "expect",
    ) -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "absorbed", absorbed)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "kind", kind)

    def to_wire(self) -> JSONDict:
        return {"k": "expect", "pid": self.profile_id, "from": self.absorbed, "ts": self.ts}


@dataclass(frozen=True, slots=True, init=False)
class MergeRecord:
    """``profile_id`` was absorbed into ``merged_into`` at event time ``ts``: hand its state over."""

    profile_id: str
    merged_into: str
    ts: int
    kind: Literal["merge"] = "merge"

    def __init__(self, profile_id: str, merged_into: str, ts: int, kind: Literal["merge"] = "merge") -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "merged_into", merged_into)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "kind", kind)

    def to_wire(self) -> JSONDict:
        return {"k": "merge", "pid": self.profile_id, "into": self.merged_into, "ts": self.ts}


@dataclass(frozen=True, slots=True, init=False)
class HandOffRecord:
    """The state of ``absorbed`` (stored form, without its offset), for survivor ``profile_id``."""

    profile_id: str
    absorbed: str
    state: JSONDict
    ts: int = 0
    kind: Literal["hand"] = "hand"

    def __init__(
        self,
        profile_id: str,
        absorbed: str,
        state: JSONDict,
        ts: int = 0,
        kind: Literal["hand"] = "hand",
    ) -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "absorbed", absorbed)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "kind", kind)

    def to_wire(self) -> JSONDict:
        return {
            "k": "hand",
            "pid": self.profile_id,
            "from": self.absorbed,
            "state": self.state,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True, init=False)
class EraseRecord:
    """``profile_id`` is erased: drop its state and timers."""

    profile_id: str
    kind: Literal["erase"] = "erase"

    def __init__(self, profile_id: str, kind: Literal["erase"] = "erase") -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "kind", kind)

    def to_wire(self) -> JSONDict:
        return {"k": "erase", "pid": self.profile_id}


@dataclass(frozen=True, slots=True, init=False)
class WatermarkRecord:
    """Each source partition of ``marks`` (``(source, watermark ms)`` pairs) has seen event
    time up to its watermark."""

    marks: tuple[tuple[int, int], ...]
    kind: Literal["wms"] = "wms"

    def __init__(self, marks: tuple[tuple[int, int], ...], kind: Literal["wms"] = "wms") -> None:
        object.__setattr__(self, "marks", marks)
        object.__setattr__(self, "kind", kind)


@dataclass(frozen=True, slots=True, init=False)
class IdleRecord:
    """Source partition ``source`` is read to its end by its owner."""

    source: int
    kind: Literal["idle"] = "idle"

    def __init__(self, source: int, kind: Literal["idle"] = "idle") -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "kind", kind)


#: The records that belong to one profile (and follow it to its survivor after a merge).
ProfileRecord = EventRecord | ExpectRecord | MergeRecord | HandOffRecord | EraseRecord
#: Every record of the repartition topic.
Envelope = ProfileRecord | WatermarkRecord | IdleRecord


#: a record of :func:`unpack`: its wire object inside a batch (``None`` for a record of its
#: own), and its typed record, or why it cannot be applied
Unpacked = tuple[Any, "Envelope | EnvelopeError"]


def unpack(raw: bytes) -> list[Unpacked]:
    """The records of a repartition record's value, in order: one, or those of a batch (``b``).
    Called once per Kafka record by the decide stage. A record that cannot be read comes with
    the :class:`EnvelopeError` that says why, in its place; the others are unaffected."""
    try:
        d = loads(raw)
    except Exception as exc:
        return [(None, EnvelopeError(f"not JSON ({type(exc).__name__})"))]
    if not isinstance(d, dict) or d.get("k") != "b":
        try:
            return [(None, from_wire(d))]
        except EnvelopeError as exc:
            return [(None, exc)]
    records = d.get("r")
    if not isinstance(records, list) or not records:
        return [(None, EnvelopeError("'b' record: 'r' must be a non-empty list of records"))]
    out: list[Unpacked] = []
    for w in records:
        try:
            out.append((w, from_wire(w)))
        except EnvelopeError as exc:
            out.append((w, exc))
    return out


#: one record as the decide stage applies it: the Kafka record it came in, its index there (0
#: unless that is a batch), its wire object inside a batch (else ``None``) and its typed record,
#: or why it cannot be read
Item = tuple[InRecord, int, Any, "Envelope | EnvelopeError"]


def unpack_all(batch: Sequence[InRecord]) -> list[Item]:
    """The records of a batch of Kafka records (:func:`unpack`), in order."""
    return [(rec, i, wire, env) for rec in batch for i, (wire, env) in enumerate(unpack(rec.value or b""))]


def batched(records: list[OutRecord], topic: str, max_request_size: int) -> list[OutRecord]:
    """``records`` with those for ``topic`` (placed on a partition, without headers) gathered
    into one ``b`` record per partition, in their order, each at most a quarter of the
    producer's ``max_request_size`` (so a batch record is never cut); a record alone stays as it
    is. The other records come first, as they were."""
    limit = max_request_size // 4
    out: list[OutRecord] = []
    groups: dict[int, list[OutRecord]] = {}
    for r in records:
        if r.topic != topic or r.partition is None or r.headers:
            out.append(r)
        else:
            groups.setdefault(r.partition, []).append(r)
    for group in groups.values():
        chunk: list[OutRecord] = []
        size = 0
        for r in group:
            if chunk and size + len(r.value) + 1 > limit:
                out.append(_batch(chunk))
                chunk, size = [], 0
            chunk.append(r)
            size += len(r.value) + 1
        out.append(_batch(chunk))
    return out


def _batch(chunk: list[OutRecord]) -> OutRecord:
    if len(chunk) == 1:
        return chunk[0]
    first = chunk[0]
    value = b'{"k":"b","r":[' + b",".join(r.value for r in chunk) + b"]}"
    # how many records it holds: the decide stage's batch counts records (fastpath.records_weight)
    return OutRecord(first.topic, None, value, first.partition, [(RECORDS_HEADER, str(len(chunk)).encode())])


def from_wire(d: Any) -> Envelope:
    """The typed record of a decoded wire object (as :func:`unpack`; also for records held in a
    profile's ``buffer``, which keeps the wire form). Raises :class:`EnvelopeError`."""
    if not isinstance(d, dict) or not isinstance(d.get("k"), str):
        raise EnvelopeError("not a repartition envelope (no kind 'k')")
    kind = d["k"]
    try:
        if kind == "wms":
            return WatermarkRecord(_marks(d))
        if kind == "wm":  # one source: written by earlier versions
            return WatermarkRecord(((_int(d, "src"), _int(d, "wm")),))
        if kind == "idle":
            return IdleRecord(_int(d, "src"))
        pid = _str(d, "pid")
        if kind == "ev":
            ev = d.get("ev")
            if not isinstance(ev, dict):
                raise EnvelopeError("'ev' record without an event object")
            return EventRecord(pid, ev, _int(d, "rx", 0))
        if kind == "expect":
            return ExpectRecord(pid, _str(d, "from"), _int(d, "ts", 0))
        if kind == "merge":
            return MergeRecord(pid, _str(d, "into"), _int(d, "ts"))
        if kind == "hand":
            state = d.get("state")
            if not isinstance(state, dict):
                raise EnvelopeError("'hand' record without a state object")
            return HandOffRecord(pid, _str(d, "from"), state, _int(d, "ts", 0))
        if kind == "erase":
            return EraseRecord(pid)
    except EnvelopeError as exc:
        raise EnvelopeError(f"{kind!r} record: {exc}") from None
    raise EnvelopeError(f"unknown repartition record kind {kind!r}")


def _marks(d: JSONDict) -> tuple[tuple[int, int], ...]:
    marks = d.get("marks")
    if not isinstance(marks, list) or not marks:
        raise EnvelopeError("'marks' must be a non-empty list of [source, watermark] pairs")
    out: list[tuple[int, int]] = []
    for m in marks:
        if not isinstance(m, list) or len(m) != 2:
            raise EnvelopeError("'marks' must be a non-empty list of [source, watermark] pairs")
        src, wm = _number(m[0], "src"), _number(m[1], "wm")
        if src < 0:
            raise EnvelopeError("'src' must be a partition number, 0 or more")
        out.append((src, wm))
    return tuple(out)


def _str(d: JSONDict, key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise EnvelopeError(f"{key!r} must be a non-empty string")
    return v


def _int(d: JSONDict, key: str, default: int | None = None) -> int:
    return _number(d.get(key, default), key)


def _number(v: Any, what: str) -> int:
    """``v`` as an int, if it is a JSON number (not a bool); ``what`` names it in the error."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EnvelopeError(f"{what!r} must be a number")
    return int(v)


def readdressed(rec: ProfileRecord, profile_id: str) -> bytes:
    """``rec`` for another profile (its survivor), as wire bytes: forwarding after a merge."""
    return dumps(dataclasses.replace(rec, profile_id=profile_id).to_wire())


@functools.lru_cache(maxsize=16384)  # a profile's events come in runs; ~2.4 MB when full
def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka): where ``key`` lives."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def kafka_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's ``DefaultPartitioner`` (the Java client's: murmur2 of the key, a random
    available partition for no key) on :func:`murmur2`: the worker's producer places every keyed
    record it is not told the partition of (decisions, activations) with it (faust's
    ``producer_partitioner`` setting)."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[(murmur2(key) & 0x7FFFFFFF) % len(all_partitions)]


_MURMUR_M = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), the same numbers as
    ``aiokafka.partitioner.murmur2`` at a third of its cost (its words unpacked at once, its
    32-bit masks only where a product can overflow): once per repartition record (issue 13)."""
    length = len(data)
    m = _MURMUR_M
    h = 0x9747B28C ^ length
    n4 = length & ~3
    if n4:
        for (k,) in struct.iter_unpack("<I", data[:n4]):
            k = (k * m) & 0xFFFFFFFF
            k ^= k >> 24
            h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    extra = length - n4
    if extra:
        if extra >= 3:
            h ^= data[n4 + 2] << 16
        if extra >= 2:
            h ^= data[n4 + 1] << 8
        h = ((h ^ data[n4]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def to_profile(topic: str, pid: str, value: bytes, partitions: int) -> OutRecord:
    """A repartition record for profile ``pid``: keyed by it, on the partition that owns it."""
    return OutRecord(topic, pid.encode(), value, partition_for(pid, partitions))


def event_record(pid: str, event: Event, rx: int) -> bytes:
    return dumps({"k": "ev", "pid": pid, "ev": event.to_dict(), "rx": rx})


def event_record_raw(pid: str, event_json: bytes, rx: int) -> bytes:
    """:func:`event_record` from the event already serialized (``dumps(event.to_dict())``):
    the same bytes, without serializing the event twice."""
    return b'{"ev":' + event_json + b',"k":"ev","pid":' + dumps(pid) + b',"rx":' + str(rx).encode() + b"}"


def expect_record(survivor: str, absorbed: str, ts: int) -> bytes:
    return dumps({"k": "expect", "pid": survivor, "from": absorbed, "ts": ts})


def merge_record(absorbed: str, survivor: str, ts: int) -> bytes:
    return dumps({"k": "merge", "pid": absorbed, "into": survivor, "ts": ts})


def handoff_record(survivor: str, absorbed: str, state: JSONDict, ts: int) -> bytes:
    return dumps({"k": "hand", "pid": survivor, "from": absorbed, "state": state, "ts": ts})


def watermark_record(marks: dict[int, int]) -> bytes:
    """The ``wms`` record of these source partitions' watermarks (source -> event ms)."""
    return dumps({"k": "wms", "marks": [[src, wm] for src, wm in sorted(marks.items())]})


def idle_record(source: int) -> bytes:
    return dumps({"k": "idle", "src": source})


def erase_record(pid: str) -> bytes:
    return dumps({"k": "erase", "pid": pid})


# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(EventRecord)

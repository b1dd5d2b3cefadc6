"""Records of the internal repartition topic ``<app_id>-profiled`` (keyed by profile id).

=========  ============================================================================
``k``      meaning
=========  ============================================================================
``ev``     a resolved event for profile ``pid`` (``ev``: the event, ``rx``: intake wall ms)
``expect`` survivor ``pid`` will receive the state of ``from``: hold its events and timers until then
``merge``  profile ``pid`` was absorbed into ``into``: hand its state over
``hand``   the state of absorbed profile ``from``, for survivor ``pid``
``wm``     watermark marker: source partition ``src`` has seen event time up to ``wm``
``idle``   source partition ``src`` is read to its end by its owner (see :mod:`streams.engine.clock`)
``erase``  profile ``pid`` is erased: drop its state and timers
=========  ============================================================================
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

from streams.model import Event, JSONDict, dumps
from streams.pipeline.records import OutRecord


def partition_for(key: str, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client and aiokafka): where ``key`` lives."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


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


def watermark_record(source: int, wm: int) -> bytes:
    return dumps({"k": "wm", "src": source, "wm": wm})


def idle_record(source: int) -> bytes:
    return dumps({"k": "idle", "src": source})


def erase_record(pid: str) -> bytes:
    return dumps({"k": "erase", "pid": pid})

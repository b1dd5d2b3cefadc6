"""Counting for the chaos suite: what went into the raw topic, and where each input ended.

Every raw input, by its (partition, offset), ends in exactly one of:

* the dead-letter topic (its ``cx-source-offset`` header), with a code;
* nowhere, because it is a duplicate by ``messageId`` that the test produced on purpose;
* an ``ev`` record on ``<app_id>-profiled`` (``ev.source`` = [topic, partition, offset]).

Anything else is lost. On top of that, the worker's consumer group must have committed
offsets covering everything produced (compared with what the test produced, not with the
broker's end offsets: the local broker under-reports those).

Everything here reads with confluent-kafka, independent of the worker's aiokafka/faust stack.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from helpers import person_keys, profiled_records

from streams.demo import DEMO_FILE
from streams.replay import lines
from streams.settings import Settings
from streams.simulate import LocalPipeline, SimResult

#: the label of an input that must reach the profiled topic
VALID = "valid"
#: the label of a duplicate by messageId produced on purpose (dropped by dedupe, counted)
DUP = "dup"


@dataclass(frozen=True, slots=True)
class Sent:
    """One record the test produced to the raw topic, and what should become of it."""

    partition: int
    offset: int
    #: VALID, DUP, or the dead-letter code it must get
    label: str
    value: bytes


@dataclass
class Ledger:
    """Where every input ended."""

    inputs: int = 0
    #: valid inputs found as an ``ev`` record on the repartition topic
    accounted: int = 0
    dups: int = 0
    #: dead letters of raw inputs, by code
    dead: Counter[str] = field(default_factory=Counter)
    #: raw inputs found nowhere
    lost: list[Sent] = field(default_factory=list)
    #: inputs that ended somewhere else than their label says: (sent, where)
    misplaced: list[tuple[Sent, str]] = field(default_factory=list)
    #: dead letters that name no input of ours (e.g. timers: stage ``timer``)
    other_dead: list[Any] = field(default_factory=list)
    #: committed offset per raw partition, and what the test produced there (max offset + 1)
    committed: dict[int, int] = field(default_factory=dict)
    produced_to: dict[int, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.inputs == self.accounted + self.dups + sum(self.dead.values()) and not self.lost

    @property
    def uncommitted(self) -> dict[int, tuple[int, int]]:
        return {
            p: (self.committed.get(p, -1), end)
            for p, end in self.produced_to.items()
            if self.committed.get(p, -1) < end
        }

    def summary(self) -> str:
        codes = ", ".join(f"{c}={n}" for c, n in sorted(self.dead.items()))
        return (
            f"inputs={self.inputs} accounted={self.accounted} dups={self.dups} "
            f"dead={sum(self.dead.values())} ({codes}) lost={len(self.lost)} "
            f"misplaced={len(self.misplaced)} committed={self.committed} produced_to={self.produced_to}"
        )


# ---------------------------------------------------------------------- producing
def produce_tracked(
    settings: Settings,
    records: Sequence[tuple[bytes | None, bytes, str]],
    *,
    topic: str | None = None,
    rate: float = 0.0,
    between: Callable[[int], None] | None = None,
) -> list[Sent]:
    """Produce ``(key, value, label)`` records in order and return where each landed.

    ``rate`` paces them (records/s, 0: as fast as possible); ``between(n)`` is called after
    the n-th record (to start a fault mid-stream)."""
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "acks": "all",
            "enable.idempotence": True,  # a retry cannot reorder one person's events
            "message.max.bytes": settings.kafka_max_request_size,
            "linger.ms": 5,
        }
    )
    out: list[Sent | None] = [None] * len(records)
    errors: list[Any] = []

    def on_delivery(i: int, label: str, value: bytes) -> Callable[[Any, Any], None]:
        def done(err: Any, msg: Any) -> None:
            if err:
                errors.append(err)
            else:
                out[i] = Sent(msg.partition(), msg.offset(), label, value)

        return done

    start = time.monotonic()
    for i, (key, value, label) in enumerate(records):
        p.produce(topic or settings.topic_raw, value, key, on_delivery=on_delivery(i, label, value))
        p.poll(0)
        if between is not None:
            between(i + 1)
        if rate > 0:
            ahead = (i + 1) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    assert p.flush(60) == 0, "not every record was delivered"
    assert not errors, errors
    assert all(s is not None for s in out)
    return [s for s in out if s is not None]


def produce_to_partition(settings: Settings, topic: str, partition: int, key: bytes, value: bytes) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    p.produce(topic, value, key, partition=partition)
    assert p.flush(30) == 0


# ---------------------------------------------------------------------- reading
def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Any]], bool],
    timeout: float,
    idle: float = 0.0,
    alive: Callable[[], None] | None = None,
) -> list[Any]:
    """Read ``topic`` from its beginning until ``until(records)`` holds (then ``idle`` more seconds
    of nothing new) or ``timeout``. ``alive()`` is called now and then (to fail fast if the worker died)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"chaos-reader-{os.getpid()}-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    checked = 0.0
    satisfied_at: float | None = None
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(500, 0.2)
            good = [m for m in msgs if not m.error()]
            if good:
                out += good
                last_new = time.monotonic()
            now = time.monotonic()
            if now - checked >= 0.5 or not good:
                checked = now
                if alive is not None:
                    alive()
                if satisfied_at is None and until(out):
                    satisfied_at = now
            if satisfied_at is not None and now - last_new >= idle:
                break
    finally:
        c.close()
    return out


def headers(msg: Any) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}


def committed_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The offsets the worker's consumer group (the app id) has committed on ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.app_id,
            "enable.auto.commit": False,
        }
    )
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def wait_committed(settings: Settings, sent: Sequence[Sent], timeout: float = 30.0) -> dict[int, int]:
    """Poll the group's committed offsets until they cover every record produced (or timeout)."""
    want = produced_ends(sent)
    deadline = time.monotonic() + timeout
    got: dict[int, int] = {}
    while time.monotonic() < deadline:
        got = committed_offsets(settings, settings.topic_raw)
        if all(got.get(p, -1) >= end for p, end in want.items()):
            break
        time.sleep(0.5)
    return got


def produced_ends(sent: Iterable[Sent]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for s in sent:
        ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    return ends


# ---------------------------------------------------------------------- accounting
def raw_dead_letters(settings: Settings, msgs: Iterable[Any]) -> dict[tuple[int, int], Any]:
    out = {}
    for m in msgs:
        h = headers(m)
        if h.get("cx-source-topic") == settings.topic_raw:
            out[(int(h["cx-source-partition"]), int(h["cx-source-offset"]))] = m
    return out


def profiled_sources(settings: Settings, msgs: Iterable[Any]) -> set[tuple[int, int]]:
    """(partition, offset) of every raw input that reached the repartition topic as an ``ev``."""
    out = set()
    for m in msgs:
        for d in profiled_records(m):  # one record, or a batch's
            if d.get("k") == "ev":
                src = d["ev"].get("source")
                if src and src[0] == settings.topic_raw:
                    out.add((src[1], src[2]))
    return out


def account(
    settings: Settings,
    sent: Sequence[Sent],
    *,
    timeout: float = 90.0,
    alive: Callable[[], None] | None = None,
) -> tuple[Ledger, list[Any]]:
    """Find every input; returns the ledger and the dead-letter records read."""
    want_dead = {(s.partition, s.offset) for s in sent if s.label not in (VALID, DUP)}
    want_ev = {(s.partition, s.offset) for s in sent if s.label == VALID}
    dls = read_topic(
        settings,
        settings.topic_deadletter,
        until=lambda ms: want_dead <= raw_dead_letters(settings, ms).keys(),
        timeout=timeout,
        idle=1.0,
        alive=alive,
    )
    evs = read_topic(
        settings,
        settings.topic_profiled,
        until=lambda ms: want_ev <= profiled_sources(settings, ms),
        timeout=timeout,
        alive=alive,
    )
    dead = raw_dead_letters(settings, dls)
    seen = profiled_sources(settings, evs)
    led = Ledger(inputs=len(sent))
    for s in sent:
        at = (s.partition, s.offset)
        if at in dead:
            code = headers(dead[at])["cx-error-code"]
            led.dead[code] += 1
            if code != s.label:
                led.misplaced.append((s, f"dead letter {code}"))
        elif s.label == DUP:
            led.dups += 1
            if at in seen:
                led.misplaced.append((s, "duplicate reached the profiled topic"))
        elif at in seen:
            led.accounted += 1
            if s.label != VALID:
                led.misplaced.append((s, "profiled"))
        else:
            led.lost.append(s)
    ours = {(s.partition, s.offset) for s in sent}
    led.other_dead = [m for m in dls if (headers(m).get("cx-source-topic") != settings.topic_raw)] + [
        m for k, m in dead.items() if k not in ours
    ]
    led.produced_to = produced_ends(sent)
    led.committed = wait_committed(settings, sent)
    return led, dls


# ---------------------------------------------------------------------- triggers
def trigger_set(values: Iterable[bytes]) -> set[tuple[str, bytes]]:
    """(CloudEvent id, data minus profileId) of each activation: what must equal the clean run."""
    out = set()
    for v in values:
        ce = orjson.loads(v)
        data = dict(ce["data"])
        data.pop("profileId", None)
        out.add((ce["id"], orjson.dumps(data, option=orjson.OPT_SORT_KEYS)))
    return out


def repeated_ids(values: Iterable[bytes]) -> dict[str, int]:
    n = Counter(orjson.loads(v)["id"] for v in values)
    return {i: c for i, c in n.items() if c > 1}


def by_outcome(values: Iterable[bytes]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for v in values:
        d = orjson.loads(v)
        out.setdefault(d["outcome"], []).append(d)
    return out


async def clean_run(settings: Settings, values: Sequence[bytes], batch: int = 500) -> SimResult:
    """``cxstream simulate`` on these events: the same stages in one process, memory stores, event clock."""
    s = settings.model_copy(update={"partitions": 1, "clock": "event"})
    pipe = LocalPipeline(s)
    for i in range(0, len(values), batch):
        await pipe.feed(values[i : i + batch])
    return await pipe.finish()


# ---------------------------------------------------------------------- inputs
def demo_slice(events: int, *, every: int = 1, path: Path = DEMO_FILE) -> list[tuple[bytes, bytes]]:
    """Whole journeys of demo people (every ``every``-th person in order of first appearance) until
    about ``events`` events, in file (time) order, as (person key, line)."""
    all_lines = list(lines(path))
    keys = person_keys(all_lines)
    order: list[bytes] = []
    size: Counter[bytes] = Counter()
    for line in all_lines:
        k = keys[line]
        if k not in size:
            order.append(k)
        size[k] += 1
    chosen: set[bytes] = set()
    total = 0
    for k in order[::every]:
        if total >= events:
            break
        chosen.add(k)
        total += size[k]
    return [(keys[line], line) for line in all_lines if keys[line] in chosen]


# ---------------------------------------------------------------------- the worker
def alive_check(proc: Any, log: Path) -> Callable[[], None]:
    def check() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited ({proc.returncode}):\n{log.read_text()[-3000:]}")

    return check


def scrape(port: int, name: str) -> float | None:
    """The sum of metric ``name`` over its series on a worker's /metrics, or None if absent."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", line)
        if m:
            total += float(m.group(1))
            found = True
    return total if found else None


def wait_scrape(port: int, name: str, want: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            got = scrape(port, name)
            if got == want:
                return got
        time.sleep(0.5)
    return got

"""Scale out for real: several workers, kills, restarts and rebalances give `cxstream simulate`'s activations.

Each scenario runs real workers (subprocesses) of one consumer group on the local stack, on the
event clock with the contract's default idle timeout (30 s), replays the bundled demo journeys
paced (300 events/s, 150 for the rolling restart), and disturbs the group in the middle of it:

* two workers, one SIGKILLed, a replacement started a few seconds later;
* three workers restarted one by one with SIGTERM (a rolling restart);
* two workers, one SIGKILLed and not replaced.

Input: each person's events under one key (as in test_simulate_equivalence.py), so a person's
events stay in file order on one partition, as in simulate.

Then every activation is compared with :func:`streams.simulate.simulate_file` on the same input:
the multiset of (id, type, time, source, data without ``profileId``), after removing repeats
(a redelivery may send the same activation again, same id and payload; they are counted).
Zero missing, zero extra, no id with another payload.

The group is watched through the workers' own logs (aiokafka's assignment lines), never
through fixed sleeps: a scenario waits until every live worker holds an assignment of the same
generation and together they hold every partition.

The repartition topic is read at the end too: a profile merged into itself (a survivor that a
redelivered ``merge`` record turned into a tombstone naming itself) fails the scenario, with
what it cost (its missing activations).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import kill9, person_keys

from streams.demo import DEMO_FILE
from streams.dev import start_worker, stop_worker
from streams.replay import lines
from streams.settings import Settings
from streams.simulate import simulate_file

#: events per second of the paced replay
RATE = 300.0
#: partitions of every topic
PARTITIONS = 8
#: after the last expected activation arrived: how long to keep reading for extras
LINGER = 10.0
#: after the replay: how long the last activations may take (30 s idle timeout, 5 s idle
#: freshness, a 30 s timer lease left by a killed worker, rebalances)
SETTLE = 150.0


# ---------------------------------------------------------------------------------- the input
class PacedReplay(threading.Thread):
    """Produce the demo file, in order, at ``rate`` events/s with confluent-kafka (Kafka's murmur2
    partitioner, as `cxstream replay`); ``sent`` counts the records handed to the producer."""

    def __init__(self, settings: Settings, path: Path, keys: dict[bytes, bytes], rate: float) -> None:
        super().__init__(daemon=True, name="paced-replay")
        self.settings = settings
        self.records = [(keys.get(line), line) for line in lines(path)]
        self.rate = rate
        self.sent = 0
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            p = Producer(
                {
                    "bootstrap.servers": self.settings.kafka_bootstrap,
                    "acks": "all",
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",
                    # one request in flight: a retry cannot reorder a person's events
                    "max.in.flight.requests.per.connection": 1,
                }
            )
            failed: list[Any] = []
            self.started_at = time.monotonic()
            for n, (key, value) in enumerate(self.records, 1):
                p.produce(
                    self.settings.topic_raw,
                    value,
                    key,
                    on_delivery=lambda err, _m: failed.append(err) if err else None,
                )
                self.sent = n
                p.poll(0)
                ahead = n / self.rate - (time.monotonic() - self.started_at)
                if ahead > 0:
                    time.sleep(ahead)
            assert p.flush(60) == 0, "not every event was delivered"
            assert not failed, failed[:3]
            self.finished_at = time.monotonic()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def wait_sent(self, n: int, timeout: float = 120.0) -> None:
        wait_until(lambda: self.sent >= n or self.error is not None, timeout, f"{n} events sent")
        assert self.error is None, self.error


class TopicReader(threading.Thread):
    """Reads topics from the beginning with confluent-kafka (assign, no group) until stopped."""

    def __init__(self, settings: Settings, topics: list[str]) -> None:
        super().__init__(daemon=True, name="reader")
        self.settings = settings
        self.topics = topics
        self.got: dict[str, list[bytes]] = {t: [] for t in topics}
        self.last_at = time.monotonic()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        try:
            c = Consumer(
                {
                    "bootstrap.servers": self.settings.kafka_bootstrap,
                    "group.id": f"scale-out-reader-{time.monotonic_ns()}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                }
            )
            tps = []
            for t in self.topics:
                parts = c.list_topics(t, timeout=10).topics[t].partitions
                tps += [TopicPartition(t, p, OFFSET_BEGINNING) for p in parts]
            c.assign(tps)
            try:
                while not self.stopping.is_set():
                    msg: Any = c.poll(0.2)  # untyped use: a record read here has a topic and value
                    if msg is None or msg.error():
                        continue
                    self.got[msg.topic()].append(msg.value())
                    self.last_at = time.monotonic()
            finally:
                c.close()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join(15)


# ---------------------------------------------------------------------------------- the group
_TP = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")
_SYNCED = re.compile(r"Successfully synced group \S+ with generation (-?\d+)")


def assignment(log: Path) -> tuple[int, frozenset[tuple[str, int]]] | None:
    """The worker's current (generation, assignment) from its log, or None while it is (re)joining.

    Only aiokafka's own lines count: "Setting newly assigned partitions" after "Successfully
    synced ... generation N" is an assignment; "Revoking previously assigned partitions" (also
    logged with ``set()`` while a fresh member joins) and "(Re-)joining group" start a rebalance.
    """
    if not log.exists():
        return None
    gen: int | None = None
    current: tuple[int, frozenset[tuple[str, int]]] | None = None
    for raw in log.read_bytes().splitlines():
        try:
            msg = str(orjson.loads(raw).get("event", ""))
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if msg.startswith("Revoking previously assigned partitions") or msg.startswith("(Re-)joining group"):
            current = None
        elif m := _SYNCED.search(msg):
            gen = int(m.group(1))
        elif msg.startswith("Setting newly assigned partitions") and gen is not None:
            current = (gen, frozenset((t, int(p)) for t, p in _TP.findall(msg)))
    return current


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Fleet:
    """The workers of one consumer group, each with its own log file."""

    settings: Settings
    dir: Path
    workers: list[Worker] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # what happened, with times, for the report
    t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:6.1f}s {what}")

    def start(self, name: str) -> Worker:
        log = self.dir / f"{name}.log"
        w = Worker(name, start_worker(self.settings, log), log, time.monotonic())
        self.workers.append(w)
        self.note(f"started {name} (pid {w.proc.pid})")
        return w

    def kill9(self, w: Worker) -> None:
        kill9(w.proc)
        self.note(f"SIGKILLed {w.name}")

    def sigterm(self, w: Worker, timeout: float = 45.0) -> int:
        """SIGTERM, wait for the exit (SIGKILL past ``timeout``); the exit code."""
        start = time.monotonic()
        stop_worker(w.proc, timeout=timeout)
        rc = w.proc.returncode
        self.note(f"SIGTERMed {w.name}: exit {rc} after {time.monotonic() - start:.1f}s")
        return rc

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive()]

    def settled(self) -> bool:
        """Every live worker holds an assignment of one generation; together, every partition once."""
        live = self.live()
        if not live:
            return False
        held = [assignment(w.log) for w in live]
        if any(h is None or not h[1] for h in held):
            return False
        gens = {h[0] for h in held if h is not None}
        parts = [tp for h in held if h is not None for tp in h[1]]
        topics = (self.settings.topic_raw, self.settings.topic_profiled)
        want = {(t, p) for t in topics for p in range(self.settings.partitions)}
        return len(gens) == 1 and len(parts) == len(want) and set(parts) == want

    def wait_settled(self, timeout: float = 90.0) -> float:
        start = time.monotonic()
        wait_until(self.settled, timeout, "the group to settle", self.tails)
        took = time.monotonic() - start
        gens = {assignment(w.log) for w in self.live()}
        gen = next(iter(gens))[0] if gens and None not in gens else "?"  # type: ignore[index]
        self.note(f"group settled: {', '.join(w.name for w in self.live())} at generation {gen}")
        return took

    def tails(self) -> str:
        return "\n".join(
            f"--- {w.name} ({'alive' if w.alive() else f'exit {w.proc.returncode}'}):\n"
            + w.log.read_text(errors="replace")[-1500:]
            for w in self.workers
        )

    def crashed(self) -> list[str]:
        """Workers that died by themselves (not by our signals), with their log tails."""
        return [
            f"{w.name}: exit {w.proc.returncode}\n{w.log.read_text(errors='replace')[-3000:]}"
            for w in self.workers
            if w.proc.poll() is not None and w.proc.returncode not in (0, -9, -15)
        ]

    def stop_all(self) -> None:
        for w in self.workers:
            stop_worker(w.proc, timeout=10)


def wait_until(cond: Callable[[], bool], timeout: float, what: str, diag: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{diag()}")


# ---------------------------------------------------------------------------------- comparison
def essence(value: bytes) -> tuple[str, bytes]:
    """(id, the payload that must match): type, time, source, data without profileId.
    ``subject`` and ``partitionkey`` are the profile id too, so they are left out."""
    ce = orjson.loads(value)
    data = {k: v for k, v in ce.get("data", {}).items() if k != "profileId"}
    body = {"type": ce.get("type"), "time": ce.get("time"), "source": ce.get("source"), "data": data}
    return str(ce["id"]), orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


@dataclass
class Comparison:
    expected: int
    seen: int  # records read, repeats included
    unique: int
    missing: list[str]
    extra: list[str]
    differing: dict[str, list[bytes]]  # id -> the payloads seen (first: simulate's, if any)
    repeats: int  # records beyond the first of their id, with the same payload
    profile_ids_differ: int  # ids whose profileId differs from simulate's (allowed; reported)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing)


def compare(expected_values: list[bytes], seen_values: list[bytes]) -> Comparison:
    want: dict[str, bytes] = {}
    for v in expected_values:
        i, body = essence(v)
        assert i not in want, f"simulate produced activation {i} twice"
        want[i] = body
    seen: dict[str, list[bytes]] = {}
    for v in seen_values:
        i, body = essence(v)
        seen.setdefault(i, []).append(body)
    differing: dict[str, list[bytes]] = {}
    repeats = 0
    for i, bodies in seen.items():
        distinct = list(dict.fromkeys(bodies))
        if len(distinct) > 1 or (i in want and distinct[0] != want[i]):
            differing[i] = [want[i], *distinct] if i in want else distinct
        else:
            repeats += len(bodies) - 1
    pid_want = {orjson.loads(v)["id"]: orjson.loads(v)["data"].get("profileId") for v in expected_values}
    pid_seen = {orjson.loads(v)["id"]: orjson.loads(v)["data"].get("profileId") for v in seen_values}
    return Comparison(
        expected=len(want),
        seen=len(seen_values),
        unique=len(seen),
        missing=sorted(set(want) - set(seen)),
        extra=sorted(set(seen) - set(want)),
        differing=differing,
        repeats=repeats,
        profile_ids_differ=sum(1 for i, p in pid_seen.items() if i in pid_want and pid_want[i] != p),
    )


def describe(c: Comparison, expected_values: list[bytes], seen_values: list[bytes]) -> str:
    """The mismatch, with ids and payloads, for the assertion message."""
    by_id_want = {orjson.loads(v)["id"]: v for v in expected_values}
    by_id_seen: dict[str, bytes] = {}
    for v in seen_values:
        by_id_seen.setdefault(orjson.loads(v)["id"], v)
    out = [
        f"expected {c.expected}, read {c.seen} ({c.unique} ids), missing {len(c.missing)}, "
        f"extra {len(c.extra)}, differing {len(c.differing)}, repeats {c.repeats}"
    ]
    out += [f"missing {i}: {by_id_want[i].decode()}" for i in c.missing[:20]]
    out += [f"extra {i}: {by_id_seen[i].decode()}" for i in c.extra[:20]]
    for i, bodies in list(c.differing.items())[:20]:
        out.append(f"differing {i}:")
        out += [f"    {b.decode()}" for b in bodies]
    return "\n".join(out)


@dataclass
class Repartition:
    """What went through ``<app_id>-profiled`` (read up to its high-water marks)."""

    events: int  # ``ev`` records
    distinct: int  # distinct messageIds among them
    resolved: int  # distinct (messageId, intake time): each time intake resolved an event
    merges: int  # distinct (absorbed, survivor) pairs
    merges_again: int  # of those, delivered more than once
    self_merges: list[tuple[int, int, str]]  # (partition, offset, pid) of ``merge`` records with pid == into
    self_hands: int  # ``hand`` records from a profile to itself

    @property
    def redelivered(self) -> int:
        """Events intake resolved again (a raw record read again after a kill or a rebalance)."""
        return self.resolved - self.distinct

    @property
    def forwarded(self) -> int:
        """``ev`` records the decide stage sent on (to a survivor, or in a loop to itself)."""
        return self.events - self.resolved


def read_repartition(settings: Settings) -> Repartition:
    """Read the repartition topic up to its current high-water marks (workers may still write)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    topic = settings.topic_profiled
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"scale-out-dump-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    ev: Counter[tuple[str, int]] = Counter()
    merges: Counter[tuple[str, str]] = Counter()
    self_merges: list[tuple[int, int, str]] = []
    self_hands = 0
    try:
        parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
        high = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        left = {p for p in parts if high[p] > 0}
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in left])
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            msg: Any = c.poll(0.2)
            if msg is None or msg.error() or msg.offset() >= high[msg.partition()]:
                continue
            if msg.offset() == high[msg.partition()] - 1:
                left.discard(msg.partition())
            d = orjson.loads(msg.value())
            if d["k"] == "ev":
                ev[(d["ev"]["messageId"], d.get("rx", 0))] += 1
            elif d["k"] == "merge":
                if d["pid"] == d["into"]:
                    self_merges.append((msg.partition(), msg.offset(), d["pid"]))
                else:
                    merges[(d["pid"], d["into"])] += 1
            elif d["k"] == "hand" and d["pid"] == d["from"]:
                self_hands += 1
    finally:
        c.close()
    return Repartition(
        sum(ev.values()),
        len({mid for mid, _ in ev}),
        len(ev),
        len(merges),
        sum(1 for n in merges.values() if n > 1),
        self_merges,
        self_hands,
    )


# ---------------------------------------------------------------------------------- a scenario
@dataclass
class Run:
    settings: Settings
    fleet: Fleet
    replay: PacedReplay
    reader: TopicReader
    expected: list[bytes]
    expected_deadletters: int


@pytest.fixture
def scale_out(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Run]]:
    """Settings (event clock, default idle timeout, 8 partitions), the topics, simulate's answer,
    a reader of the outputs, and a fleet of workers (info logs: the group is watched through them).
    Everything is stopped at the end."""
    monkeypatch.setenv("CXSTREAM_LOG_LEVEL", "info")  # aiokafka's assignment lines
    made: list[Run] = []

    def make(rate: float = RATE) -> Run:
        s = make_settings(clock="event", partitions=PARTITIONS)
        sim = asyncio.run(simulate_file(s, DEMO_FILE))
        assert sim.events == 5440 and len(sim.activations) > 100
        topics(s)
        reader = TopicReader(s, [s.topic_activations, s.topic_deadletter])
        reader.start()
        run = Run(
            s,
            Fleet(s, tmp_path),
            PacedReplay(s, DEMO_FILE, person_keys(DEMO_FILE), rate),
            reader,
            sim.activations,
            sim.deadletters,
        )
        made.append(run)
        return run

    yield make
    for run in made:
        run.fleet.stop_all()
        run.reader.stop()


def finish(run: Run, label: str) -> Comparison:
    """Wait for the replay, then for every expected activation (or the time limit), then read
    ``LINGER`` more seconds for extras; compare with simulate and print the numbers."""
    replay, reader, fleet = run.replay, run.reader, run.fleet
    replay.join(120)
    assert not replay.is_alive() and replay.error is None, replay.error
    fleet.note(f"replay done: {replay.sent} events in {replay.finished_at - replay.started_at:.1f}s")
    want = {orjson.loads(v)["id"] for v in run.expected}

    def complete() -> bool:
        assert reader.error is None, reader.error
        return want <= {orjson.loads(v)["id"] for v in list(reader.got[run.settings.topic_activations])}

    try:
        wait_until(complete, SETTLE, "every expected activation")
        fleet.note("every expected activation read")
    except AssertionError:
        fleet.note(f"not every expected activation within {SETTLE:.0f}s of the end of the replay")
    time.sleep(LINGER)
    reader.stop()
    seen = list(reader.got[run.settings.topic_activations])
    c = compare(run.expected, seen)
    took = time.monotonic() - fleet.t0
    print(
        f"\n[{label}] events {replay.sent}, activations expected {c.expected}, read {c.seen} "
        f"({c.unique} ids), missing {len(c.missing)}, extra {len(c.extra)}, differing {len(c.differing)}, "
        f"repeats {c.repeats}, profileId differs {c.profile_ids_differ}, "
        f"dead letters {len(reader.got[run.settings.topic_deadletter])}, duration {took:.0f}s"
    )
    rp = read_repartition(run.settings)
    looped = {pid for _, _, pid in rp.self_merges}
    of_looped = [i for i in c.missing if orjson.loads(by_id(run.expected)[i])["data"]["profileId"] in looped]
    print(
        f"  repartition: {rp.events} event records ({rp.redelivered} resolved again after a redelivery, "
        f"{rp.forwarded} forwarded), {rp.merges} merges "
        f"({rp.merges_again} delivered again), self-merges {rp.self_merges}, self hand-offs {rp.self_hands}; "
        f"missing activations of self-merged profiles: {len(of_looped)}"
    )
    print("\n".join(f"  {e}" for e in fleet.events))
    assert not fleet.crashed(), "\n".join(fleet.crashed())
    diag = (
        f"\nrepartition topic: self-merges (partition, offset, profile) {rp.self_merges}, "
        f"{rp.self_hands} hand-offs of a profile to itself; {len(of_looped)} of the missing "
        f"activations belong to those profiles\n" + "\n".join(fleet.events)
    )
    assert c.ok, describe(c, run.expected, seen) + diag
    assert len(reader.got[run.settings.topic_deadletter]) == run.expected_deadletters
    # A redelivered merge must not make a survivor merge into itself: it would become a tombstone
    # naming itself and forward every later record to itself, forever (events never applied).
    assert not rp.self_merges, f"a profile merged into itself{diag}"
    return c


def by_id(values: list[bytes]) -> dict[str, bytes]:
    return {str(orjson.loads(v)["id"]): v for v in values}


# ---------------------------------------------------------------------------------- scenarios
@pytest.mark.stack
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_two_workers_one_killed_mid_replay_and_replaced_give_simulates_activations(
    scale_out: Callable[..., Run],
) -> None:
    run = scale_out()
    fleet, replay = run.fleet, run.replay
    a, b = fleet.start("w1"), fleet.start("w2")
    fleet.wait_settled()
    replay.start()
    replay.wait_sent(1200)  # about 22% in, 4 s into the replay
    fleet.kill9(a)
    time.sleep(3)
    fleet.start("w3")
    fleet.wait_settled()
    fleet.note(f"{replay.sent} events sent")
    assert b.alive()
    finish(run, "kill and replace")


@pytest.mark.stack
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_three_workers_restarted_one_by_one_mid_replay_give_simulates_activations(
    scale_out: Callable[..., Run],
) -> None:
    # Each step takes 6-10 s on the local broker (a join is held for half the session timeout):
    # at half the rate (36 s of replay) all three steps happen while events still come in.
    run = scale_out(rate=RATE / 2)
    fleet, replay = run.fleet, run.replay
    first = [fleet.start(f"w{n}") for n in (1, 2, 3)]
    fleet.wait_settled()
    replay.start()
    replay.wait_sent(300)
    codes = []
    for n, old in enumerate(first, 4):
        fleet.note(f"{replay.sent} events sent")
        codes.append(fleet.sigterm(old))
        fleet.start(f"w{n}")
        fleet.wait_settled()
    fleet.note(f"rolling restart done at {replay.sent} events sent")
    finish(run, "rolling restart")
    assert codes == [0, 0, 0], f"SIGTERM exit codes {codes} (contract: exit 0)"


@pytest.mark.stack
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_two_workers_one_killed_mid_replay_not_replaced_give_simulates_activations(
    scale_out: Callable[..., Run],
) -> None:
    run = scale_out()
    fleet, replay = run.fleet, run.replay
    a, b = fleet.start("w1"), fleet.start("w2")
    fleet.wait_settled()
    replay.start()
    replay.wait_sent(1200)
    fleet.kill9(a)
    fleet.wait_settled()
    fleet.note(f"{replay.sent} events sent")
    assert b.alive()
    finish(run, "kill, no replacement")


def test_assignment_is_read_from_aiokafka_lines(tmp_path: Path) -> None:
    """The log reading the scenarios rely on (no stack needed)."""
    log = tmp_path / "w.log"

    def line(event: str) -> bytes:
        return orjson.dumps({"event": event, "level": "info"}) + b"\n"

    tp = "TopicPartition(topic='raw', partition={})"
    log.write_bytes(
        line("Revoking previously assigned partitions set() for group g")
        + line("Successfully synced group g with generation 3")
        + line(f"Setting newly assigned partitions {{{tp.format(0)}, {tp.format(5)}}} for group g")
        + b"Traceback (most recent call last):\n"
    )
    assert assignment(log) == (3, frozenset({("raw", 0), ("raw", 5)}))
    log.write_bytes(
        log.read_bytes() + line(f"Revoking previously assigned partitions frozenset({{{tp.format(0)}}})")
    )
    assert assignment(log) is None
    one = b'{"id":"x","subject":"p1","data":{"profileId":"p1","a":1},"type":"t"}'
    other = b'{"id":"x","subject":"p2","data":{"profileId":"p2","a":1},"type":"t"}'
    assert essence(one) == essence(other)
    c = compare([one], [other, other, b'{"id":"y","data":{}}'])
    assert (c.missing, c.extra, c.differing, c.repeats, c.profile_ids_differ) == ([], ["y"], {}, 1, 1)


@pytest.mark.chaos
def test_a_source_back_from_another_worker_is_reported_idle_again(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source partition that went to another worker and came back, with nothing new since,
    is reported idle by its owner again, so it stops holding the event clock. Round 1 puts a
    cart on every source (w1 processes them all); round 2, with w2 in the group, moves only
    w2's sources on to +10 min; w2 leaves; round 3 moves only w1's own sources on to +60 min.
    The carts (due +30 min) fire only once w2's former sources, idle at +10 min, count as idle."""
    from helpers import consume, keys_covering, produce, records_in

    from streams.constants import MINUTE_MS
    from streams.intake import ms_to_iso
    from streams.testing import at

    monkeypatch.setenv("CXSTREAM_LOG_LEVEL", "info")  # aiokafka's assignment lines
    s = make_settings(clock="event", watermark_idle_timeout=2.0, rules=("cart_abandoned",))
    topics(s)
    t0 = at("2026-03-02T10:00:00Z")
    n = s.partitions

    def event(user: str, ts: int, name: str, i: int) -> tuple[bytes, bytes]:
        props = {"product_id": "p1", "price": 10.0, "quantity": 1} if name == "Product Added" else {}
        e = {"type": "track", "event": name, "userId": user, "messageId": f"{user}-{i}", "properties": props}
        traits = {"email": f"{user}@example.com"}
        e |= {"timestamp": ms_to_iso(ts), "context": {"channel": "web", "traits": traits}}
        return user.encode(), orjson.dumps(e)

    def raw_of(w: Worker) -> set[int]:
        held = assignment(w.log)
        assert held is not None
        return {p for t, p in held[1] if t == s.topic_raw}

    fleet = Fleet(s, tmp_path)
    try:
        w1 = fleet.start("w1")
        fleet.wait_settled()
        carts = keys_covering(n, "cart")
        produce(s, s.topic_raw, [event(u, t0, "Product Added", 0) for u in carts])
        consume(s, s.topic_profiled, want=len(carts), timeout=60, size=records_in)  # w1 has them all
        w2 = fleet.start("w2")
        fleet.wait_settled()
        moved = raw_of(w2)
        assert moved and len(moved) < n, fleet.events
        produce(
            s, s.topic_raw, [event(u, t0 + 10 * MINUTE_MS, "Page", 1) for u in keys_covering(n, "two", moved)]
        )
        consume(
            s, s.topic_profiled, want=len(carts) + len(moved), timeout=60, size=records_in
        )  # round 2 through intake
        time.sleep(1)  # its offsets committed (every second)
        fleet.sigterm(w2)
        fleet.wait_settled()
        assert raw_of(w1) == set(range(n)), fleet.events
        kept = set(range(n)) - moved
        produce(
            s, s.topic_raw, [event(u, t0 + 60 * MINUTE_MS, "Page", 2) for u in keys_covering(n, "one", kept)]
        )
        decisions = consume(s, s.topic_decisions, want=len(carts), timeout=60)
        assert not fleet.crashed(), fleet.crashed()
    finally:
        fleet.stop_all()
    assert len(decisions) == len(carts), f"{len(decisions)} of {len(carts)} carts decided\n{fleet.events}"

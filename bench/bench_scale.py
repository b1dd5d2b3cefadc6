"""Scale-out and latency on the local stack: 1 worker vs 2 workers, and event-to-trigger latency.

    .venv/bin/python bench/bench_scale.py [--events N] [--rate R] [--seconds S]

1. Throughput, 1 worker then 2 workers in one consumer group, 8 partitions: each run gets a
   fresh app id, fresh topics and a fresh Redis prefix, and the same pre-filled backlog of
   realistic mixed events (bench_pipeline.journeys). Timed from the first committed offset
   (not from process start: the local broker holds a new group's first join for half the
   session timeout) until the group's committed offsets of the repartition topic have passed
   its last record of work on every partition, i.e. through the decide stage. (Not "until they
   stop moving", as bench_pipeline.bench_worker waits: on the event clock a caught-up worker
   adds idle markers to that topic every second, so its offsets never stop; see WorkWatcher.)
2. Latency at a fixed offered load: one worker on the wall clock, rule loan_eligibility_repeat
   only, a paced producer sending ``Loan Eligibility Checked`` (timestamp = now), 3 checks per
   fresh user so every third check fires a trigger at once; a reader on the activations topic.
   Latency = when the activation was read - when its third check was handed to the producer.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from bench_pipeline import journeys
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams.dev import start_worker, stop_worker
from streams.intake import ms_to_iso
from streams.kafka import create_topics
from streams.replay import replay_file
from streams.settings import Settings, load_settings
from streams.sinks.records import trigger_id
from streams.stack import LocalStack

PARTITIONS = 8
#: seconds without a new record of work on the repartition topic before a run may end
STABLE = 2.0
RULE = "loan_eligibility_repeat"

_n = itertools.count()


def fresh(base: Settings, **overrides: Any) -> Settings:
    """``base`` with a fresh app id (consumer group), topic names and Redis prefix."""
    tag = f"bs{next(_n)}{uuid.uuid4().hex[:6]}"
    return base.model_copy(
        update={
            "app_id": f"cx-{tag}",
            "redis_prefix": f"cx-{tag}",
            "topic_raw": f"{tag}.events.raw",
            "topic_deadletter": f"{tag}.events.deadletter",
            "topic_activations": f"{tag}.activations",
            "topic_decisions": f"{tag}.decisions",
            "topic_identity_changes": f"{tag}.identity.changes",
            **overrides,
        }
    )


def check_alive(procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    for proc, log in zip(procs, logs, strict=True):
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"worker exited early with code {proc.returncode}; its log:\n{tail}")


class Committed:
    """Offsets the app's group committed, per partition (confluent-kafka, never joins the group)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.c = Consumer(
            {"bootstrap.servers": s.kafka_bootstrap, "group.id": s.app_id, "enable.auto.commit": False}
        )

    def __call__(self, topic: str) -> list[int]:
        tps = self.c.committed([TopicPartition(topic, p) for p in range(self.s.partitions)], timeout=10)
        return [max(tp.offset, 0) for tp in sorted(tps, key=lambda tp: tp.partition)]

    def close(self) -> None:
        self.c.close()


class WorkWatcher(threading.Thread):
    """Reads the repartition topic from the beginning: per partition, the offset of the last record
    that is work for the decide stage, i.e. anything but an idle marker.

    On the event clock a caught-up worker sends idle markers to every repartition partition each
    second (streams/engine/clock.py), so the committed offsets of that topic never stop moving:
    the run is over once they have passed the last record of work on every partition."""

    def __init__(self, s: Settings) -> None:
        super().__init__(daemon=True, name="repartition-watcher")
        self.s = s
        self.last_work = [-1] * s.partitions
        self.changed = time.monotonic()
        self.stop = threading.Event()

    def run(self) -> None:
        c = Consumer(
            {
                "bootstrap.servers": self.s.kafka_bootstrap,
                "group.id": f"bench-watch-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        topic = self.s.topic_profiled
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(self.s.partitions)])
        try:
            while not self.stop.is_set():
                for msg in c.consume(1000, 0.1):
                    if msg.error() or orjson.loads(msg.value()).get("k") == "idle":
                        continue
                    p, off = msg.partition(), msg.offset()
                    if off > self.last_work[p]:
                        self.last_work[p] = off
                        self.changed = time.monotonic()
        finally:
            c.close()


_TP = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")
_SYNCED = re.compile(r"Successfully synced group \S+ with generation (-?\d+)")


def assignments(log: Path, topic: str) -> list[tuple[int, int]]:
    """(generation, partitions of ``topic``) for every assignment aiokafka logged in a worker's log."""
    out: list[tuple[int, int]] = []
    gen = -1
    for raw in log.read_bytes().splitlines():
        try:
            msg = str(orjson.loads(raw).get("event", ""))
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if m := _SYNCED.search(msg):
            gen = int(m.group(1))
        elif msg.startswith("Setting newly assigned partitions"):
            out.append((gen, sum(1 for t, _ in _TP.findall(msg) if t == topic)))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``; 0.0 where that is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class GroupRun:
    workers: int
    events: int
    intake_rate: float
    decide_rate: float
    repartitioned: int
    assignment: str
    #: CPU time of the workers, per event, from the first committed offset to the end of the run
    cpu_us: float = 0.0


def run_group(
    base: Settings,
    events: list[bytes],
    workers: int,
    workdir: Path,
    on_start: Callable[[list[subprocess.Popen[bytes]]], None] | None = None,
    **overrides: Any,
) -> GroupRun:
    """``workers`` workers of one fresh group, started at once, on a pre-filled backlog.

    ``on_start`` is called with the worker processes once they run (e.g. to attach a profiler);
    ``overrides`` change the settings of this run."""
    s = fresh(base, **overrides)
    asyncio.run(create_topics(s))
    path = workdir / f"events-{s.app_id}.jsonl"
    path.write_bytes(b"\n".join(events) + b"\n")
    n = asyncio.run(replay_file(s, path))  # the backlog is there before any worker starts
    logs = [workdir / f"{s.app_id}-w{i}.log" for i in range(workers)]
    procs = [start_worker(s, log) for log in logs]
    if on_start is not None:
        on_start(procs)
    committed = Committed(s)
    watcher = WorkWatcher(s)
    watcher.start()
    samples: list[tuple[float, list[int]]] = []  # (when, committed offsets of the repartition topic)
    cpu0 = cpu1 = 0.0
    try:
        first: float | None = None
        base_done = 0
        while (done := sum(committed(s.topic_raw))) < n:
            check_alive(procs, logs)
            if first is None and done:
                first, base_done = time.perf_counter(), done
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            time.sleep(0.1)
        if first is None:  # everything committed at the first look: too few events to time
            first = time.perf_counter()
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        raw_secs = time.perf_counter() - first
        # the decide stage drains behind intake: until its commits pass the last record of work
        # on every partition, and the watcher has seen no new work for a while (it is caught up)
        while True:
            check_alive(procs, logs)
            samples.append((time.perf_counter(), committed(s.topic_profiled)))
            if all(c > w for c, w in zip(samples[-1][1], watcher.last_work, strict=True)):
                cpu1 = cpu1 or sum(cpu_seconds(p.pid) for p in procs)  # when the work was done
                if time.monotonic() - watcher.changed >= STABLE:
                    break
            else:
                cpu1 = 0.0
            time.sleep(0.1)
    finally:
        watcher.stop.set()
        watcher.join(10)
        committed.close()
        for proc in procs:
            stop_worker(proc)
    last_work = watcher.last_work
    # the first sample at which each partition's commit had passed its last record of work
    ends = [next(t for t, offs in samples if offs[p] > w) for p, w in enumerate(last_work)]
    all_secs = max(max(ends), first + raw_secs) - first
    measured = n - base_done
    held = [assignments(log, s.topic_raw) for log in logs]
    gens = {g for h in held for g, _ in h}
    split = "+".join(str(h[-1][1]) if h else "?" for h in held)
    note = f"{split} raw partitions" + (f", {len(gens)} generations (a rebalance)" if len(gens) > 1 else "")
    return GroupRun(
        workers,
        n,
        measured / max(raw_secs, 1e-9),
        measured / max(all_secs, 1e-9),
        sum(w + 1 for w in last_work),
        note,
        (cpu1 - cpu0) / max(measured, 1) * 1e6,
    )


def bench_scale(base: Settings, events: list[bytes], workdir: Path) -> None:
    runs = [run_group(base, events, k, workdir) for k in (1, 2)]
    for r in runs:
        print(
            f"scale-out, {r.workers} worker(s), {PARTITIONS} partitions, {r.events} events backlog: "
            f"intake {r.intake_rate:,.0f} events/s; through decide {r.decide_rate:,.0f} events/s "
            f"({r.repartitioned} repartition records drained; assignment {r.assignment}; "
            f"worker CPU {r.cpu_us:,.0f} µs/event)",
            flush=True,
        )
    one, two = runs
    print(
        f"scale-out ratio, 2 workers / 1 worker, through decide: {two.decide_rate / one.decide_rate:.2f}x "
        f"(intake {two.intake_rate / one.intake_rate:.2f}x); on {os.cpu_count()} cores the two workers "
        "share the same cores as the broker and Redis, so expect little gain here: the ratio shows the "
        "group splits the work, not what separate machines would give",
        flush=True,
    )


# ------------------------------------------------------------------------------ latency
def loan_check(user: str, i: int, ts: int) -> tuple[str, bytes]:
    """Check ``i`` of ``user`` at ``ts`` (ms). A user's checks need distinct times: on a tie the
    rule keys the trigger on the first of the tied checks, not on the one that completed the window."""
    mid = f"{user}-c{i}"
    ev = {
        "type": "track",
        "event": "Loan Eligibility Checked",
        "messageId": mid,
        "userId": user,
        "timestamp": ms_to_iso(ts),
        "properties": {"product": "auto_loan"},
        "context": {
            "channel": "web",
            "location": {"country": "US"},
            "traits": {"email": f"{user}@example.com"},
        },
    }
    return mid, orjson.dumps(ev)


class Reader(threading.Thread):
    """Reads the activations topic from the beginning; ``seen`` maps trigger id -> first read time."""

    def __init__(self, s: Settings) -> None:
        super().__init__(daemon=True, name="activations-reader")
        self.s = s
        self.seen: dict[str, float] = {}
        self.reads = 0
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        c = Consumer(
            {
                "bootstrap.servers": self.s.kafka_bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",  # not "latest" after an out-of-range answer
                "fetch.wait.max.ms": 10,  # the reader's own wait stays out of the latency
            }
        )
        topic = self.s.topic_activations
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        self.parts = sorted(parts)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.ready.set()
        try:
            while not self.stop.is_set():
                msg = c.poll(0.05)
                if msg is None or msg.error():
                    continue
                now = time.monotonic()
                self.reads += 1
                self.seen.setdefault(str(orjson.loads(msg.value()).get("id")), now)
        finally:
            c.close()


def wait_for(cond: Any, timeout: float, procs: list[subprocess.Popen[bytes]], logs: list[Path]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        check_alive(procs, logs)
        time.sleep(0.02)
    return bool(cond())


def now_ms() -> int:
    return int(time.time() * 1000)


def pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_latency(base: Settings, rate: float, seconds: float, workdir: Path) -> tuple[float, float] | None:
    """Prints the run; returns (p50, p99) of the event-to-trigger latency in seconds, if any arrived."""
    s = fresh(base, clock="wall", rules=(RULE,))
    asyncio.run(create_topics(s))
    log = workdir / f"{s.app_id}-latency.log"
    proc = start_worker(s, log)
    reader = Reader(s)
    reader.start()
    producer = Producer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "acks": "all",
            "linger.ms": 1,
            "partitioner": "murmur2_random",
        }
    )
    failed: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err:
            failed.append(err)

    try:
        reader.ready.wait(30)
        # warm-up: the group join and the first trigger do not count
        t0 = time.monotonic()
        for i in range(3):
            mid, value = loan_check("warmup", i, now_ms() + i)
            producer.produce(s.topic_raw, value, b"warmup", on_delivery=on_delivery)
        producer.flush(30)
        warm_id = trigger_id(RULE, 1, mid)
        if not wait_for(lambda: warm_id in reader.seen, 120, [proc], [log]):
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"latency: no warm-up trigger within 120 s; the worker's log:\n{tail}")
        print(
            f"latency: worker warmed up (join + first trigger) in {time.monotonic() - t0:.1f} s", flush=True
        )

        total = int(rate * seconds) // 3 * 3
        sent_at: dict[str, float] = {}
        start = time.monotonic()
        n = ts = 0
        while n < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while n < due:
                user = f"lat{n // 3}"
                ts = now_ms() if n % 3 == 0 else max(now_ms(), ts + 1)  # now, strictly increasing
                mid, value = loan_check(user, n % 3, ts)
                at = time.monotonic()
                producer.produce(s.topic_raw, value, user.encode(), on_delivery=on_delivery)
                if n % 3 == 2:
                    sent_at[trigger_id(RULE, 1, mid)] = at
                n += 1
            producer.poll(0)
            ahead = n / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        achieved = (n - 1) / max(at - start, 1e-9)  # first send to last send
        producer.flush(30)
        wait_for(lambda: all(t in reader.seen for t in sent_at), 60, [proc], [log])
    finally:
        reader.stop.set()
        reader.join(10)
        stop_worker(proc)
    lat = sorted(reader.seen[t] - at for t, at in sent_at.items() if t in reader.seen)
    got = len(lat)
    others = len(reader.seen) - got - 1  # activations with an id we did not expect (the warm-up aside)
    repeats = reader.reads - len(reader.seen)
    print(
        f"latency at {rate:,.0f} events/s offered for {seconds:g} s (1 worker, wall clock, rule {RULE}, "
        f"{PARTITIONS} partitions): sent {n} checks at {achieved:,.0f} events/s achieved"
        + (f", {len(failed)} delivery errors" if failed else ""),
        flush=True,
    )
    if lat:
        print(
            f"  event-to-trigger latency: p50 {pct(lat, 0.50) * 1000:,.0f} ms, "
            f"p99 {pct(lat, 0.99) * 1000:,.0f} ms, max {lat[-1] * 1000:,.0f} ms; "
            f"triggers received {got} of {len(sent_at)} expected"
            + (f", {others} unexpected ids" if others else "")
            + (f", {repeats} repeats" if repeats else ""),
            flush=True,
        )
        return pct(lat, 0.50), pct(lat, 0.99)
    tail = log.read_text(errors="replace")[-3000:]
    print(f"  no trigger received of {len(sent_at)} expected; the worker's log:\n{tail}", flush=True)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000, help="backlog of each scale-out run")
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s offered in the latency run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--within", type=float, default=0.05, help="seconds a batch may wait to fill")
    ap.add_argument("--skip-scale", action="store_true", help="only the latency run")
    ap.add_argument("--skip-latency", action="store_true", help="only the scale-out runs")
    args = ap.parse_args()
    # aiokafka's assignment lines (info) tell how the group split the partitions
    os.environ.setdefault("CXSTREAM_LOG_LEVEL", "info")
    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="bench-scale-") as d:
        base = load_settings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            partitions=PARTITIONS,
            # the local broker holds a new group's first join for half the session timeout
            kafka_session_timeout=6.0,
            kafka_rebalance_timeout=10.0,
            batch_size=args.batch,
            batch_within=args.within,
            clock="event",
            watermark_idle_timeout=2.0,
            metrics_port=0,
        )
        if not args.skip_scale:
            bench_scale(base, journeys(args.events), Path(d))
        if not args.skip_latency:
            bench_latency(base, args.rate, args.seconds, Path(d))


if __name__ == "__main__":
    main()

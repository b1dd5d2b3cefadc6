"""One worker against the raw client, in one run: the throughput goal as a ratio.

    .venv/bin/python bench/bench_ratio.py [--events N] [--rounds N] [--rate R] [--seconds S] [--py-spy FILE]

On the local stack (Tansu + Redis, ``streams.stack.LocalStack``), each on a fresh topic of
``--events`` realistic mixed events (``bench_pipeline.journeys``), pre-filled before timing:

1. **raw ceiling**: a plain aiokafka passthrough in this process: ``getmany`` -> orjson
   loads/dumps -> ``send`` to a sink topic, every batch's sends acked and its offsets
   committed before the next ``getmany``, until every record is through. Timed from the first
   record read; CPU time of this process per event.
2. **one cxstream worker** (a child process, the settings' defaults but the local stack's and
   the event clock, see ``--clock``):
   end to end, through intake *and* decide, timed from its first committed offset until the
   decide stage's committed offsets have passed the last record of work on every repartition
   partition (``bench_scale.run_group``). CPU time of the worker process per event.
3. the raw ceiling again (the load of a shared machine drifts), then the **ratio** of the
   worker's events/s to the mean of the two raw runs (and the same for CPU per event, which a
   busy machine disturbs less), and the event-to-trigger latency p50/p99 of one worker at a
   steady offered load (``bench_scale.bench_latency``).

``--rounds N`` repeats steps 2 and 3 (raw, worker, raw, worker, raw, ...: each worker run is
held to the raw runs just before and after it) and prints the median and range of the N
ratios. One run's ratio moves with the machine: here the raw client moved between 24,000 and
59,000 events/s within minutes, and one worker's ratio between 0.093 and 0.140 on the same
code. ``make bench`` runs 3 rounds.

Prints numbers; asserts nothing. ``--py-spy FILE`` records a py-spy profile of the worker of
step 2 (``pip install py-spy``; speedscope format) for finding where its CPU goes; add
``--native`` to see inside the compiled modules (their C functions, ``CPyDef_...``). ``--trace
FILE`` traces that worker's batches, Redis calls and produces and its main thread's CPU time
(``bench/worker_trace``, nothing in the worker's code) and prints where the thread waited
(``bench/trace_summary.py``): the CPU profile's complement, for wall time. ``--redis`` prints
Redis's own CPU per event during the first round's worker run and the time in Redis of each Lua
script the worker runs (``SLOWLOG`` at 0 µs for that run): where the worker's waits on Redis
come from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from bench_pipeline import journeys
from bench_scale import PARTITIONS, bench_latency, fresh, run_group
from trace_summary import summarize

from streams.kafka import client_options, create_topics
from streams.replay import replay_file
from streams.settings import Settings, load_settings
from streams.stack import LocalStack


async def passthrough(s: Settings, n: int) -> tuple[float, float]:
    """Move ``n`` records from ``s.topic_raw`` to ``s.topic_decisions`` with the raw client:
    returns (events/s, CPU µs per event)."""
    opts = client_options(s)
    consumer = AIOKafkaConsumer(
        **opts,
        group_id=f"{s.app_id}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(**opts, acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    consumer.assign([TopicPartition(s.topic_raw, p) for p in range(s.partitions)])
    moved = 0
    first = cpu0 = 0.0
    try:
        while moved < n:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                continue
            if not first:
                first, cpu0 = time.perf_counter(), time.process_time()
            futs = []
            offsets = {}
            for tp, msgs in batches.items():
                for m in msgs:
                    value = orjson.dumps(orjson.loads(m.value))
                    futs.append(await producer.send(s.topic_decisions, value, key=m.key))
                offsets[tp] = msgs[-1].offset + 1
                moved += len(msgs)
            await asyncio.gather(*futs)
            await consumer.commit(offsets)
        secs = time.perf_counter() - first
        cpu = time.process_time() - cpu0
    finally:
        await consumer.stop()
        await producer.stop()
    return n / secs, cpu / n * 1e6


def raw_run(base: Settings, events: list[bytes], workdir: Path) -> tuple[float, float]:
    s = fresh(base)
    asyncio.run(create_topics(s))
    path = workdir / f"raw-{s.app_id}.jsonl"
    path.write_bytes(b"\n".join(events) + b"\n")
    n = asyncio.run(replay_file(s, path))
    return asyncio.run(passthrough(s, n))


@contextlib.contextmanager
def traced(path: str | None) -> Iterator[None]:
    """Workers started meanwhile write a trace to ``path`` (``bench/worker_trace``)."""
    if not path:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "CX_BENCH_TRACE")}
    hook = str(Path(__file__).resolve().parent / "worker_trace")
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (hook, saved["PYTHONPATH"]) if x)
    os.environ["CX_BENCH_TRACE"] = str(Path(path).resolve())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _script_names() -> dict[str, str]:
    """SHA1 -> name of the Lua scripts the worker runs (``EVALSHA`` names them by digest)."""
    from streams.engine import state, timers
    from streams.identity import redis_store
    from streams.intake import dedupe
    from streams.redis_io import lua

    scripts = {
        "identity.resolve": lua("streams.identity", "resolve.lua"),
        "identity.forget": redis_store._FORGET,
        "dedupe": dedupe._CHECK,
        "state.save": state._SAVE,
        "timers.apply": timers._APPLY,
        "timers.claim": timers._CLAIM,
        "timers.done": timers._DONE,
    }
    return {hashlib.sha1(src.encode()).hexdigest(): name for name, src in scripts.items()}


@contextlib.contextmanager
def redis_profiled(url: str, events: int, on: bool) -> Iterator[None]:
    """Prints Redis's CPU per event over the block (``INFO cpu``), and each script's share
    (``SLOWLOG`` at 0 µs: every command, top-level or called from a script, with its time in
    Redis; the logging itself costs Redis a little, so the round it measures runs a bit slower).
    """
    if not on:
        yield
        return
    import redis

    r = redis.Redis.from_url(url)
    saved = r.config_get("slowlog-*")
    r.config_set("slowlog-log-slower-than", 0)
    r.config_set("slowlog-max-len", 4_000_000)
    r.slowlog_reset()
    r.config_resetstat()

    def cpu() -> float:
        info = r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    c0 = cpu()
    try:
        yield
    finally:
        used = cpu() - c0
        names = _script_names()
        scripts: dict[str, float] = {}
        for e in r.slowlog_get(4_000_000):
            cmd = e["command"].split()
            if cmd and cmd[0].upper() == b"EVALSHA" and len(cmd) > 1:
                name = names.get(cmd[1].decode(), "other script")
                scripts[name] = scripts.get(name, 0.0) + e["duration"]
        mget = float(r.info("commandstats").get("cmdstat_mget", {}).get("usec", 0))
        r.config_set("slowlog-log-slower-than", saved["slowlog-log-slower-than"])
        r.config_set("slowlog-max-len", saved["slowlog-max-len"])
        r.slowlog_reset()
        r.close()
        split = ", ".join(f"{k} {v / events:.1f}" for k, v in sorted(scripts.items(), key=lambda kv: -kv[1]))
        print(
            f"Redis during that run: {used / events * 1e6:.0f} µs of CPU per event; in Redis, µs per "
            f"event: {split}; state loads (MGET) {mget / events:.1f}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="backlog of each throughput run")
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="worker runs, each between two raw runs; more than one: the median and range of the ratio",
    )
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s offered in the latency run")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the latency run (0: skip it)")
    ap.add_argument(
        "--clock",
        choices=("wall", "event"),
        default="event",
        help="the worker's clock: event (default: the backlog's events are weeks old; on the wall clock "
        "every timer they set is due at once, and the run measures the timer tick instead)",
    )
    ap.add_argument("--py-spy", metavar="FILE", help="record a py-spy profile of the worker's run here")
    ap.add_argument(
        "--native",
        action="store_true",
        help="with --py-spy: native frames too, which show the compiled modules' C functions "
        "(`make native`; without it their time is charged to the Python frame that called them)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a worker setting to change (repeatable)",
    )
    ap.add_argument("--logs", metavar="DIR", help="keep the workers' logs in this directory")
    ap.add_argument(
        "--redis",
        action="store_true",
        help="print Redis's CPU per event during the first round's worker run, and each Lua "
        "script's share (SLOWLOG at 0 µs, which slows that round a little)",
    )
    ap.add_argument(
        "--trace",
        metavar="FILE",
        help="trace the first round's worker here (batches, Redis calls, produces, its main "
        "thread's CPU: bench/worker_trace) and print where its main thread waited",
    )
    args = ap.parse_args()
    os.environ.setdefault("CXSTREAM_LOG_LEVEL", "info")  # bench_scale reads the assignment from the log
    events = journeys(args.events)
    spy: list[subprocess.Popen[bytes]] = []

    def attach(procs: list[subprocess.Popen[bytes]]) -> None:
        if not args.py_spy:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        cmd = [
            exe,
            "record",
            "-f",
            "speedscope",
            "-o",
            args.py_spy,
            "-r",
            "200",
            "--gil",
            *(["--native"] if args.native else []),
            "-p",
            str(procs[0].pid),
        ]
        spy.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    with LocalStack() as stack, tempfile.TemporaryDirectory(prefix="bench-ratio-") as tmp:
        d = args.logs or tmp
        Path(d).mkdir(parents=True, exist_ok=True)
        overrides: dict[str, object] = {"clock": args.clock}
        overrides.update(dict(kv.split("=", 1) for kv in args.set))
        base = load_settings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            partitions=PARTITIONS,
            # the local broker holds a new group's first join for half the session timeout
            kafka_session_timeout=6.0,
            kafka_rebalance_timeout=10.0,
            metrics_port=0,
            **overrides,
        )
        # the raw ceiling before and after each of the worker's runs: on a shared machine the
        # load drifts (the raw client moved 2x within minutes here), so each run is held to its
        # two neighbours, and the rounds' median and range are the result
        raws = [raw_run(base, events, Path(d))]
        print(
            f"raw aiokafka passthrough, {len(events):,} events, {PARTITIONS} partitions: "
            f"{raws[0][0]:,.0f} events/s, {raws[0][1]:,.1f} µs CPU/event",
            flush=True,
        )
        rates: list[float] = []
        cpus: list[float] = []
        for n in range(args.rounds):
            with (
                traced(args.trace if n == 0 else None),
                redis_profiled(stack.redis_url, len(events), args.redis and n == 0),
            ):
                one = run_group(base, events, 1, Path(d), on_start=attach if n == 0 else None)
            for p in spy:
                p.wait(30)
            print(
                f"one cxstream worker end to end (intake + decide, clock={base.clock}), "
                f"{len(events):,} events: "
                f"{one.decide_rate:,.0f} events/s (intake alone {one.intake_rate:,.0f}), "
                f"{one.cpu_us:,.0f} µs CPU/event",
                flush=True,
            )
            raws.append(raw_run(base, events, Path(d)))
            print(
                f"raw aiokafka passthrough again: {raws[-1][0]:,.0f} events/s, "
                f"{raws[-1][1]:,.1f} µs CPU/event",
                flush=True,
            )
            around = raws[-2:]
            raw_rate = sum(r for r, _ in around) / 2
            raw_cpu = sum(c for _, c in around) / 2
            rates.append(one.decide_rate / raw_rate)
            cpus.append(raw_cpu / one.cpu_us)
            print(
                f"ratio worker / raw (mean of the two raw runs around it): {rates[-1]:.3f} in events/s; "
                f"{cpus[-1]:.3f} in CPU per event",
                flush=True,
            )
        if args.trace:
            print("\n".join(summarize(Path(args.trace))), flush=True)
        if args.rounds > 1:
            print(
                f"ratio over {args.rounds} rounds: median {statistics.median(rates):.3f} "
                f"({min(rates):.3f}-{max(rates):.3f}) in events/s; median {statistics.median(cpus):.3f} "
                f"({min(cpus):.3f}-{max(cpus):.3f}) in CPU per event",
                flush=True,
            )
        if args.seconds > 0:
            bench_latency(base, args.rate, args.seconds, Path(d))


if __name__ == "__main__":
    main()

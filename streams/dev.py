"""``cxstream dev`` / ``make demo``: the whole product on this machine, in one command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from streams.kafka import client_options, create_topics
from streams.replay import replay_file
from streams.settings import Settings, load_settings
from streams.stack import LocalStack, _die_with_parent, free_port


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    env.update(settings.to_env())
    env["CXSTREAM_LOG_LEVEL"] = os.environ.get("CXSTREAM_LOG_LEVEL", "warn")
    return env


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """A worker as a child process that dies with us."""
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # a faust worker whose agent crashed may ignore SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


#: live lines printed per rule; the summary counts them all
SHOWN_PER_RULE = 15


def describe(ce: dict[str, object]) -> str:
    """One line per trigger, as a person reads it."""
    data = ce.get("data") or {}
    assert isinstance(data, dict)
    ctx = data.get("context") or {}
    assert isinstance(ctx, dict)
    rule = str(ce.get("type", "")).removeprefix("cx.trigger.")
    chans = ",".join(c["channel"] for c in data.get("channels", []))
    if "items" in ctx:
        detail = f"{len(ctx['items'])} item(s), value {ctx.get('value')} {ctx.get('currency', '')}".rstrip()
    elif "days_inactive" in ctx:
        detail = f"quiet for {ctx['days_inactive']} days"
    elif "check_count" in ctx:
        detail = (
            f"{ctx['check_count']} checks in {ctx['window_days']} days ({', '.join(ctx.get('products', []))})"
        )
    else:
        detail = orjson.dumps(ctx).decode()[:80]
    when = str(ce.get("time", ""))[:16].replace("T", " ")
    return f"  {when}  {rule:<24} {ce.get('subject')!s:<28} -> {chans:<18} {detail}"


async def _watch(settings: Settings, stats: Counter[str], last: list[float]) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic_activations,
        settings.topic_decisions,
        settings.topic_deadletter,
        **client_options(settings),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async for msg in consumer:
            last[0] = time.monotonic()
            if msg.topic == settings.topic_deadletter:
                stats["deadletter"] += 1
                continue
            doc = orjson.loads(msg.value or b"{}")
            if msg.topic == settings.topic_activations:
                stats["activations"] += 1
                rule = str(doc.get("type", "")).removeprefix("cx.trigger.")
                stats["rule:" + rule] += 1
                if stats["activations"] == 1:
                    print(
                        "\nTriggers as they fire (event time, rule, profile, channels, context):", flush=True
                    )
                if stats["rule:" + rule] <= SHOWN_PER_RULE:
                    print(describe(doc), flush=True)
                elif stats["rule:" + rule] == SHOWN_PER_RULE + 1:
                    print(f"  ... more {rule} triggers: counted in the summary", flush=True)
            else:
                stats["decision:" + doc.get("outcome", "?")] += 1
                if doc.get("outcome") == "suppressed":  # each decision counted once per distinct reason
                    for reason in sorted({r["reason"] for r in doc.get("refused", [])}):
                        stats["suppressed:" + reason] += 1
    finally:
        await consumer.stop()


#: seconds between two live summary lines of ``cxstream dev``
LIVE_EVERY = 5.0


async def _live_metrics(settings: Settings) -> None:
    """Every few seconds, while anything moves: one line from the worker's own metrics endpoint."""
    from streams.metrics import SUMMARY, scrape_totals, summary_line

    url = f"http://127.0.0.1:{settings.metrics_port}/metrics"
    prev = dict.fromkeys(SUMMARY, 0.0)
    at = time.monotonic()
    while True:
        await asyncio.sleep(LIVE_EVERY)
        try:
            cur = await asyncio.to_thread(scrape_totals, url)
        except OSError:  # the worker is not serving yet
            continue
        now = time.monotonic()
        if cur != prev:
            print(summary_line(prev, cur, now - at), flush=True)
        prev, at = cur, now


async def _demo(settings: Settings, file: Path, serve: bool, linger: float, worker_log: Path) -> int:
    stats: Counter[str] = Counter()
    last = [time.monotonic()]
    watcher = asyncio.create_task(_watch(settings, stats, last))
    live = asyncio.create_task(_live_metrics(settings))
    print(f"Replaying {file.name} (event clock: timers fire as the replay's time passes) ...", flush=True)
    n = await replay_file(settings, file)
    print(f"Replayed {n} events to {settings.topic_raw}.", flush=True)
    last[0] = time.monotonic()
    try:
        while serve or time.monotonic() - last[0] < linger:  # noqa: ASYNC110 - polling for quiet
            await asyncio.sleep(0.5)
    finally:
        live.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
    print("\nSummary")
    print(f"  events replayed      {n}")
    print(f"  dead-lettered        {stats['deadletter']}")
    print(f"  activations          {stats['activations']}")
    for k, v in sorted(stats.items()):
        if k.startswith("rule:"):
            print(f"    {k[5:]:<26} {v}")
    print(
        f"  decisions suppressed {stats['decision:suppressed']}  (by reason; one decision can have several)"
    )
    for k, v in sorted(stats.items()):
        if k.startswith("suppressed:"):
            print(f"    {k[11:]:<26} {v}")
    print(f"  worker log           {worker_log}")
    return 0 if stats["activations"] else 1


def run_dev(file: Path | None, *, serve: bool = False, linger: float = 8.0) -> int:
    from streams.demo import DEMO_FILE

    file = file or DEMO_FILE
    print("cxstream dev: starting the embedded broker (Tansu) and Redis ...", flush=True)
    with LocalStack(workdir=(Path(".cxstream") / "dev").resolve()) as stack:
        assert stack.workdir is not None
        metrics_port = free_port()
        settings = load_settings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            app_id="cxstream-dev",
            partitions=4,
            clock="event",
            watermark_idle_timeout=2.0,
            metrics_port=metrics_port,
            # the local broker holds a new group's first join for half the session timeout
            kafka_session_timeout=6.0,
            kafka_rebalance_timeout=10.0,
        )
        print(f"  broker  {stack.kafka_bootstrap}\n  redis   {stack.redis_url}", flush=True)
        asyncio.run(create_topics(settings))
        worker_log = stack.workdir / "worker.log"
        proc = start_worker(settings, worker_log)
        print(f"  worker  pid {proc.pid}, metrics at http://127.0.0.1:{metrics_port}/metrics", flush=True)
        try:
            code = asyncio.run(_demo(settings, file, serve, linger, worker_log))
            if proc.poll() is not None:
                tail = worker_log.read_text()[-3000:]
                print(f"worker exited early with code {proc.returncode}; its log:\n{tail}")
                return 1
            return code
        except KeyboardInterrupt:
            print("\nstopping ...")
            return 130
        finally:
            stop_worker(proc)

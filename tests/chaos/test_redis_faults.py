"""Redis refuses writes mid-stream (out of memory, then a client pause): the worker waits it out.

Each case paces ~2,000 demo events into a worker on a Redis of its own, breaks Redis while they
flow, and then counts: zero lost, zero trigger ids twice, the worker alive, and the triggers and
decisions exactly those of ``cxstream simulate`` on the same events.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from chaos.ledger import (
    VALID,
    account,
    alive_check,
    clean_run,
    demo_slice,
    produce_tracked,
    read_topic,
    repeated_ids,
    scrape,
    trigger_set,
)
from helpers import OwnRedis, running_worker

from streams.settings import Settings
from streams.stack import free_port

pytestmark = [pytest.mark.stack, pytest.mark.chaos, pytest.mark.timeout(600)]

EVENTS = 2000
RATE = 100.0  # events/s: the stream lasts ~20 s
FAULT_AT = 400  # the fault starts after this many events (~4 s in)


def run_paced_with_fault(
    s: Settings,
    tmp_path: Path,
    fault: Callable[[], None],
    metrics_port: int,
) -> dict[str, Any]:
    valid = demo_slice(EVENTS, every=1)
    clean = asyncio.run(clean_run(s, [v for _, v in valid]))
    log = tmp_path / "worker.log"
    started = time.monotonic()
    fault_thread = threading.Thread(target=fault, daemon=True)

    def between(n: int) -> None:
        if n == FAULT_AT:
            fault_thread.start()

    with running_worker(s, log) as proc:
        alive = alive_check(proc, log)
        sent = produce_tracked(s, [(k, v, VALID) for k, v in valid], rate=RATE, between=between)
        fault_thread.join(timeout=60)
        ledger, dls = account(s, sent, timeout=180, alive=alive)
        acts = read_topic(
            s,
            s.topic_activations,
            until=lambda ms: len(ms) >= len(clean.activations),
            timeout=90,
            idle=3.0,
            alive=alive,
        )
        decs = read_topic(
            s, s.topic_decisions, until=lambda ms: len(ms) >= len(clean.decisions), timeout=30, idle=1.0
        )
        redis_errors = scrape(metrics_port, "cxstream_redis_errors_total")
        retries = scrape(metrics_port, "cxstream_batch_retries_total")
        alive()
    return {
        "valid": valid,
        "clean": clean,
        "ledger": ledger,
        "dls": dls,
        "acts": [m.value() for m in acts],
        "decs": [m.value() for m in decs],
        "redis_errors": redis_errors,
        "batch_retries": retries,
        "took": time.monotonic() - started,
        "log": log,
    }


def check(out: dict[str, Any], tag: str) -> None:
    ledger, clean = out["ledger"], out["clean"]
    print(
        f"\n[chaos {tag}] {ledger.summary()}\n[chaos {tag}] activations {len(out['acts'])} (clean run "
        f"{len(clean.activations)}), decisions {len(out['decs'])} (clean run {len(clean.decisions)}), "
        f"repeated activation ids {len(repeated_ids(out['acts']))}, redis errors counted "
        f"{out['redis_errors']}, batch retries {out['batch_retries']}, {out['took']:.1f}s"
    )
    assert not ledger.lost, f"{len(ledger.lost)} lost: {ledger.summary()}"
    assert not ledger.misplaced and ledger.balanced and not ledger.dead, ledger.summary()
    assert ledger.accounted == len(out["valid"])
    assert not ledger.uncommitted, ledger.uncommitted
    assert not out["dls"], "an outage is not a reason to dead-letter anything"
    assert not repeated_ids(out["acts"]), repeated_ids(out["acts"])
    assert not repeated_ids(out["decs"]), repeated_ids(out["decs"])
    assert trigger_set(out["acts"]) == trigger_set(clean.activations)
    assert {orjson.loads(v)["id"] for v in out["decs"]} == {orjson.loads(v)["id"] for v in clean.decisions}


def test_redis_out_of_memory_for_15s_mid_stream_loses_nothing(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    own_redis: OwnRedis,
) -> None:
    port = free_port()
    s = make_settings(redis_url=own_redis.url, clock="event", watermark_idle_timeout=2.0, metrics_port=port)
    topics(s)
    r: Any = own_redis.client()
    seen: dict[str, Any] = {}

    def oom() -> None:
        before = r.info("stats")["total_error_replies"]
        r.config_set("maxmemory-policy", "noeviction")
        used = r.info("memory")["used_memory"]
        r.config_set("maxmemory", used + 1024)
        time.sleep(15)
        r.config_set("maxmemory", 0)
        seen["refused"] = r.info("stats")["total_error_replies"] - before
        seen["errorstats"] = r.info("errorstats")

    out = run_paced_with_fault(s, tmp_path, oom, port)
    print(
        f"\n[chaos c-oom] Redis error replies during the 15 s: {seen.get('refused')} {seen.get('errorstats')}"
    )
    assert seen.get("refused", 0) > 0, "Redis never refused a write: the fault did not bite"
    assert (out["redis_errors"] or 0) > 0, "the worker should have counted the refusals"
    check(out, "c-oom")


def test_redis_client_pause_write_for_10s_mid_stream_loses_nothing(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    own_redis: OwnRedis,
) -> None:
    port = free_port()
    s = make_settings(redis_url=own_redis.url, clock="event", watermark_idle_timeout=2.0, metrics_port=port)
    topics(s)
    r: Any = own_redis.client()
    seen: dict[str, float] = {}

    def pause() -> None:
        r.execute_command("CLIENT", "PAUSE", 10000, "WRITE")
        t = time.monotonic()
        probe: Any = own_redis.client()
        probe.connection_pool.connection_kwargs["socket_timeout"] = 30
        probe.set("chaos-probe", 1)  # a write: held until the pause ends
        seen["held"] = time.monotonic() - t

    out = run_paced_with_fault(s, tmp_path, pause, port)
    print(f"\n[chaos c-pause] a write issued at the pause was held {seen.get('held', 0):.1f}s")
    assert seen.get("held", 0) > 8, "the pause did not hold writes"
    check(out, "c-pause")

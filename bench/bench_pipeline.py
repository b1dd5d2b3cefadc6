"""Pipeline throughput: the stages against real Redis, without Kafka or faust.

(Whole workers on the local stack, one and two, and the event-to-trigger latency:
``bench/bench_scale.py``.)

    .venv/bin/python bench/bench_pipeline.py [--events N] [--batch N]

Prints numbers; asserts nothing (performance goals live here, not in timed tests).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence

import orjson

from streams.intake import ms_to_iso
from streams.pipeline.envelope import batched
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings, load_settings
from streams.stack import LocalStack
from streams.worker import quiet_gc


def journeys(n_events: int, seed: int = 1) -> list[bytes]:
    """A realistic mix: page views, carts, orders, loan checks, identifies; ~1 person per 8 events."""
    rnd = random.Random(seed)
    t = 1767600000000
    out: list[bytes] = []
    people = max(1, n_events // 8)
    while len(out) < n_events:
        p = rnd.randrange(people)
        t += rnd.randint(1, 20_000)
        kind = rnd.random()
        base = {
            "messageId": f"b{len(out)}",
            "timestamp": ms_to_iso(t),
            "anonymousId": f"anon{p}",
            "context": {"channel": rnd.choice(["web", "app"]), "location": {"country": "US"}},
        }
        if kind < 0.5:
            ev = {**base, "type": "page", "name": "Product"}
        elif kind < 0.7:
            ev = {
                **base,
                "type": "track",
                "event": "Product Added",
                "properties": {"product_id": "s1", "price": 9},
            }
        elif kind < 0.8:
            ev = {**base, "type": "track", "event": "Order Completed", "properties": {"total": 9}}
        elif kind < 0.9:
            ev = {**base, "type": "track", "event": "Loan Eligibility Checked", "userId": f"u{p}"}
        else:
            ev = {**base, "type": "identify", "userId": f"u{p}", "traits": {"email": f"u{p}@example.com"}}
        out.append(orjson.dumps(ev))
    return out


def consumed(out: Sequence[OutRecord], topic: str, offsets: dict[int, int]) -> list[InRecord]:
    """The records of ``out`` for ``topic`` as the decide stage reads them: each at the next offset
    of its partition (``offsets``, partition -> next offset, is moved on)."""
    batch = []
    for r in out:
        if r.topic == topic:
            p = r.partition or 0
            batch.append(InRecord(r.topic, p, offsets.get(p, 0), r.key, r.value))
            offsets[p] = offsets.get(p, 0) + 1
    return batch


async def bench_stages(settings: Settings, events: list[bytes], batch: int) -> None:
    """The stages as the worker runs them (``streams.app``), without Kafka or faust: intake,
    then decide with the timers its batch made due on the event clock, in one produce and commit
    (``Runtime.decide_batch``), batch by batch. Prints events/s (wall) and CPU µs per event (this
    process, not Redis's); "timers" is the firing of due timers, "decide" the rest."""
    settings = settings.model_copy(update={"clock": "event"})
    rt = Runtime(settings, Stores.redis(settings))
    rt.event_clock.idle_timeout_ms = 2**62
    wall = {"intake": 0.0, "decide": 0.0, "timers": 0.0}
    cpu = dict.fromkeys(wall, 0.0)
    offsets: dict[int, int] = {}
    fired = 0

    async def produce(records: Sequence[OutRecord]) -> None:
        nonlocal fired
        fired += sum(1 for r in records if r.topic == settings.topic_decisions)

    def took(stage: str, w0: float, c0: float) -> None:
        wall[stage] += time.perf_counter() - w0
        cpu[stage] += time.process_time() - c0

    n_src = settings.partitions
    topic, max_request = settings.topic_profiled, settings.kafka_max_request_size
    for i in range(0, len(events), batch):
        recs = [
            InRecord(settings.topic_raw, (i + j) % n_src, (i + j) // n_src, None, v)
            for j, v in enumerate(events[i : i + batch])
        ]
        w0, c0 = time.perf_counter(), time.process_time()
        # as a worker's intake writes them: one batch record per repartition partition
        out = batched(await rt.intake.process(recs, int(time.time() * 1000)), topic, max_request)
        took("intake", w0, c0)
        prof = consumed(out, topic, offsets)
        # Runtime.decide_batch, step by step: the batch, its due timers fired into its result
        # (timers), then one produce and commit for both (decide), and any rounds left (timers)
        parts = sorted({r.partition for r in prof})
        w0, c0 = time.perf_counter(), time.process_time()
        await rt.adopt(set(offsets))
        res = await rt.decide.process(prof)
        took("decide", w0, c0)
        w0, c0 = time.perf_counter(), time.process_time()
        res = await rt.decide.fire_due(parts, res)
        took("timers", w0, c0)
        w0, c0 = time.perf_counter(), time.process_time()
        await rt.run_decide(res, produce)
        took("decide", w0, c0)
        w0, c0 = time.perf_counter(), time.process_time()
        while res.more and await rt.fire_round(parts, produce):
            pass
        took("timers", w0, c0)
    n = len(events)
    print(
        f"stages, Redis, batch {batch}, {settings.partitions} partitions, event clock: "
        f"intake {n / wall['intake']:,.0f} events/s, decide {n / wall['decide']:,.0f} events/s, "
        f"timers {n / wall['timers']:,.0f} events/s; decisions {fired:,}",
        flush=True,
    )
    print(
        "stages, CPU µs per event: "
        + ", ".join(f"{k} {v / n * 1e6:.0f}" for k, v in cpu.items())
        + f", total {sum(cpu.values()) / n * 1e6:.0f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    events = journeys(args.events)
    with LocalStack() as stack:
        s = load_settings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            partitions=8,
            kafka_session_timeout=6.0,
            batch_size=args.batch,
            redis_prefix="bench",
            metrics_port=0,
        )
        quiet_gc()  # as the worker does after start-up
        asyncio.run(bench_stages(s, events, args.batch))


if __name__ == "__main__":
    main()

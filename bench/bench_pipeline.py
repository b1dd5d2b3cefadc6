"""Pipeline throughput: the stages against real Redis, without Kafka or faust.

(Whole workers on the local stack, one and two, and the event-to-trigger latency:
``bench/bench_scale.py``.)

    .venv/bin/python bench/bench_pipeline.py [--events N]

Prints numbers; asserts nothing (performance goals live here, not in timed tests).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import orjson

from streams.intake import ms_to_iso
from streams.pipeline.records import InRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings, load_settings
from streams.stack import LocalStack


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


async def bench_stages(settings: Settings, events: list[bytes], batch: int) -> None:
    settings = settings.model_copy(update={"clock": "event"})
    rt = Runtime(settings, Stores.redis(settings))
    rt.event_clock.idle_timeout_ms = 2**62
    t_intake = t_decide = 0.0
    offsets: dict[int, int] = {}
    for i in range(0, len(events), batch):
        n_src = settings.partitions
        recs = [
            InRecord(settings.topic_raw, (i + j) % n_src, (i + j) // n_src, None, v)
            for j, v in enumerate(events[i : i + batch])
        ]
        start = time.perf_counter()
        out = await rt.intake.process(recs, int(time.time() * 1000))
        t_intake += time.perf_counter() - start
        prof = []
        for r in out:
            if r.topic == settings.topic_profiled:
                p = r.partition or 0
                prof.append(InRecord(r.topic, p, offsets.get(p, 0), r.key, r.value))
                offsets[p] = offsets.get(p, 0) + 1
        start = time.perf_counter()
        await rt.adopt(set(offsets))
        res = await rt.decide.process(prof)
        await rt.decide.commit(res.commit)
        fired = await rt.decide.fire_due(sorted(offsets))
        await rt.decide.commit(fired.commit)
        t_decide += time.perf_counter() - start
    n = len(events)
    print(
        f"stages, Redis, batch {batch}: intake {n / t_intake:,.0f} events/s, "
        f"decide {n / t_decide:,.0f} events/s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--within", type=float, default=0.05, help="seconds a batch may wait to fill")
    args = ap.parse_args()
    events = journeys(args.events)
    with LocalStack() as stack:
        s = load_settings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            partitions=4,
            kafka_session_timeout=6.0,
            batch_size=args.batch,
            batch_within=args.within,
            redis_prefix="bench",
        )
        asyncio.run(bench_stages(s, events, args.batch))


if __name__ == "__main__":
    main()

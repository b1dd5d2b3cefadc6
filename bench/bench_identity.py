"""Benchmark of identity resolution in Redis: resolutions per second, Redis memory per profile, and
the longest one script call holds Redis on hostile input.

    .venv/bin/python bench/bench_identity.py [--profiles 1000000] [--batch 500] [--script FILE]

Starts its own redis-server (and broker) via ``streams.stack.LocalStack`` on free ports. The workload
is a person per profile, seen three times: an anonymous web visit with a device (creates the
profile), a login that adds a user id, an email and a name, and a page view (matches). One person in
twenty first leaves their email through a form under a second anonymous id, so the login merges two
profiles. Batches go through ``RedisIdentityStore.resolve`` (one Lua call each), one after another on
one connection, as one intake worker sends them.

Memory per profile is ``INFO memory`` ``used_memory`` after minus before, over the live profiles:
index keys, profile hashes, identifier sets, traits, channels, merge records and the tombstones of
absorbed profiles, everything the graph holds for them.

Worst case (printed, not asserted): batches of 500 events with 50 identifiers each, and one event with
1,000 identifiers, none of which intake's per-event cap would let through; the time of the longest
script call is Redis's own (``SLOWLOG``, microseconds inside Redis), during which it serves no one
else. ``--script FILE`` measures another ``resolve.lua`` (e.g. ``git show
HEAD~1:streams/identity/resolve.lua``) sent in one call per batch, as before batches were chunked.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.constants import Keys
from streams.identity.base import ResolveRequest
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack

T0 = 1_767_225_600_000  # 2026-01-01
MERGE_EVERY = 20


def phase(n_profiles: int, which: int) -> Iterator[ResolveRequest]:
    """Phase 0 creates every profile (and the email-first ones), 1 logs in (attach / merge), 2 views."""
    for p in range(n_profiles):
        anon = Identifier("anonymous_id", f"anon-{p:08x}-4f1c9b")
        ts = T0 + p
        if which == 0:
            yield ResolveRequest(f"v-{p}", ts, "web", (anon, Identifier("device_id", f"dev-{p:08x}")))
            if p % MERGE_EVERY == 0:
                yield ResolveRequest(
                    f"f-{p}",
                    ts + 1,
                    "email",
                    (
                        Identifier("anonymous_id", f"form-{p:08x}"),
                        Identifier("email", f"person{p}@example.com"),
                    ),
                )
        elif which == 1:
            yield ResolveRequest(
                f"l-{p}",
                ts + 2,
                "app",
                (anon, Identifier("user_id", f"user-{p:08d}"), Identifier("email", f"person{p}@example.com")),
                {"name": f"Person {p}", "plan": "gold" if p % 7 == 0 else "basic"},
            )
        else:
            yield ResolveRequest(f"pv-{p}", ts + 3, "web", (anon,))


def batches(reqs: Iterator[ResolveRequest], size: int) -> Iterator[list[ResolveRequest]]:
    batch: list[ResolveRequest] = []
    for r in reqs:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def used_memory(client: object) -> int:
    info = await client.info("memory")  # type: ignore[attr-defined]
    return int(info["used_memory"])


def store_for(client: Any, prefix: str, script: str | None, retention_days: int = 0) -> RedisIdentityStore:
    # production sets a TTL on anonymous-only profiles (CXSTREAM_ANONYMOUS_RETENTION_DAYS): EXPIREs
    # on each of their events, PERSISTs when they become known
    ttl = retention_days * 86400 or None
    store = RedisIdentityStore(client, Keys(prefix), anonymous_ttl=ttl)
    if script is not None:  # another resolve.lua, in one call per batch as before chunking
        store._resolve = client.register_script(Path(script).read_text())
        store.max_ids_per_call = 1 << 40
    return store


def hostile(kind: str) -> tuple[list[ResolveRequest], list[ResolveRequest]]:
    """(setup, the measured batch): events no real person sends, which the intake cap would stop."""
    if kind == "500x50 new":  # all kept: every identifier a GET, SET and SADD
        return [], [
            ResolveRequest(
                f"n{e}", T0 + e, "web", tuple(Identifier("external_id", f"x{e}-{k}") for k in range(50))
            )
            for e in range(500)
        ]
    if kind == "500x50 emails":  # 50 new emails each: the limit of 5 drops 45
        return [], [
            ResolveRequest(
                f"e{e}", T0 + e, "web", tuple(Identifier("email", f"{e}-{k}@x.io") for k in range(50))
            )
            for e in range(500)
        ]
    if kind == "500x50 known":  # each names 50 known people (crm ref + email): the email limit drops 45
        setup = [
            ResolveRequest(
                f"s{p}", T0, "web", (Identifier("crm_id", f"c{p}"), Identifier("email", f"p{p}@x.io"))
            )
            for p in range(500 * 50)
        ]
        return setup, [
            ResolveRequest(
                f"k{e}", T0 + e, "web", tuple(Identifier("email", f"p{e * 50 + k}@x.io") for k in range(50))
            )
            for e in range(500)
        ]
    if kind == "1x1000 new":  # the identifier cap keeps 100
        return [], [
            ResolveRequest("big", T0, "web", tuple(Identifier("external_id", f"x{k}") for k in range(1000)))
        ]
    assert kind == "1x1000 known"  # 1,000 known people: the email limit keeps 5
    setup = [
        ResolveRequest(
            f"s{p}", T0, "web", (Identifier("email", f"q{p}@x.io"), Identifier("device_id", f"d{p}"))
        )
        for p in range(1000)
    ]
    return setup, [
        ResolveRequest("big", T0 + 1, "web", tuple(Identifier("device_id", f"d{p}") for p in range(1000)))
    ]


async def evalsha_stats(client: Any) -> tuple[int, int]:
    stats = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def worst_case(client: Any, script: str | None) -> None:
    """Calls counted by ``INFO commandstats``; the longest from ``SLOWLOG`` (which, at a threshold of
    0, would log every command a script runs and slow it down: 1 ms keeps only the calls)."""
    print("  script calls on hostile input (time inside Redis, blocking every other client):")
    await client.config_set("slowlog-log-slower-than", 1000)
    await client.config_set("slowlog-max-len", 10_000)
    try:
        for n, kind in enumerate(
            ("500x50 new", "500x50 emails", "500x50 known", "1x1000 new", "1x1000 known")
        ):
            setup, measured = hostile(kind)
            store = store_for(client, f"worst{n}", script)
            for b in batches(iter(setup), 500):
                await store.resolve(b)
            await client.slowlog_reset()
            calls, usec = await evalsha_stats(client)
            await store.resolve(measured)
            after_calls, after_usec = await evalsha_stats(client)
            slow = [
                e["duration"] for e in await client.slowlog_get(10_000) if e["command"].startswith(b"EVALSHA")
            ]
            longest = f"{max(slow) / 1000:8.1f} ms" if slow else "  < 1 ms"
            print(
                f"    {kind:<14} {after_calls - calls:>3} call(s)  longest {longest}"
                f"  all {(after_usec - usec) / 1000:8.1f} ms",
                flush=True,
            )
    finally:
        await client.config_set("slowlog-log-slower-than", 10_000)
        await client.config_set("slowlog-max-len", 128)


def with_sources(batch: list[ResolveRequest], seq: int) -> list[ResolveRequest]:
    """Source coordinates, as intake gives them: the memo of each new, merged or limited event."""
    return [
        dataclasses.replace(r, source=f"cx.events.raw/{(seq + k) % 12}/{seq + k}")
        for k, r in enumerate(batch)
    ]


async def run(
    url: str, n_profiles: int, size: int, script: str | None, memo: bool, retention_days: int
) -> None:
    client = connect(url)
    store = store_for(client, "bench", script, retention_days)
    await client.flushdb()
    base = await used_memory(client)
    total_n, total_s, merges, memos = 0, 0.0, 0, 0
    phases = ("create (visit)", "login (attach, 1 in 20 merges)", "page view (match)") if n_profiles else ()
    for which, name in enumerate(phases):
        n, start, (_, usec) = 0, time.perf_counter(), await evalsha_stats(client)
        for b in batches(phase(n_profiles, which), size):
            res = await store.resolve(with_sources(b, total_n + n) if memo else b)
            n += len(b)
            merges += sum(len(r.merges) for r in res)
            memos += sum(1 for r in res if memo and not script and (r.outcome != "matched" or r.dropped))
        secs = time.perf_counter() - start
        total_n, total_s = total_n + n, total_s + secs
        in_redis = ((await evalsha_stats(client))[1] - usec) / 1e6
        rate = f"{n:>10,} resolutions  {secs:7.1f} s  {n / secs:>9,.0f} /s"
        print(f"  {name:<32} {rate}  ({in_redis:.1f} s in Redis)", flush=True)
    mem = await used_memory(client) - base
    keys = await client.dbsize()
    if total_n:
        print(f"  {'all':<32} {total_n:>10,} resolutions  {total_s:7.1f} s  {total_n / total_s:>9,.0f} /s")
        print(f"  merges: {merges:,}   keys: {keys:,}   live profiles: {n_profiles:,}   memos: {memos:,}")
        print(f"  Redis memory: {mem / 2**20:,.1f} MiB = {mem / n_profiles:,.0f} bytes per profile, memos in")
    await worst_case(client, script)
    await client.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--script", help="measure this resolve.lua instead, one call per batch (a before number)")
    ap.add_argument("--no-memo", action="store_true", help="requests without a source: nothing remembered")
    ap.add_argument(
        "--retention-days", type=int, default=395, help="anonymous-only profile TTL, as production; 0: none"
    )
    args = ap.parse_args()
    os.environ.pop("CXSTREAM_REDIS_URL", None)  # our own server: the memory figure is ours alone
    with LocalStack() as stack:
        print(
            f"identity resolution: {args.profiles:,} profiles, batches of {args.batch}, at {stack.redis_url}"
        )
        asyncio.run(
            run(
                stack.redis_url, args.profiles, args.batch, args.script, not args.no_memo, args.retention_days
            )
        )


if __name__ == "__main__":
    main()

"""Benchmark of identity resolution in Redis: resolutions per second and Redis memory per profile.

    .venv/bin/python bench/bench_identity.py [--profiles 1000000] [--batch 500]

Starts its own redis-server (and broker) via ``streams.stack.LocalStack`` on free ports. The workload
is a person per profile, seen three times: an anonymous web visit with a device (creates the
profile), a login that adds a user id, an email and a name, and a page view (matches). One person in
twenty first leaves their email through a form under a second anonymous id, so the login merges two
profiles. Batches go through ``RedisIdentityStore.resolve`` (one Lua call each), one after another on
one connection, as one intake worker sends them.

Memory per profile is ``INFO memory`` ``used_memory`` after minus before, over the live profiles:
index keys, profile hashes, identifier sets, traits, channels, merge records and the tombstones of
absorbed profiles, everything the graph holds for them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


async def run(url: str, n_profiles: int, size: int) -> None:
    client = connect(url)
    store = RedisIdentityStore(client, Keys("bench"))
    await client.flushdb()
    base = await used_memory(client)
    total_n, total_s, merges = 0, 0.0, 0
    for which, name in enumerate(("create (visit)", "login (attach, 1 in 20 merges)", "page view (match)")):
        n, start = 0, time.perf_counter()
        for b in batches(phase(n_profiles, which), size):
            res = await store.resolve(b)
            n += len(b)
            merges += sum(len(r.merges) for r in res)
        secs = time.perf_counter() - start
        total_n, total_s = total_n + n, total_s + secs
        print(f"  {name:<32} {n:>10,} resolutions  {secs:7.1f} s  {n / secs:>9,.0f} /s", flush=True)
    mem = await used_memory(client) - base
    keys = await client.dbsize()
    await client.aclose()
    print(f"  {'all':<32} {total_n:>10,} resolutions  {total_s:7.1f} s  {total_n / total_s:>9,.0f} /s")
    print(f"  merges: {merges:,}   keys: {keys:,}   live profiles: {n_profiles:,}")
    print(f"  Redis memory: {mem / 2**20:,.1f} MiB = {mem / n_profiles:,.0f} bytes per profile")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    os.environ.pop("CXSTREAM_REDIS_URL", None)  # our own server: the memory figure is ours alone
    with LocalStack() as stack:
        print(
            f"identity resolution: {args.profiles:,} profiles, batches of {args.batch}, at {stack.redis_url}"
        )
        asyncio.run(run(stack.redis_url, args.profiles, args.batch))


if __name__ == "__main__":
    main()

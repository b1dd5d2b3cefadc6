"""Redis memory per person, before and after retention (``CXSTREAM_ANONYMOUS_RETENTION_DAYS``).

    .venv/bin/python bench/bench_memory.py [--people 1000000] [--batch 500]

Starts its own redis-server (``streams.stack.LocalStack``) and loads a realistic mix of people
through the production stores (``RedisIdentityStore.resolve``, one Lua call per batch;
``RedisStateStore.save``, one pipeline per batch), as an intake and a decide worker write them:

* 70 % one-time anonymous visitors: one page view (anonymous id + device id), a state;
* 25 % known customers: a visit, a login (user id, email, name and plan traits), a page view, a state
  with consent, a rule's state and a cap entry;
* 5 % known customers who first left their email under a second anonymous id (the login merges two
  profiles, leaving a merge record and the absorbed profile's pointer).

It loads the mix twice into a flushed Redis: with retention of a few seconds standing in for the 395
days (the "after"; then it waits until Redis has expired the anonymous-only profiles), and without
retention (every profile kept forever, the "before"). ``INFO memory`` ``used_memory`` deltas give bytes
per person of each kind. Dedupe markers and resolution memos (per event, for ``CXSTREAM_DEDUPE_TTL``)
are measured apart, per event. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aioredis

from streams.constants import Keys
from streams.engine.state import RedisStateStore
from streams.identity.base import ResolveRequest
from streams.identity.redis_store import RedisIdentityStore
from streams.intake.dedupe import RedisDedupeStore
from streams.model import Identifier
from streams.redis_io import connect
from streams.stack import LocalStack
from streams.state import ProfileState

T0 = 1_767_225_600_000  # 2026-01-01
DAY_MS = 86_400_000
#: seconds standing in for the retention period in the "after" run
SHORT_RETENTION = 5


def kind(p: int) -> str:
    r = p % 20
    return "merged" if r == 0 else "known" if r < 6 else "anonymous"


def events(n: int) -> Iterator[tuple[int, ResolveRequest]]:
    """(person, request), person after person: a visit (and an email form), a login, a page view.
    A person's events are a few batches apart at most, so a known person is known well within the
    seconds that stand in for the retention period."""
    for p in range(n):
        anon = Identifier("anonymous_id", f"anon-{p:08x}-4f1c9b2e")
        yield p, ResolveRequest(f"v-{p}", T0 + p, "web", (anon, Identifier("device_id", f"dev-{p:08x}")))
        if kind(p) == "merged":
            form = (Identifier("anonymous_id", f"form-{p:08x}"), Identifier("email", f"h:{p:040x}"))
            yield p, ResolveRequest(f"f-{p}", T0 + p + 1, "email", form)
        if kind(p) != "anonymous":
            ids = (anon, Identifier("user_id", f"user-{p:08d}"), Identifier("email", f"h:{p:040x}"))
            traits = {"name": f"h:{p + 1:040x}", "plan": "gold" if p % 7 == 0 else "basic"}
            yield p, ResolveRequest(f"l-{p}", T0 + p + 2, "app", ids, traits)
            yield p, ResolveRequest(f"pv-{p}", T0 + p + 3, "web", (anon,))


def state_of(p: int) -> ProfileState:
    if kind(p) == "anonymous":
        return ProfileState(reach=["anonymous_id", "device_id"], applied_offset=p)
    return ProfileState(
        consent={"marketing": [[True, T0 + p, "segment"]]},
        rules={"inactive_45d": {"last": T0 + p + 3}},
        caps={"email": [T0 + p]},
        reach=["anonymous_id", "device_id", "user_id", "email"],
        applied_offset=p,
    )


async def used(client: Any) -> int:
    return int((await client.info("memory"))["used_memory"])


async def load(client: Any, n: int, batch: int, retention: int | None) -> dict[str, str]:
    """The mix through the stores; returns person -> live profile id."""
    keys = Keys("mem")
    ids = RedisIdentityStore(client, keys, anonymous_ttl=retention)
    states = RedisStateStore(client, keys, anonymous_ttl=retention)
    pid_of: dict[int, str] = {}
    buf: list[tuple[int, ResolveRequest]] = []

    async def flush() -> None:
        res = await ids.resolve([r for _, r in buf])
        touched: dict[str, ProfileState] = {}
        for (p, _), r in zip(buf, res, strict=True):
            pid_of[p] = r.profile_id
            touched[r.profile_id] = state_of(p)
            for m in r.merges:
                # a tombstone, as a hand-off leaves
                touched[m.absorbed] = ProfileState(merged_into=m.survivor)
        await states.save(touched)
        buf.clear()

    for item in events(n):
        buf.append(item)
        if len(buf) == batch:
            await flush()
    if buf:
        await flush()
    return {str(p): pid for p, pid in pid_of.items()}


async def wait_expired(client: Any, seconds: float) -> None:
    """Redis expires keys actively (a sample ~10 times a second): wait, then until the count settles."""
    await asyncio.sleep(seconds)
    last = -1
    while (n := await client.dbsize()) != last:
        last = n
        await asyncio.sleep(2)


async def dedupe_per_event(client: Any, n: int, batch: int) -> float:
    store = RedisDedupeStore(client, Keys("dd"), 24 * 3600)
    before = await used(client)
    for start in range(0, n, batch):
        await store.check(
            [(f"msg-{k:012d}-7c1f", f"cx.events.raw/{k % 12}/{k}") for k in range(start, start + batch)]
        )
    return (await used(client) - before) / n


async def run(url: str, n: int, batch: int) -> None:
    client = connect(url)  # the stores' client, as production builds it (10 s socket timeout)
    admin = aioredis.Redis.from_url(url, socket_timeout=900)  # FLUSHDB of millions of keys: minutes
    counts = {k: sum(1 for p in range(n) if kind(p) == k) for k in ("anonymous", "known", "merged")}
    print(
        f"  people: {n:,} = {counts['anonymous']:,} anonymous, {counts['known']:,} known, "
        f"{counts['merged']:,} known after a merge",
        flush=True,
    )
    await admin.flushdb()
    per_event = await dedupe_per_event(client, min(n, 200_000), batch)
    print(f"  dedupe marker: {per_event:,.0f} B per event, for CXSTREAM_DEDUPE_TTL (24 h)", flush=True)
    results: dict[str, float] = {}
    # with retention first: what is left after it is small, so the FLUSHDB before the other is quick
    for label, retention in (("with retention", SHORT_RETENTION), ("without retention", None)):
        await admin.flushdb()
        base = await used(admin)
        start = time.perf_counter()
        await load(client, n, batch, retention)
        loaded = await used(admin) - base
        secs = time.perf_counter() - start
        note = " (anonymous ones expiring meanwhile)" if retention and secs > retention else ""
        print(
            f"  {label:<20} loaded in {secs:6.1f} s: {loaded / 2**20:8,.1f} MiB, "
            f"{await admin.dbsize():,} keys, {loaded / n:,.0f} B per person{note}",
            flush=True,
        )
        results[label] = loaded
        if retention is not None:
            await wait_expired(admin, retention + 1)
            kept = await used(admin) - base
            known = counts["known"] + counts["merged"]
            print(
                f"  {'after the retention':<20} {kept / 2**20:8,.1f} MiB, {await admin.dbsize():,} keys: "
                f"{kept / known:,.0f} B per known person, the anonymous ones gone",
                flush=True,
            )
            results["kept"] = kept
    anon = (results["without retention"] - results["kept"]) / counts["anonymous"]
    print(
        f"  before: {results['without retention'] / n:,.0f} B per person forever; after: "
        f"{results['kept'] / n:,.0f} B per person once the retention has passed "
        f"(an anonymous visitor's {anon:,.0f} B last only until then)"
    )
    await client.aclose()
    await admin.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    os.environ.pop("CXSTREAM_REDIS_URL", None)  # our own server: the memory figure is ours alone
    with LocalStack() as stack:
        print(
            f"Redis memory per person: {args.people:,} people, batches of {args.batch}, at {stack.redis_url}"
        )
        asyncio.run(run(stack.redis_url, args.people, args.batch))


if __name__ == "__main__":
    main()

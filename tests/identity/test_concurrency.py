"""Several worker processes, each with its own Redis connection, race on batches that link the
same people; the graph stays whole and equals the sequential answer.

Each person's events are dealt to different processes, so creating and merging the same
profile is contended on almost every batch; a few shared devices link people, so merges
chain across processes too. With no limits the grouping does not depend on the order
the batches ran in (connected components), so it must equal the sequential union-find.
With the default limits the order matters (which of two people a shared device stays
with), so there the invariants are checked, and every limit.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from identity.redis_scan import graph
from identity.reference import Rules, UnionFind

from streams.constants import BLOCKED_IDENTIFIER_VALUES, Keys
from streams.identity.base import DEFAULT_LIMITS, DEFAULT_PRIORITY
from streams.stack import LocalStack

pytestmark = pytest.mark.stack

WORKERS = 4
PEOPLE = 1500
EVENTS = 16_000
BATCH = 100

WORKER = r"""
import asyncio, json, sys, time
from pathlib import Path
from streams.constants import Keys
from streams.identity.base import IdentityRules, ResolveRequest
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier
from streams.redis_io import connect

url, prefix, path, unlimited, go = sys.argv[1:]
batches = json.loads(Path(path).read_text())
rules = IdentityRules()
if unlimited == "1":
    rules = IdentityRules(limits={}, max_identifiers=10**6, max_merges=10**6)

async def main():
    client = connect(url)
    store = RedisIdentityStore(client, Keys(prefix), rules)
    while not Path(go).exists():  # start together
        await asyncio.sleep(0.005)
    start = time.time()
    for b in batches:
        reqs = [ResolveRequest(m, ts, "web", tuple(Identifier(t, v) for t, v in ids)) for m, ts, ids in b]
        await store.resolve(reqs)
    print(json.dumps([start, time.time()]))
    await client.aclose()

asyncio.run(main())
"""

Ev = tuple[str, int, list[tuple[str, str]]]


def journey_events(seed: int) -> list[Ev]:
    rnd = random.Random(seed)
    people = [
        [
            ("user_id", f"u{n}"),
            ("email", f"p{n}@example.com"),
            ("device_id", f"d{n}"),
            ("anonymous_id", f"a{n}"),
            ("anonymous_id", f"b{n}"),
        ]
        for n in range(PEOPLE)
    ]
    events: list[Ev] = []
    for n in range(EVENTS):
        ids = rnd.sample(people[rnd.randrange(PEOPLE)], rnd.choice([1, 2, 2, 3]))
        if rnd.random() < 0.01:  # a shared family device: links two people when nothing forbids it
            ids.append(("device_id", f"d{rnd.randrange(PEOPLE)}"))
        events.append((f"m{n}", 1_000 + rnd.randrange(10_000), ids))
    return events


def race(
    stack: LocalStack, tmp_path: Path, events: list[Ev], unlimited: bool
) -> tuple[Keys, list[list[float]]]:
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    go = tmp_path / "go"
    procs = []
    for w in range(WORKERS):
        path = tmp_path / f"w{w}.json"
        path.write_text(json.dumps(batches[w::WORKERS]))  # round-robin: every person on every worker
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    stack.redis_url,
                    prefix,
                    str(path),
                    "1" if unlimited else "0",
                    str(go),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    time.sleep(1.0)  # let them import and connect
    go.touch()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
        spans.append(json.loads(out))
    return Keys(prefix), spans


def overlapped(spans: list[list[float]]) -> bool:
    return max(s for s, _ in spans) < min(e for _, e in spans)


def test_racing_workers_give_the_sequential_grouping(stack: LocalStack, tmp_path: Path) -> None:
    events = journey_events(1)
    keys, spans = race(stack, tmp_path, events, unlimited=True)
    assert overlapped(spans), f"the workers did not run at the same time: {spans}"

    g = graph(redis.Redis.from_url(stack.redis_url), keys)
    assert g.problems() == []
    uf = UnionFind(Rules(DEFAULT_PRIORITY, {}, 10**6, 10**6, BLOCKED_IDENTIFIER_VALUES))
    for m, _, ids in events:
        uf.add(m, ids)
    expected = uf.groups()
    assert len(expected) > 100, "the stream should leave many people apart"
    assert max(map(len, expected)) > 5, "and link some through shared devices"
    assert g.groups() == expected
    assert len(g.live) == len(expected)

    # the checker is not vacuous: take one identifier away from its profile and it says so
    r = redis.Redis.from_url(stack.redis_url)
    pid, ids = next(iter(g.live.items()))
    r.srem(keys.profile(pid) + ":ids", next(iter(ids)))
    assert graph(r, keys).problems()


def test_racing_workers_keep_the_graph_whole_under_limits(stack: LocalStack, tmp_path: Path) -> None:
    events = journey_events(2)
    keys, spans = race(stack, tmp_path, events, unlimited=False)
    assert overlapped(spans), f"the workers did not run at the same time: {spans}"

    g = graph(redis.Redis.from_url(stack.redis_url), keys)
    assert g.problems() == []
    # a limit drops the event's lowest-priority ids first (devices, anonymous ids): never a user id or email
    strong = {f"{t}:{v}" for _, _, ids in events for t, v in ids if t in ("user_id", "email")}
    assert strong <= set(g.index)
    for pid, ids in g.live.items():
        per_type = Counter(i.partition(":")[0] for i in ids)
        assert all(n <= DEFAULT_LIMITS.get(t, n) for t, n in per_type.items()), (pid, per_type)
    assert g.merged_into, "merges happened"

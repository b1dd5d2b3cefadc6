"""Erasure leaves nothing behind: a scan of every Redis key and value finds neither the profile ids
nor any identifier of the person; someone else's profile is untouched (so the scan can fail).

Three ways in: the store's ``forget``; the erasure event through both stages (in one process,
over the real Redis stores); and the event on the raw topic with a worker running.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from helpers import consume, json_values, produce, running_worker
from identity.redis_scan import dump, holding

from streams.constants import Keys
from streams.engine.clock import wall_ms
from streams.identity.base import ERASURE_EVENT, ResolveRequest
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.intake.normalize import ms_to_iso
from streams.model import Identifier
from streams.redis_io import connect
from streams.runtime import Stores
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.stack import LocalStack
from streams.testing import at

pytestmark = pytest.mark.stack

MIN = 60_000
ANN = ["ann-anon-7f3", "ann.lee@example.com", "ann-user-42", "ann-loyal-9", "ann-lead-form-5e"]
BOB = ["bob-anon-c1d", "bob@example.com"]


def I(t: str, v: str) -> Identifier:  # noqa: E743
    return Identifier(t, v)


def req(ts: int, *ids: Identifier) -> ResolveRequest:
    return ResolveRequest(uuid.uuid4().hex, ts, "web", ids, {"name": "x"})


ANN_STREAM = [  # an anonymous visit, an email lead, an app login, a loyalty card: two merges
    req(1, I("anonymous_id", ANN[0])),
    req(2, I("email", ANN[1])),
    req(3, I("user_id", ANN[2])),
    req(4, I("email", ANN[1]), I("anonymous_id", ANN[0])),
    req(5, I("user_id", ANN[2]), I("loyalty_id", ANN[3])),
    req(6, I("loyalty_id", ANN[3]), I("email", ANN[1])),
]
BOB_STREAM = [req(1, I("anonymous_id", BOB[0])), req(2, I("anonymous_id", BOB[0]), I("email", BOB[1]))]


def test_forget_in_redis_leaves_no_key_or_value_of_the_person(stack: LocalStack) -> None:
    keys = Keys(f"forget-{uuid.uuid4().hex[:8]}")
    raw = redis.Redis.from_url(stack.redis_url)

    async def run() -> tuple[str, list[str], list[str]]:
        client = connect(stack.redis_url)
        try:
            store = RedisIdentityStore(client, keys)
            res = await store.resolve(ANN_STREAM + BOB_STREAM)
            pids = {r.profile_id for r in res} | {m.absorbed for r in res for m in r.merges}
            ann = await store.lookup(I("email", ANN[1]))
            assert ann is not None
            gone = await store.forget(ann)
            assert await store.lookup(I("user_id", ANN[2])) is None
            assert await store.profile(ann) is None
            assert await store.forget(ann) == [], "a second erasure finds nothing"
            bob = await store.lookup(I("email", BOB[1]))
            assert bob is not None and await store.profile(bob) is not None
            return ann, gone, sorted(pids - set(gone))
        finally:
            await client.aclose()

    ann, gone, others = asyncio.run(run())
    assert gone[0] == ann and len(gone) == 3, "the live profile and the two it absorbed"
    assert gone[1:] == sorted(gone[1:])
    assert holding(raw, {*gone, *ANN}, keys.graph + "*") == []
    left = dump(raw, keys.graph + "*")
    assert left, "bob is still there"
    assert holding(raw, {*BOB, *others}, keys.graph + "*"), "and the scan finds him"


def test_memory_forget_erases_the_same_profiles_as_redis(stack: LocalStack) -> None:
    async def run() -> tuple[list[str], list[str]]:
        client = connect(stack.redis_url)
        try:
            r = RedisIdentityStore(client, Keys(f"fm-{uuid.uuid4().hex[:8]}"))
            m = MemoryIdentityStore()
            await r.resolve(ANN_STREAM + BOB_STREAM)
            await m.resolve(ANN_STREAM + BOB_STREAM)
            pid = await m.lookup(I("user_id", ANN[2]))
            assert pid is not None
            got_m = await m.forget(pid)
            for ident in (I("anonymous_id", ANN[0]), I("email", ANN[1]), I("loyalty_id", ANN[3])):
                assert await m.lookup(ident) is None
            assert m.profiles and await m.lookup(I("email", BOB[1])) is not None
            return await r.forget(pid), got_m
        finally:
            await client.aclose()

    got_r, got_m = asyncio.run(run())
    assert got_r == got_m


# ---------------------------------------------------------------------------------------- the event


def seg(call: str, ts: int, **fields: Any) -> dict[str, Any]:
    return {"type": call, "messageId": str(uuid.uuid4()), "timestamp": ms_to_iso(ts), **fields}


def ann_journey(t0: int) -> list[dict[str, Any]]:
    """A web visit and an email lead (two anonymous profiles), merged by the app login."""
    ctx = {"channel": "web", "consent": {"categoryPreferences": {"marketing": True}}}
    return [
        seg("page", t0, anonymousId=ANN[0], name="Home", context=ctx),
        seg("identify", t0, anonymousId=ANN[4], traits={"email": ANN[1]}, context={"channel": "email"}),
        seg(
            "identify",
            t0 + MIN,
            anonymousId=ANN[0],
            userId=ANN[2],
            traits={"email": ANN[1], "name": "Ann Lee"},
        ),
        seg(
            "track",
            t0 + 2 * MIN,
            userId=ANN[2],
            event="Product Added",
            properties={"sku": "kettle", "price": 39.0},
            context={"channel": "app", "externalIds": [{"id": ANN[3], "type": "loyalty_id"}]},
        ),
    ]


def bob_journey(t0: int) -> list[dict[str, Any]]:
    return [
        seg("identify", t0, anonymousId=BOB[0], traits={"email": BOB[1]}),
        seg("track", t0 + MIN, anonymousId=BOB[0], event="Product Added", properties={"sku": "mug"}),
    ]


def erasure(ts: int, **who: Any) -> dict[str, Any]:
    return seg("track", ts, event=ERASURE_EVENT, context={"channel": "call_center"}, **who)


def changes(values: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(v) for v in values]


def pending_timers(raw: redis.Redis, prefix: str) -> dict[str, int]:
    """Timer member -> due, over every partition (read raw)."""
    out: dict[str, int] = {}
    for k in raw.scan_iter(match="{" + prefix + ":t:*}:due"):
        out.update({m.decode(): int(d) for m, d in raw.zrange(k, 0, -1, withscores=True)})
    return out


def pipeline_over_redis(s: Settings) -> tuple[LocalPipeline, Stores]:
    """Both stages in this process over the real Redis stores. One partition: LocalPipeline's event
    clock only advances with one (the worker test below runs four)."""
    stores = Stores.redis(s)
    return LocalPipeline(s.model_copy(update={"clock": "event", "partitions": 1}), stores), stores


async def close(stores: Stores) -> None:
    assert isinstance(stores.identity, RedisIdentityStore)
    await stores.identity.client.aclose()


@pytest.mark.parametrize("one_batch", [False, True], ids=["own-batch", "same-batch-as-the-cart"])
def test_erasure_event_erases_graph_state_and_timers(
    make_settings: Callable[..., Settings], one_batch: bool
) -> None:
    """Intake erases the graph and announces it; the decide stage drops state and timers (also a
    timer set earlier in the same batch); later events of the person start a new profile."""
    s = make_settings(rules=("cart_abandoned",))
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    t0 = at("2026-03-02T09:00:00Z")
    msgs = [orjson.dumps(m) for m in bob_journey(t0) + ann_journey(t0)]
    erase = orjson.dumps(erasure(t0 + 3 * MIN, userId=ANN[2]))
    later = [  # ann comes back after the erasure; carol moves the event clock past every cart timer
        orjson.dumps(seg("page", t0 + 4 * MIN, userId=ANN[2], name="Back")),
        orjson.dumps(seg("page", t0 + 120 * MIN, anonymousId="carol-1", name="Home")),
    ]

    async def run() -> tuple[list[str], dict[str, Any], list[bytes], str | None]:
        pipe, stores = pipeline_over_redis(s)
        try:
            if one_batch:
                await pipe.feed([*msgs, erase])
            else:
                await pipe.feed(msgs)
                ann = await stores.identity.lookup(I("user_id", ANN[2]))
                assert any(m.startswith(f"{ann}|") for m in pending_timers(raw, s.redis_prefix))
                await pipe.feed([erase])
            erased = [c for c in changes(pipe.result.identity_changes) if c["change"] == "erased"]
            assert len(erased) == 1
            hits = holding(raw, {*erased[0]["erased"], *ANN, "Ann Lee"}, "*" + s.redis_prefix + "*")
            assert await stores.identity.lookup(I("email", BOB[1])) is not None
            await pipe.feed(later)
            res = await pipe.finish()
            return hits, erased[0], res.decisions, await stores.identity.lookup(I("user_id", ANN[2]))
        finally:
            await close(stores)

    hits, erased, decisions, ann_again = asyncio.run(run())
    assert hits == []
    assert erased["reason"] == "request" and erased["profileId"] == erased["erased"][0]
    assert len(erased["erased"]) == 2, "the email lead's profile was absorbed, and is erased with it"
    assert ann_again is not None and ann_again not in erased["erased"], "a new start, not the old profile"
    fired = [orjson.loads(d) for d in decisions]
    assert [d["rule"]["name"] for d in fired] == ["cart_abandoned"], "bob's cart decides, ann's does not"
    assert fired[0]["profileId"] not in erased["erased"]


def test_erasure_in_the_batch_that_set_a_timer_cancels_it(make_settings: Callable[..., Settings]) -> None:
    """The cart timer is scheduled and erased within one decide batch: it must not be written."""
    s = make_settings(rules=("cart_abandoned",))
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    t0 = at("2026-03-02T09:00:00Z")

    async def run() -> list[dict[str, Any]]:
        pipe, stores = pipeline_over_redis(s)
        try:
            await pipe.feed(
                [orjson.dumps(m) for m in bob_journey(t0)]
                + [orjson.dumps(erasure(t0 + MIN, anonymousId=BOB[0]))]
            )
            return changes(pipe.result.identity_changes)
        finally:
            await close(stores)

    got = asyncio.run(run())
    assert [c["change"] for c in got] == ["created", "erased"]
    assert pending_timers(raw, s.redis_prefix) == {}
    assert holding(raw, {got[0]["profileId"], *BOB}, "*" + s.redis_prefix + "*") == []


def test_erasure_event_for_unknown_person_changes_nothing(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(rules=("cart_abandoned",))
    t0 = at("2026-03-02T09:00:00Z")

    async def run() -> list[dict[str, Any]]:
        pipe, stores = pipeline_over_redis(s)
        try:
            await pipe.feed([orjson.dumps(m) for m in bob_journey(t0)])
            await pipe.feed([orjson.dumps(erasure(t0 + MIN, userId="nobody-here"))])
            assert await stores.identity.lookup(I("email", BOB[1])) is not None
            return changes(pipe.result.identity_changes)
        finally:
            await close(stores)

    assert [c["change"] for c in asyncio.run(run())] == ["created"], "no profile made for the request"


def test_erasure_event_on_the_raw_topic_with_a_worker_running(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(rules=("cart_abandoned",))  # wall clock: the carts' timers are pending 30 min
    topics(s)
    raw = redis.Redis.from_url(s.redis_url.get_secret_value())
    now = wall_ms()
    events = bob_journey(now - 5 * MIN) + ann_journey(now - 4 * MIN)
    with running_worker(s, tmp_path / "worker.log") as proc:
        produce(
            s,
            s.topic_raw,
            [(m.get("userId", m.get("anonymousId")).encode(), orjson.dumps(m)) for m in events],
        )
        deadline = time.monotonic() + 60
        while len(pending_timers(raw, s.redis_prefix)) < 2:  # both carts wait: the state is really there
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.2)
        produce(s, s.topic_raw, [(ANN[2].encode(), orjson.dumps(erasure(now, userId=ANN[2])))])
        erased: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not erased and time.monotonic() < deadline:
            got = json_values(consume(s, s.topic_identity_changes, want=10, timeout=3))
            erased = [c for c in got if c["change"] == "erased"]
        assert erased, (tmp_path / "worker.log").read_text()[-3000:]
        gone = erased[0]["erased"]
        hits: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the decide stage gets the erase envelope soon after
            hits = holding(raw, {*gone, *ANN, "Ann Lee"}, "*" + s.redis_prefix + "*")
            if not hits:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    assert hits == []
    assert gone, "keys differ, so the raw partitions and hence whether ann's profiles merged first may vary"
    assert len(pending_timers(raw, s.redis_prefix)) == 1, "bob's cart still waits"
    assert holding(raw, set(BOB), "*" + s.redis_prefix + "*"), "bob is untouched"

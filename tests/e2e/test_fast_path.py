"""The worker's fast path (issue 13) keeps what it replaces: its loop, its counts, its states.

faust's replaced consumer method is pinned in ``tests/test_faust_pin.py``; the worker-level
behaviour (order, produce before commit, redelivery, SIGKILL) is what ``test_worker.py``,
``test_simulate_equivalence.py``, ``test_timers.py`` and ``test_shutdown.py`` check, on
workers that run this path.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams import metrics
from streams.constants import Keys, retention_margin
from streams.engine.state import RedisStateStore
from streams.redis_io import connect
from streams.stack import LocalStack
from streams.state import ProfileState


def test_the_worker_runs_on_uvloop_and_a_frozen_heap() -> None:
    """In a fresh interpreter: what ``run_worker`` calls before and after building the app."""
    code = (
        "import asyncio, gc\n"
        "from streams.worker import GC_THRESHOLDS, fast_loop, quiet_gc\n"
        "fast_loop()\n"
        "loop = asyncio.new_event_loop()\n"
        "quiet_gc()\n"
        "print(type(loop).__module__, gc.get_freeze_count() > 0, gc.get_threshold() == GC_THRESHOLDS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["uvloop", "True", "True"]


def sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counts_wait_for_the_flush_and_are_all_added() -> None:
    labels = {"channel": "kiosk_fast", "call": "track"}
    before = sample("cxstream_events_in_total", labels)
    for _ in range(500):
        metrics.count(metrics.EVENTS_IN, "kiosk_fast", "track")
    metrics.count(metrics.EVENTS_IN, "kiosk_fast", "page")
    assert sample("cxstream_events_in_total", labels) == before, "counted per batch, not per event"
    metrics.flush()
    assert sample("cxstream_events_in_total", labels) == before + 500
    assert sample("cxstream_events_in_total", {**labels, "call": "page"}) >= 1
    metrics.flush()  # nothing left: nothing added twice
    assert sample("cxstream_events_in_total", labels) == before + 500


@pytest.mark.stack
def test_state_store_one_server_saves_in_one_call_and_keeps_ttls(stack: LocalStack) -> None:
    """One MGET and one script call per batch on one server; states that expire (tombstones,
    anonymous-only profiles) still get their TTL, a known person's loses it, and deletes still
    delete."""
    keys = Keys(f"fp-{uuid.uuid4().hex[:8]}")

    async def run() -> tuple[dict[str, Any], dict[str, int], dict[str, int]]:
        client = connect(stack.redis_url)
        try:
            store = RedisStateStore(client, keys, tombstone_ttl=3600, anonymous_ttl=7200)
            known = ProfileState(reach=["email", "anonymous_id"], country="FR", applied_offset=3)
            anon = ProfileState(reach=["anonymous_id"], applied_offset=4)
            gone = ProfileState(applied_offset=5)
            gone.become_tombstone("p-known")
            await store.save({"p-known": known, "p-anon": anon, "p-gone": gone, "p-x": ProfileState()})
            await store.save({"p-x": None})
            before = await client.info("commandstats")
            await store.save({"p-known": known, "p-y": ProfileState(applied_offset=1)})  # one EVALSHA
            await store.load(["p-known", "p-y", "p-z"])  # one MGET
            after = await client.info("commandstats")
            commands = {
                c: after.get(f"cmdstat_{c}", {}).get("calls", 0)
                - before.get(f"cmdstat_{c}", {}).get("calls", 0)
                for c in ("evalsha", "mset", "mget", "get")
            }
            grows = ProfileState(reach=["anonymous_id"], applied_offset=6)
            await store.save({"p-grows": grows})
            ttls = {"p-grows-anonymous": int(await client.ttl(keys.state("p-grows")))}
            grows.reach.append("email")  # the visitor identified: kept for good now
            await store.save({"p-grows": grows})
            loaded = await store.load(["p-known", "p-anon", "p-gone", "p-x", "p-new"])
            for p in ("p-known", "p-anon", "p-gone", "p-x", "p-grows"):
                ttls[p] = int(await client.ttl(keys.state(p)))
            return {p: s.to_json() for p, s in loaded.items()}, ttls, commands
        finally:
            await client.aclose()

    loaded, ttls, commands = asyncio.run(run())
    assert (
        loaded["p-known"]
        == ProfileState(reach=["email", "anonymous_id"], country="FR", applied_offset=3).to_json()
    )
    assert loaded["p-anon"] == ProfileState(reach=["anonymous_id"], applied_offset=4).to_json()
    assert ProfileState.from_json(loaded["p-gone"]).merged_into == "p-known"
    assert loaded["p-x"] == loaded["p-new"] == ProfileState().to_json()
    assert ttls["p-known"] == -1, "a known person's state does not expire"
    # an anonymous-only state lives the retention period plus the margin its graph keys may outlive it by
    anon_ttl = 7200 + retention_margin(7200)
    assert 7200 < ttls["p-anon"] <= anon_ttl and 0 < ttls["p-gone"] <= 3600, ttls
    assert ttls["p-x"] == -2, "deleted"
    assert 7200 < ttls["p-grows-anonymous"] <= anon_ttl and ttls["p-grows"] == -1, ttls
    # Redis counts the script's own SETs under "set": the client sent one command for the save
    assert commands == {"evalsha": 1, "mset": 0, "mget": 1, "get": 0}, commands

"""browse_abandoned through a real worker (local broker and Redis): the contract text, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import consume, json_values, running_worker

from streams.constants import DAY_MS, HOUR_MS
from streams.intake import ms_to_iso
from streams.replay import replay_file
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.testing import at

pytestmark = pytest.mark.stack


def _track(user: str, mid: str, ts: int, event: str, product: str) -> dict[str, object]:
    return {
        "type": "track",
        "event": event,
        "messageId": mid,
        "userId": user,
        "timestamp": ms_to_iso(ts),
        "properties": {"product_id": product},
        "context": {"channel": "web"},
    }


def test_a_worker_fires_once_per_product_and_a_product_added_cancels(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(clock="event", watermark_idle_timeout=2.0, rules=("browse_abandoned",))
    topics(s)
    t0 = at("2026-06-01T09:00:00Z")
    identify = {
        "type": "identify",
        "messageId": "bea-id",
        "userId": "bea",
        "timestamp": ms_to_iso(t0),
        "traits": {"email": "bea@example.com"},
        "context": {"channel": "web", "consent": {"categoryPreferences": {"marketing": True}}},
    }
    views = [
        # sku-1: three views within 24 h (the second delivered twice), no add: fires at t0 + 1 h + 24 h
        _track("bea", "v1", t0 + HOUR_MS, "Product Viewed", "sku-1"),
        _track("bea", "v2", t0 + 2 * HOUR_MS, "Product Viewed", "sku-1"),
        _track("bea", "v2", t0 + 2 * HOUR_MS, "Product Viewed", "sku-1"),
        _track("bea", "v3", t0 + 5 * HOUR_MS, "Product Viewed", "sku-1"),
        # sku-2: three views, but added to the cart within those 24 hours: nothing
        _track("bea", "w1", t0 + HOUR_MS, "Product Viewed", "sku-2"),
        _track("bea", "w2", t0 + 3 * HOUR_MS, "Product Viewed", "sku-2"),
        _track("bea", "w3", t0 + 4 * HOUR_MS, "Product Viewed", "sku-2"),
        _track("bea", "w-add", t0 + 6 * HOUR_MS, "Product Added", "sku-2"),
        # sku-3: one view delivered three times: nothing
        *[_track("bea", "x1", t0 + HOUR_MS, "Product Viewed", "sku-3") for _ in range(3)],
        # a later event of someone else moves the event clock past every window
        {"type": "page", "messageId": "tick", "anonymousId": "tick", "timestamp": ms_to_iso(t0 + 3 * DAY_MS)},
    ]
    journey = tmp_path / "browse.jsonl"
    journey.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in [identify, *views]))
    with running_worker(s, tmp_path / "worker.log") as proc:
        asyncio.run(replay_file(s, journey))
        msgs = consume(s, s.topic_activations, want=1, timeout=90, idle=5)  # then 5 s of nothing more
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    got = [(ce["id"], ce["type"], ce["time"], ce["data"]["context"]) for ce in json_values(msgs)]
    assert got == [
        (
            trigger_id("browse_abandoned", 1, "v1"),
            "cx.trigger.browse_abandoned",
            ms_to_iso(t0 + 25 * HOUR_MS),
            {"product_id": "sku-1", "view_count": 3, "first_viewed_at": t0 + HOUR_MS},
        )
    ]

"""A worker that starts behind a backlog on the raw topic runs both stages from the start.

faust's consumer hands the streams one ``getmany`` at a time and takes the next only when
every record of this one is in a stream's buffer. Unbounded, one ``getmany`` is all that the
consumer has fetched: the whole backlog, up to 4 MiB per partition. Once intake's buffer was
full, the records intake had repartitioned waited behind the rest of it: the decide stage had
nothing to do until intake had taken nearly all of the backlog, and the worker sat idle while
intake waited on Redis (issue 13).
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from helpers import fresh_settings, produce, running_worker

from streams.intake import ms_to_iso
from streams.kafka import create_topics
from streams.stack import LocalStack, free_port

pytestmark = pytest.mark.stack

EVENTS = 24_000
BATCH = 500


def batches(url: str) -> dict[str, float]:
    """The batches each stage has finished, from the worker's ``/metrics``."""
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    found = re.findall(r'^cxstream_batch_size_count\{stage="(\w+)"\} (\S+)$', text, re.M)
    return {stage: float(n) for stage, n in found}


def test_decide_starts_while_intake_still_has_most_of_a_backlog(stack: LocalStack, tmp_path: Path) -> None:
    port = free_port()
    settings = fresh_settings(stack, metrics_port=port, batch_size=BATCH, clock="event")
    asyncio.run(create_topics(settings))
    t0 = 1767600000000
    produce(
        settings,
        settings.topic_raw,
        [
            (
                f"a{i % 2000}".encode(),
                orjson.dumps(
                    {
                        "type": "page",
                        "name": "Home",
                        "messageId": f"m{i}",
                        "anonymousId": f"a{i % 2000}",
                        "timestamp": ms_to_iso(t0 + i * 1000),
                        "context": {"channel": "web"},
                    }
                ),
            )
            for i in range(EVENTS)
        ],
    )
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "worker.log"
    with running_worker(settings, log) as proc:
        deadline = time.monotonic() + 120
        seen: dict[str, float] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                seen = batches(url)
            except OSError:
                time.sleep(0.2)
                continue
            if seen.get("decide", 0) > 0:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"no decide batch in 120 s: {seen}\n{log.read_text()[-3000:]}")
    intake = seen.get("intake", 0)
    # The backlog is 48 intake batches, and intake's buffer holds 16. Unbounded, decide began
    # after ~33 of them (all but a full buffer); now after the few that a fetch of the
    # repartition topic and decide's first batch take (~5 here).
    print(f"\nfirst decide batch after {intake:.0f} of {EVENTS // BATCH} intake batches")
    assert intake <= EVENTS // BATCH // 4, (
        f"decide waited for {intake:.0f} of {EVENTS // BATCH} intake batches"
    )

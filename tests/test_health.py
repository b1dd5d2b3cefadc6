"""The health endpoints alone (no broker, no Redis), and the pieces of a graceful shutdown."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from streams import app as app_module
from streams.exceptions import ConfigError
from streams.health import EXIT_SHUTDOWN_TIMEOUT, Health, beat_forever, probe_redis_forever, serve
from streams.settings import load_settings


@dataclass
class FakeOutage:
    waiting: int = 0
    since: float = 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outages() -> tuple[FakeOutage, FakeOutage]:
    return FakeOutage(), FakeOutage()


@pytest.fixture
def health(clock: Clock, outages: tuple[FakeOutage, FakeOutage]) -> Health:
    return Health(stale_after=10, redis_outage=outages[0], kafka_outage=outages[1], clock=clock)


@pytest.fixture
def url(health: Health) -> Iterator[str]:
    server = serve(0, health, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    try:
        with urlopen(Request(url, headers=headers or {}), timeout=5) as resp:
            code, body, got = resp.status, resp.read(), dict(resp.headers)
    except HTTPError as err:
        code, body, got = err.code, err.read(), dict(err.headers)
    if got.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return code, body.decode(), got


def test_healthz_is_200_while_the_loop_beats_and_503_once_the_beat_is_stale(
    url: str, health: Health, clock: Clock
) -> None:
    assert get(url + "/healthz")[:2] == (200, "starting\n")  # start-up checks: alive, not judged yet
    health.beat(assigned=4)
    assert get(url + "/healthz")[:2] == (200, "ok\n")
    clock.now += 9
    assert get(url + "/healthz")[0] == 200
    clock.now += 3
    code, body, headers = get(url + "/healthz")
    assert (code, body) == (503, "event loop stalled: no heartbeat for 12s\n")
    assert headers["Content-Type"].startswith("text/plain")
    assert get(url + "/readyz")[:2] == (503, "event loop stalled: no heartbeat for 12s\n")
    health.beat(assigned=4)
    assert get(url + "/healthz")[0] == 200


def test_readyz_needs_an_assignment_and_redis_and_kafka_answering_and_says_why_not(
    url: str, health: Health, clock: Clock, outages: tuple[FakeOutage, FakeOutage]
) -> None:
    redis_calls, kafka = outages
    assert get(url + "/readyz")[:2] == (503, "starting\n")
    health.beat(assigned=0)
    assert get(url + "/readyz")[:2] == (503, "no partitions assigned\n")
    health.beat(assigned=3)
    assert get(url + "/readyz")[:2] == (200, "ok\n")

    health.redis_failed("ConnectionError")
    clock.now += 12
    health.redis_failed("TimeoutError")  # still down: the outage began at the first failure
    health.beat(assigned=3)
    assert get(url + "/readyz")[:2] == (503, "redis: outage for 12s (TimeoutError)\n")
    health.redis_answered()
    assert get(url + "/readyz")[0] == 200

    redis_calls.waiting, redis_calls.since = 1, clock.now - 5  # the stores' calls are waiting one out
    assert get(url + "/readyz")[:2] == (503, "redis: outage for 5s (calls retrying)\n")
    redis_calls.waiting = 0
    kafka.waiting, kafka.since = 2, clock.now - 7
    assert get(url + "/readyz")[:2] == (503, "kafka: produce failing for 7s\n")
    kafka.waiting = 0
    assert get(url + "/readyz")[:2] == (200, "ok\n")

    health.draining = True
    with health.batch():
        assert get(url + "/readyz")[:2] == (503, "shutting down (1 batch in hand)\n")
    assert get(url + "/readyz")[:2] == (503, "shutting down (0 batches in hand)\n")
    assert get(url + "/healthz")[:2] == (200, "ok\n")  # alive while it drains


def test_metrics_are_served_as_before_and_other_paths_are_404(url: str) -> None:
    from streams import metrics

    metrics.DUPLICATES.inc(0)
    code, body, headers = get(url + "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE cxstream_duplicates_total counter" in body and "cxstream_redis_outage" in body
    code, body, headers = get(url + "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert code == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")
    code, zipped, headers = get(url + "/metrics", {"Accept-Encoding": "gzip"})
    assert code == 200 and headers["Content-Encoding"] == "gzip" and "cxstream_redis_outage" in zipped
    assert get(url + "/")[0] == 404 and get(url + "/healthz/x")[0] == 404


def test_a_stuck_event_loop_is_seen_from_the_server_thread() -> None:
    """The loop beats; the server, in its own thread, sees the beats stop while the loop is blocked."""
    health = Health(stale_after=0.5)
    server = serve(0, health, addr="127.0.0.1")
    url = f"http://127.0.0.1:{server.server_port}/healthz"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    beats = asyncio.run_coroutine_threadsafe(beat_forever(health, lambda: 1, every=0.05), loop)
    try:
        time.sleep(0.3)
        assert get(url)[:2] == (200, "ok\n")
        loop.call_soon_threadsafe(time.sleep, 2.0)  # a blocking call in the loop
        time.sleep(1.0)
        code, body, _ = get(url)
        assert code == 503 and body.startswith("event loop stalled: no heartbeat for")
        time.sleep(1.5)
        assert get(url)[0] == 200  # beats again
    finally:
        beats.cancel()
        # let the loop run the cancellation before it stops: a task left pending is destroyed
        # with the loop, and the warning lands in whichever test the garbage collector runs in
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        server.shutdown()
        server.server_close()


def test_the_redis_probe_records_errors_and_slow_pings_by_type_only() -> None:
    class Client:
        def __init__(self) -> None:
            self.mode = "down"

        async def ping(self) -> bool:
            if self.mode == "down":
                raise ConnectionError("Error 111 connecting to redis://:secret@10.0.0.1:6379")
            if self.mode == "slow":
                await asyncio.sleep(10)
            return True

    async def scenario() -> list[str | None]:
        health, client = Health(), Client()
        seen: list[str | None] = []
        task = asyncio.create_task(probe_redis_forever(health, client, every=0.02, limit=0.05))
        for mode in ("down", "slow", "up"):
            client.mode = mode
            await asyncio.sleep(0.2)
            seen.append(health.redis_error)
        task.cancel()
        return seen

    assert asyncio.run(scenario()) == ["ConnectionError", "TimeoutError", None]


def test_a_batch_in_hand_runs_to_its_end_when_the_agent_is_cancelled() -> None:
    """faust stops an agent by cancelling it and then commits the batch in hand: it must be done."""
    done: list[str] = []

    async def batch() -> None:
        await asyncio.sleep(0.3)
        done.append("produced")

    async def agent() -> None:
        await app_module._finish("intake", batch)
        done.append("next batch")  # not reached: the cancellation goes on after the batch

    async def scenario() -> None:
        task = asyncio.create_task(agent())
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        task.cancel()  # cancelled again: still finishes
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert done == ["produced"]


def test_the_shutdown_watchdog_exits_non_zero_and_a_second_signal_exits_at_once() -> None:
    timed_out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time; from streams.health import Shutdown; Shutdown(0.2).arm(); time.sleep(10)",
        ],
        capture_output=True,
        timeout=20,
    )
    assert timed_out.returncode == EXIT_SHUTDOWN_TIMEOUT
    second = subprocess.run(
        [
            sys.executable,
            "-c",
            "import signal, time; from streams.health import Shutdown; s = Shutdown(30)\n"
            "assert s.begin(signal.SIGTERM) and not s.begin(signal.SIGINT)\n"
            "s.abort(signal.SIGINT)",
        ],
        capture_output=True,
        timeout=20,
    )
    assert second.returncode == 130, second.stderr


def test_the_shutdown_timeout_is_checked_at_start() -> None:
    assert load_settings().shutdown_timeout == 30
    assert load_settings(shutdown_timeout=2.5).shutdown_timeout == 2.5
    with pytest.raises(ConfigError, match="CXSTREAM_SHUTDOWN_TIMEOUT"):
        load_settings(shutdown_timeout=0)

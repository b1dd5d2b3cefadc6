"""A worker's health endpoints and its graceful shutdown (contract, section 10).

Endpoints, on ``CXSTREAM_METRICS_PORT``, served by :func:`serve` from a thread of their own
(so a stuck event loop cannot stop them from answering):

* ``/metrics``: the Prometheus text, as ``prometheus_client`` renders it;
* ``/healthz``: 200 while the process and its event loop are alive: the loop beats
  (:func:`beat_forever`) every :data:`HEARTBEAT_EVERY` second; 503 ``event loop stalled ...``
  once the last beat is older than :data:`STALE_AFTER`. 200 ``starting`` before the worker's
  loop runs (start-up checks, waiting for Redis: an outage, not a reason to be restarted);
* ``/readyz``: 200 once the worker holds a partition assignment and both Kafka and Redis
  answer; else 503 with a one-line reason (:meth:`Health.ready`).

Bodies are one line: a state and numbers, never a URL, a key or an event.

Shutdown (:class:`Shutdown`): the first ``SIGTERM``/``SIGINT`` starts faust's stop and a
watchdog thread; the batch in hand is finished (``streams.app._finish``), produced and
committed, the consumer leaves its group, and the process exits 0. If that takes longer
than ``CXSTREAM_SHUTDOWN_TIMEOUT``, the watchdog ends the process with
:data:`EXIT_SHUTDOWN_TIMEOUT`; a second signal ends it at once with ``128 + signal``. Both
without committing anything more: the next owner of the partitions redoes the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, Protocol
from urllib.parse import urlsplit

from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from streams.exceptions import exit_now

log = logging.getLogger(__name__)

#: seconds between two heartbeats of the event loop
HEARTBEAT_EVERY = 1.0
#: seconds without a heartbeat after which ``/healthz`` says the loop is stuck
STALE_AFTER = 15.0
#: seconds between two Redis pings, and the most one may take
PROBE_EVERY, PROBE_TIMEOUT = 2.0, 2.0
#: exit status when the shutdown did not finish in time (``EX_TEMPFAIL``: the batch is redone)
EXIT_SHUTDOWN_TIMEOUT = 75


class Waiting(Protocol):
    """What :class:`streams.redis_io.Outage` shows: calls waiting out an outage, since when."""

    waiting: int
    since: float


class Health:
    """What the endpoints report. Written by the event loop (and the signal handler), read by
    the HTTP threads: plain numbers and strings, each written in one assignment."""

    def __init__(
        self,
        *,
        stale_after: float = STALE_AFTER,
        redis_outage: Waiting | None = None,
        kafka_outage: Waiting | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self._redis_outage = redis_outage
        self._kafka_outage = kafka_outage
        #: monotonic time of the loop's last heartbeat; None until the worker's loop runs
        self.last_beat: float | None = None
        #: partitions (of every topic) assigned to this worker at the last heartbeat
        self.assigned = 0
        #: type name of the error of the failing Redis pings, None while Redis answers
        self.redis_error: str | None = None
        self.redis_since = 0.0
        #: batches being processed now
        self.in_hand = 0
        #: a stop signal was received: not ready any more
        self.draining = False

    # ------------------------------------------------------------------ written by the loop
    def beat(self, assigned: int) -> None:
        self.assigned = assigned
        self.last_beat = self.clock()

    def redis_answered(self) -> None:
        self.redis_error = None

    def redis_failed(self, error: str) -> None:
        if self.redis_error is None:
            self.redis_since = self.clock()
        self.redis_error = error

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Around a batch in hand."""
        self.in_hand += 1
        try:
            yield
        finally:
            self.in_hand -= 1

    # ------------------------------------------------------------------ read by the endpoints
    def live(self) -> tuple[bool, str]:
        if self.last_beat is None:
            return True, "starting"
        age = self.clock() - self.last_beat
        if age > self.stale_after:
            return False, f"event loop stalled: no heartbeat for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.draining:
            n = self.in_hand
            return False, f"shutting down ({n} batch{'es' if n != 1 else ''} in hand)"
        alive, why = self.live()
        if not alive:
            return False, why
        if self.last_beat is None:
            return False, "starting"
        now = self.clock()
        if self.redis_error is not None:
            return False, f"redis: outage for {now - self.redis_since:.0f}s ({self.redis_error})"
        redis_outage, kafka_outage = self._outages()
        if redis_outage.waiting > 0:
            return False, f"redis: outage for {now - redis_outage.since:.0f}s (calls retrying)"
        if kafka_outage.waiting > 0:
            return False, f"kafka: produce failing for {now - kafka_outage.since:.0f}s"
        if self.assigned == 0:
            return False, "no partitions assigned"
        return True, "ok"

    def _outages(self) -> tuple[Waiting, Waiting]:
        if self._redis_outage is None or self._kafka_outage is None:
            from streams import kafka, redis_io

            self._redis_outage = self._redis_outage or redis_io.OUTAGE
            self._kafka_outage = self._kafka_outage or kafka.OUTAGE
        return self._redis_outage, self._kafka_outage


#: the worker's one instance (``streams.app`` marks batches in hand on it)
HEALTH = Health()


# ---------------------------------------------------------------------- the event loop's side
async def beat_forever(health: Health, assigned: Callable[[], int], every: float = HEARTBEAT_EVERY) -> None:
    """Beat every ``every`` seconds, with the size of the assignment. Never raises."""
    while True:
        try:
            n = assigned()
        except Exception:  # the consumer is not started yet
            n = 0
        health.beat(n)
        await asyncio.sleep(every)


async def probe_redis_forever(
    health: Health, client: Any, every: float = PROBE_EVERY, limit: float = PROBE_TIMEOUT
) -> None:
    """PING ``client`` (the stores' client) every ``every`` seconds. Never raises."""
    while True:
        try:
            await asyncio.wait_for(client.ping(), limit)
        except Exception as exc:
            health.redis_failed(type(exc).__name__)
        else:
            health.redis_answered()
        await asyncio.sleep(every)


# ---------------------------------------------------------------------- the HTTP server
class _Handler(BaseHTTPRequestHandler):
    health: Health
    registry: Collector
    server_version = "cxstream"
    sys_version = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._state(*self.health.live())
        elif path == "/readyz":
            self._state(*self.health.ready())
        else:
            self._send(404, b"not found: /metrics, /healthz, /readyz\n")

    def _state(self, ok: bool, why: str) -> None:
        self._send(200 if ok else 503, why.encode() + b"\n")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        try:
            body = encoder(self.registry)
        except Exception as exc:  # a collector's bug: say so, keep serving
            log.exception("rendering /metrics failed")
            self._send(500, f"metrics failed ({type(exc).__name__})\n".encode())
            return
        encoding = None
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body, encoding = gzip.compress(body), "gzip"
        self._send(200, body, content_type, encoding)

    def _send(
        self,
        code: int,
        body: bytes,
        content_type: str = "text/plain; charset=utf-8",
        encoding: str | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes every few seconds: no access log


def serve(
    port: int, health: Health = HEALTH, *, addr: str = "0.0.0.0", registry: Collector = REGISTRY
) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``addr:port`` from a daemon thread.
    ``port`` 0 takes a free one (``server.server_port``). ``server.shutdown()`` stops it."""
    handler = type("Handler", (_Handler,), {"health": health, "registry": registry})
    server = ThreadingHTTPServer((addr, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="cxstream-http", daemon=True).start()
    return server


# ---------------------------------------------------------------------- shutdown
class Shutdown:
    """The first stop signal: not ready any more, and a watchdog that ends the process with
    :data:`EXIT_SHUTDOWN_TIMEOUT` if the stop takes longer than ``timeout`` seconds. A thread,
    not a loop timer: it fires even if the loop is stuck. The second signal: :meth:`abort`."""

    def __init__(self, timeout: float, health: Health = HEALTH) -> None:
        self.timeout = timeout
        self.health = health
        self.signal: str | None = None
        self.started_at: float | None = None
        self._watchdog: threading.Timer | None = None

    def begin(self, sig: int) -> bool:
        """A stop signal. True for the first (stop gracefully); False if one came before."""
        if self.signal is not None:
            return False
        self.signal = signal.Signals(sig).name
        self.health.draining = True
        log.warning(
            "%s: finishing the batch in hand (%d), committing, leaving the group; "
            "at most %gs (CXSTREAM_SHUTDOWN_TIMEOUT), a second signal exits at once",
            self.signal,
            self.health.in_hand,
            self.timeout,
        )
        self.arm()
        return True

    def arm(self) -> None:
        """Start the watchdog (once): on a signal, and on any other way faust stops."""
        if self._watchdog is not None:
            return
        self.started_at = time.monotonic()
        self._watchdog = threading.Timer(self.timeout, self._expired)
        self._watchdog.daemon = True
        self._watchdog.name = "cxstream-shutdown-watchdog"
        self._watchdog.start()

    def disarm(self) -> None:
        """The stop is over (faust returned): the watchdog must not fire during interpreter exit."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at is not None else 0.0

    def _expired(self) -> None:
        exit_now(
            EXIT_SHUTDOWN_TIMEOUT,
            "shutdown did not finish within %gs (CXSTREAM_SHUTDOWN_TIMEOUT, %d batch(es) in hand); "
            "exiting without committing more: the next owner redoes the batch",
            self.timeout,
            self.health.in_hand,
        )

    def abort(self, sig: int) -> NoReturn:
        """A second signal: exit at once with ``128 + sig`` (143 for SIGTERM, 130 for SIGINT)."""
        exit_now(
            128 + sig,
            "%s again: exiting at once, without committing the batch in hand (it is redone)",
            signal.Signals(sig).name,
        )

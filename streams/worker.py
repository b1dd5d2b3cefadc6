"""``cxstream worker``: one faust worker of the consumer group, with its metrics endpoint.

Start-up checks, cheapest first, each failing with one line (a :class:`CxStreamError`, which
``cxstream`` prints before exiting with 2): the settings (already validated by
``load_settings``), the policy file, the rules (and the segments file), all before any
network call; then Redis once: a wrong password, database or ACL stops start-up
(:class:`FatalError`), an unreachable Redis is waited for (logged once, an outage, not a
crash loop); then the topics.

The metrics port serves ``/healthz`` and ``/readyz`` too, and a stop signal finishes the batch
in hand, commits it, leaves the group and exits 0 within ``CXSTREAM_SHUTDOWN_TIMEOUT``
(:mod:`streams.health`; the faust side in :class:`_Worker`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from typing import TYPE_CHECKING, Any

from streams.exceptions import CxStreamError
from streams.settings import Settings

if TYPE_CHECKING:
    from faust.worker import Worker

    from streams.health import Shutdown
    from streams.runtime import Runtime

log = logging.getLogger(__name__)


def preflight(settings: Settings) -> None:
    """What can be checked without the network: the policy and the rules (segments included)."""
    from streams.consent.policy import load_policy
    from streams.engine import registry
    from streams.runtime import count_from_zero

    count_from_zero(load_policy(settings.policy_file))  # before the metrics endpoint serves
    registry.load(settings.rules, settings=settings)


def run_worker(settings: Settings) -> None:
    from prometheus_client import disable_created_metrics

    from streams import health, redis_io
    from streams.app import build_app
    from streams.cli import setup_logging
    from streams.kafka import create_topics

    setup_logging(settings.log_level)
    fast_loop()
    signal.signal(signal.SIGTERM, _stop_before_start)  # until faust's worker takes the signals over
    preflight(settings)
    if settings.metrics_port:  # first, so cxstream_redis_outage shows while Redis is waited for
        # the *_created series double every counter's, and Prometheus ignores them (untyped in the library)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        health.serve(settings.metrics_port, addr="0.0.0.0")
        log.info("metrics on http://0.0.0.0:%d/metrics (and /healthz, /readyz)", settings.metrics_port)
    asyncio.run(
        redis_io.check(
            settings.redis_url.get_secret_value(), settings.redis_prefix, cluster=settings.redis_cluster
        )
    )
    try:
        created = asyncio.run(create_topics(settings))
        if created:
            log.info("created topics %s", ", ".join(created))
    except Exception as exc:  # e.g. no CreateTopics ACL on a managed cluster: the topics may exist
        if isinstance(exc, CxStreamError):
            raise
        log.warning("could not create topics (%s); assuming they exist", exc)
    app, runtime = build_app(settings)
    quiet_gc()
    log.info(
        "worker %s: %s partitions, clock=%s, rules=%s",
        settings.app_id,
        settings.partitions,
        settings.clock,
        ",".join(settings.rules),
    )
    from streams.logs import dict_config

    shutdown = health.Shutdown(settings.shutdown_timeout)
    worker = _worker_class()(
        app,
        runtime=runtime,
        shutdown=shutdown,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=dict_config(settings.log_level),  # faust's own lines as JSON too
    )
    try:
        worker.execute_from_commandline()  # raises SystemExit: 0 after a stop, 1 after a crash
    except SystemExit as exc:
        shutdown.disarm()
        if shutdown.signal:
            log.warning("%s: stopped in %.1fs (exit %s)", shutdown.signal, shutdown.elapsed(), exc.code)
        raise


def fast_loop() -> None:
    """Called first by :func:`run_worker`, before any event loop exists: every loop of the
    worker (faust's, its consumer thread's, the start-up checks') is a uvloop loop, through
    mode's documented ``mode.loop.use``. The loop's own scheduling and socket calls were a
    tenth of a worker's CPU on asyncio's (issue 13). Without uvloop installed: asyncio's."""
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:  # pragma: no cover (uvloop is a dependency; a platform without its wheel)
        log.warning("uvloop is not installed: running on asyncio's event loop")


#: the cyclic collector's thresholds while the worker runs (Python's default: 700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 20)


def quiet_gc() -> None:
    """Called once, after the app is built: what start-up made (modules, rules, the app, ~all
    long-lived) goes to the collector's permanent generation, and the young generation is
    collected every 50,000 net allocations instead of 700. A batch makes hundreds of
    thousands of short-lived objects that reference counting frees; the cyclic collector
    mostly walked the long-lived heap again and again (issue 13: -19% CPU on the stages).
    Cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _stop_before_start(signum: int, _frame: object) -> None:
    """SIGTERM during the start-up checks (e.g. while Redis is waited for): nothing is consumed
    yet, so exit 0 at once."""
    log.warning("%s before the worker started: nothing consumed yet, exiting", signal.Signals(signum).name)
    raise SystemExit(0)


def _worker_class() -> type[Worker]:
    """faust's worker, with our stop signals and the health tasks. (faust is imported late:
    ``cxstream`` and the start-up checks do not need it.)"""
    from faust.worker import Worker

    from streams import health

    class _Worker(Worker):
        """faust's ``Worker`` (mode's, underneath) on ``SIGTERM``/``SIGINT``: the first signal
        stops the worker (``Service.stop``: the fetcher, then the agents, each finishing its
        batch in hand, then the consumer, which commits and leaves the group); mode ignores a
        second one, we exit at once (:meth:`streams.health.Shutdown.abort`)."""

        def __init__(self, app: Any, *, runtime: Runtime, shutdown: Shutdown, **kwargs: Any) -> None:
            super().__init__(app, **kwargs)
            self._cx_runtime = runtime
            self._cx_shutdown = shutdown

        async def on_first_start(self) -> None:
            await super().on_first_start()  # installs the signal handlers: ours, below
            self.add_future(health.beat_forever(health.HEALTH, self._cx_assigned))
            client = getattr(self._cx_runtime.stores.states, "client", None)  # in-memory stores: none
            if client is not None:
                self.add_future(health.probe_redis_forever(health.HEALTH, client))

        def _cx_assigned(self) -> int:
            return len(self.app.consumer.assignment())

        def _on_sigterm(self) -> None:
            if not self._cx_shutdown.begin(signal.SIGTERM):
                self._cx_shutdown.abort(signal.SIGTERM)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            if not self._cx_shutdown.begin(signal.SIGINT):
                self._cx_shutdown.abort(signal.SIGINT)
            super()._on_sigint()

        def on_worker_shutdown(self) -> None:
            self._cx_shutdown.arm()  # a stop without a signal (a crash) is bounded too
            super().on_worker_shutdown()

    return _Worker

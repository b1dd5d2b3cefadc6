"""``cxstream worker``: one faust worker of the consumer group, with its metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    from faust.worker import Worker
    from prometheus_client import start_http_server

    from streams.app import build_app
    from streams.cli import setup_logging
    from streams.kafka import create_topics

    setup_logging(settings.log_level)
    try:
        created = asyncio.run(create_topics(settings))
        if created:
            log.info("created topics %s", ", ".join(created))
    except Exception as exc:  # e.g. no CreateTopics ACL on a managed cluster: the topics may exist
        from streams.exceptions import ConfigError

        if isinstance(exc, ConfigError):
            raise
        log.warning("could not create topics (%s); assuming they exist", exc)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="0.0.0.0")
        log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    app, _runtime = build_app(settings)
    log.info(
        "worker %s: %s partitions, clock=%s, rules=%s",
        settings.app_id,
        settings.partitions,
        settings.clock,
        ",".join(settings.rules),
    )
    Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False).execute_from_commandline()

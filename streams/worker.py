"""``cxstream worker``: one faust worker of the consumer group, with its metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

from streams.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    from faust.worker import Worker
    from prometheus_client import disable_created_metrics, start_http_server

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
        # the *_created series double every counter's, and Prometheus ignores them (untyped in the library)
        disable_created_metrics()  # type: ignore[no-untyped-call]
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
    from streams.logs import dict_config

    Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=dict_config(settings.log_level),  # faust's own lines as JSON too
    ).execute_from_commandline()

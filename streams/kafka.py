"""Kafka plumbing shared by the worker, the CLI and tests: connection options, topics, produce."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams import metrics
from streams.settings import Settings

log = logging.getLogger(__name__)


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap, TLS and SASL."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        ctx = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            ctx.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
        opts["ssl_context"] = ctx
    if settings.kafka_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        opts["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        )
    return opts


def topic_names(settings: Settings) -> list[str]:
    """Every topic the app reads or writes, internal ones included."""
    return [
        settings.topic_raw,
        settings.topic_profiled,
        settings.topic_deadletter,
        settings.topic_activations,
        settings.topic_decisions,
        settings.topic_identity_changes,
    ]


async def create_topics(settings: Settings, replication: int = 1, wait: float = 30.0) -> list[str]:
    """Create the app's topics with ``settings.partitions`` partitions; existing ones are kept.

    Returns the names created. Raises if an existing topic has a different partition count:
    the repartition by profile would silently split profiles otherwise.
    """
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(wait * 1000))
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            await admin.start()
            break
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("waiting for Kafka at %s (%s)", settings.kafka_bootstrap, exc)
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        wanted = topic_names(settings)
        new = [NewTopic(t, settings.partitions, replication) for t in wanted if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # a peer worker made it first
                await admin.create_topics(new)
        described = await admin.describe_topics(wanted)
        for d in described:
            n = len(d.get("partitions", []))
            if n and n != settings.partitions:
                from streams.exceptions import ConfigError

                raise ConfigError(
                    f"CXSTREAM_PARTITIONS={settings.partitions} but topic {d['topic']} has {n} partitions; "
                    "set CXSTREAM_PARTITIONS to match or use new topic names"
                )
        return [t.name for t in new]
    finally:
        await admin.close()


async def send_all(producer: Any, records: Sequence[Any]) -> None:
    """Send records in order through a faust producer and wait for every ack.

    A failed send is retried (same record, same partition) until the broker takes it:
    a broker outage slows the worker down, it does not lose output.
    """
    pending = list(records)
    delay = 0.1
    while pending:
        futs = []
        for r in pending:
            futs.append(await producer.send(r.topic, r.key, r.value, r.partition, None, r.headers or None))
        results = await asyncio.gather(*futs, return_exceptions=True)
        failed = [r for r, res in zip(pending, results, strict=True) if isinstance(res, BaseException)]
        if failed:
            metrics.KAFKA_ERRORS.inc(len(failed))
            first = next(res for res in results if isinstance(res, BaseException))
            log.warning(
                "%d of %d sends failed (%s); retrying in %.1fs", len(failed), len(pending), first, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        pending = failed

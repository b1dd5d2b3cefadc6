"""Kafka plumbing shared by the worker, the CLI and tests: connection options, topics, produce."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError, TopicAlreadyExistsError

from streams import metrics
from streams.exceptions import FatalError
from streams.pipeline.records import OutRecord
from streams.redis_io import Kind, Outage
from streams.settings import Settings

log = logging.getLogger(__name__)

#: The broker refuses who we are (authentication) ...
_AUTHN: tuple[type[BaseException], ...] = (
    kerr.SaslAuthenticationFailed,
    kerr.IllegalSaslStateError,
    kerr.UnsupportedSaslMechanismError,
    kerr.AuthenticationFailedError,
    kerr.AuthenticationMethodNotSupported,
)
#: ... or what we may do (ACLs), or a name it can never accept: waiting will not help.
_AUTHZ: tuple[type[BaseException], ...] = (
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.TransactionalIdAuthorizationFailed,
    kerr.DelegationTokenAuthorizationFailed,
    kerr.InvalidTopicError,
)

OUTAGE = Outage("kafka", metrics.KAFKA_OUTAGE, log)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (faust's ``ProducerSendError`` wraps the aiokafka error)."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def classify(exc: BaseException) -> Kind:
    """``config`` for an authentication or authorization refusal (raise :class:`FatalError`);
    anything else is an ``outage``: resent with backoff, never acked past. (Size refusals are
    outages too, that :func:`send_all` answers by cutting the record.)"""
    return "config" if any(isinstance(e, _AUTHN + _AUTHZ) for e in _chain(exc)) else "outage"


def describe(exc: BaseException) -> str:
    """One line for a ``config`` refusal: what is wrong and the fix (no secret)."""
    err = next((e for e in _chain(exc) if isinstance(e, _AUTHN + _AUTHZ)), exc)
    said = " ".join(str(err).split())[:200]
    if isinstance(err, _AUTHN):
        return (
            f"Kafka refused our credentials ({said}); fix CXSTREAM_KAFKA_SASL_MECHANISM, "
            "CXSTREAM_KAFKA_SASL_USERNAME and CXSTREAM_KAFKA_SASL_PASSWORD"
        )
    if isinstance(err, kerr.InvalidTopicError):
        return f"Kafka refuses a topic name ({said}); fix the CXSTREAM_TOPIC_* settings"
    if isinstance(err, kerr.GroupAuthorizationFailedError):
        return (
            f"Kafka denies our principal the consumer group ({said}); grant it Read on group CXSTREAM_APP_ID"
        )
    if isinstance(err, kerr.TopicAuthorizationFailedError):
        return (
            f"Kafka denies our principal a topic ({said}); grant it Read/Write/Describe on the app's topics"
        )
    return f"Kafka denies our principal an operation ({said}); grant it in the cluster's ACLs"


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
        settings.topic_conversions,
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


#: Room left for key, headers and batch framing when a record must be cut to fit.
_FRAMING = 16 * 1024


def fit(record: OutRecord, limit: int) -> OutRecord:
    """A record the broker can take: the value cut to fit, with its original length and hash.

    Used only for a record that can never be sent whole (the broker or producer refuses its
    size for good): better its first bytes with a fingerprint than a partition stuck forever.
    """
    keep = max(0, limit - _FRAMING - len(record.key or b""))
    if any(k == "cx-truncated-from" for k, _ in record.headers):
        headers = list(record.headers)  # cut again: the fingerprint of the original stays
    else:
        headers = [
            *record.headers,
            ("cx-truncated-from", str(len(record.value)).encode()),
            ("cx-value-sha256", hashlib.sha256(record.value).hexdigest().encode()),
        ]
    return OutRecord(record.topic, record.key, record.value[:keep], record.partition, headers)


async def send_all(producer: Any, records: Sequence[OutRecord], max_bytes: int = 1_000_000) -> None:
    """Send records in order through a faust producer and wait for every ack.

    A failed send is retried until the broker takes it: a broker outage slows the worker
    down, it does not lose output (``cxstream_kafka_errors_total`` counts failed sends,
    ``cxstream_kafka_outage`` is 1 meanwhile; one log line when it starts, one when it ends).
    Order is kept: after a failure, everything from the
    first failed record on is sent again (a record may arrive twice; every consumer of ours
    is idempotent, and triggers keep their ids). A send refused at once counts as failed
    too (it must not escape: faust would stop the agent). A record too large to ever be
    sent is cut to ``max_bytes`` (see :func:`fit`), before sending or when refused.
    An authentication or authorization refusal (:func:`classify`) raises :class:`FatalError`
    instead: the caller must stop without committing (``streams.exceptions.fatal``).
    """
    pending = [fit(r, max_bytes) if _size(r) > max_bytes - _FRAMING else r for r in records]
    delay = 0.1
    waiting = False
    try:
        while pending:
            results: list[Any] = []
            for r in pending:
                try:
                    results.append(
                        await producer.send(r.topic, r.key, r.value, r.partition, None, r.headers or None)
                    )
                except Exception as exc:
                    results.append(_failed(exc))
            outcomes = await asyncio.gather(*results, return_exceptions=True)
            failed = [(i, res) for i, res in enumerate(outcomes) if isinstance(res, BaseException)]
            if not failed:
                pending = []
                break
            for i, res in failed:
                if classify(res) == "config":
                    raise FatalError(f"kafka send to {pending[i].topic}: {describe(res)}") from res
            first, error = failed[0]
            metrics.KAFKA_ERRORS.inc(len(failed))
            pending = pending[first:]
            if _too_large(error):
                log.error("record for %s is over the broker's size limit; sending it cut", pending[0].topic)
                pending[0] = fit(pending[0], min(max_bytes, len(pending[0].value) // 2 + _FRAMING))
            elif not waiting:
                waiting = True
                OUTAGE.begin("send", error)
            log.debug("send failed (%s); resending %d records in %.1fs", error, len(pending), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    finally:
        if waiting:
            OUTAGE.end(not pending)


def _size(r: OutRecord) -> int:
    return len(r.value) + len(r.key or b"") + sum(len(k) + len(v) for k, v in r.headers)


def _too_large(res: object) -> bool:
    """A size refusal, from aiokafka directly or wrapped by faust (``ProducerSendError``)."""
    while isinstance(res, BaseException):
        if isinstance(res, MessageSizeTooLargeError | RecordTooLargeError):
            return True
        res = res.__cause__
    return False


async def _failed(exc: BaseException) -> None:
    raise exc

"""The faust app: wiring only. Agents batch, call the stages, produce, and commit.

Two agents, one process each (``concurrency=1``: faust's ``concurrency > 1`` can commit
offsets past unprocessed messages):

* ``intake`` on ``cx.events.raw`` -> :class:`streams.pipeline.intake_stage.IntakeStage`
* ``decide`` on ``<app_id>-profiled`` -> :class:`streams.pipeline.decide_stage.DecideStage`

and a timer task that fires due durable timers of the partitions this worker owns.
faust acks a ``take_events`` batch when the loop body returns, even if it raised; so
the body never raises: input errors are dead letters and Redis/Kafka outages are
retried inside the stages until they pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import faust

from streams import metrics
from streams.kafka import client_options, send_all
from streams.logs import bind_batch
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores
from streams.settings import Settings

log = logging.getLogger(__name__)

#: seconds between consumer-lag measurements (one position lookup per assigned partition)
LAG_INTERVAL = 2.0


def _credentials(settings: Settings) -> Any:
    opts = client_options(settings)
    proto = settings.kafka_security_protocol
    if proto == "PLAINTEXT":
        return None
    if proto == "SSL":
        return faust.SSLCredentials(opts["ssl_context"])
    return faust.SASLCredentials(
        username=opts["sasl_plain_username"],
        password=opts["sasl_plain_password"],
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=opts.get("ssl_context"),
    )


def _records(events: Sequence[Any]) -> list[InRecord]:
    out = []
    for e in events:
        m = e.message
        ts = m.timestamp
        out.append(InRecord(m.topic, m.partition, m.offset, m.key, m.value, int(ts * 1000) if ts else None))
    return out


def build_app(settings: Settings, stores: Stores | None = None) -> tuple[faust.App, Runtime]:
    runtime = Runtime(settings, stores or Stores.redis(settings))
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # `cxstream topics create` makes them, with the right partition count
        topic_disable_leader=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_commit_every=settings.batch_size,
        broker_commit_interval=1.0,
        producer_acks=-1,
        producer_max_request_size=settings.kafka_max_request_size,
        broker_session_timeout=settings.kafka_session_timeout,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        producer_linger_ms=5,
        stream_wait_empty=False,
        datadir=f"/tmp/cxstream-{settings.app_id}",
    )
    raw = app.topic(settings.topic_raw, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    profiled = app.topic(
        settings.topic_profiled, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )

    async def produce(records: Sequence[OutRecord]) -> None:
        await send_all(app.producer, records, settings.kafka_max_request_size)

    lag = metrics.Lag()

    @app.agent(raw, name="intake", concurrency=1)
    async def intake(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within):
            start = time.perf_counter()
            bind_batch("intake", events)
            out = await runtime.intake.process(_records(events), int(time.time() * 1000))
            await produce(out)
            _done(lag, events)
            metrics.BATCH_SIZE.labels("intake").observe(len(events))
            metrics.PROCESSING_SECONDS.labels("intake").observe(time.perf_counter() - start)

    @app.agent(profiled, name="decide", concurrency=1)
    async def decide(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_size, settings.batch_within):
            start = time.perf_counter()
            batch = _records(events)
            bind_batch("decide", events)
            async with runtime.lock:
                await runtime.adopt(_owned(app, settings.topic_profiled) | {r.partition for r in batch})
                res = await runtime.decide.process(batch)
                await runtime.run_decide(res, produce)
                if settings.clock == "event":
                    while True:  # the batch may have moved the event clock: fire what is due now
                        fired = await runtime.decide.fire_due(sorted({r.partition for r in batch}))
                        if not fired.commit.fired:
                            break
                        await runtime.run_decide(fired, produce)
            _done(lag, events)
            metrics.BATCH_SIZE.labels("decide").observe(len(events))
            metrics.PROCESSING_SECONDS.labels("decide").observe(time.perf_counter() - start)

    @app.timer(settings.timer_tick)  # type: ignore[untyped-decorator]  # faust is untyped
    async def timers() -> None:
        owned = _owned(app, settings.topic_profiled)
        if not owned:
            return
        async with runtime.lock:
            await runtime.adopt(owned)
        await runtime.tick(produce)

    @app.timer(LAG_INTERVAL)  # type: ignore[untyped-decorator]  # faust is untyped
    async def consumer_lag() -> None:
        await lag.measure(app.consumer)

    return app, runtime


def _done(lag: metrics.Lag, events: Sequence[Any]) -> None:
    for e in events:
        lag.done(e.message.topic, e.message.partition, e.message.offset)


def _owned(app: faust.App, topic: str) -> set[int]:
    try:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
    except Exception:  # consumer not started yet
        return set()

"""The faust app: wiring only. Agents batch, call the stages, produce, and commit.

Two agents, one process each (``concurrency=1``: faust's ``concurrency > 1`` can commit
offsets past unprocessed messages):

* ``intake`` on ``cx.events.raw`` -> :class:`streams.pipeline.intake_stage.IntakeStage`
* ``decide`` on ``<app_id>-profiled`` -> :class:`streams.pipeline.decide_stage.DecideStage`

and a timer task that fires due durable timers of the partitions this worker owns.

faust acks a ``take_events`` batch when the loop body returns, even if it raised, and a
mode timer that raises stops the whole worker; so neither ever raises (:func:`streams.runtime.until_done`):

* a record the stages cannot process is dead-lettered by the stages themselves;
* Redis and Kafka outages are waited out inside the calls (``redis_io.call``,
  ``kafka.send_all``), so the body does not return, and nothing is acked, until the
  batch's outputs are acked by Kafka;
* a configuration error (wrong password, missing ACL) ends the process with one line and
  without committing (:func:`streams.exceptions.fatal`);
* anything else is a bug of ours: the batch is done again from the start, with backoff,
  and counted (``cxstream_batch_retries_total``): stuck, alerting, never lost.

On stop, faust acks the batch in hand (the ``finally`` of ``take_events``) and commits it,
finished or not: a batch cut short would be lost. So the batch runs to its end whatever
happens to the agent (:func:`_finish`), and its acks wait until it has (:func:`_take`).
The decide agent acks its batches itself, each once its commit has landed, which may be
after it has taken the next (``Runtime.decide_batch``); a stop waits for that commit too.
``CXSTREAM_SHUTDOWN_TIMEOUT`` bounds the wait (``streams.health``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import faust

from streams import fastpath, metrics
from streams.engine.clock import IDLE_REPORT_SECONDS
from streams.exceptions import FatalError, fatal, where
from streams.health import HEALTH
from streams.kafka import client_options, send_all
from streams.logs import bind_batch
from streams.pipeline.envelope import batched, kafka_partitioner
from streams.pipeline.records import InRecord, OutRecord
from streams.runtime import Runtime, Stores, until_done
from streams.settings import Settings

log = logging.getLogger(__name__)

#: seconds between consumer-lag measurements (one position lookup per assigned partition)
LAG_INTERVAL = 2.0
#: seconds between offset commits (faust's default is 2.8): the acked work a crash makes the
#: next owner redo, and how far the group's committed offsets trail the work done (what ops
#: read as lag, and where ``bench_ratio.py`` ends a run: with 1 s, ~0.5 s of a 15-20 s run on
#: average). One OffsetCommit request per interval, for the partitions that moved.
COMMIT_INTERVAL = 0.2
#: faust's stream buffer, in batches of ``batch_size`` (faust's default is 4096 messages); at
#: least a fetch round's worth (:func:`stream_buffer_size`)
STREAM_BUFFER_BATCHES = 16
#: most bytes one fetch brings per partition (faust's default is 1 MiB)
FETCH_BYTES_PER_PARTITION = 4 * 1024 * 1024
#: most bytes one fetch request brings from one broker, whatever the partitions (aiokafka's
#: ``fetch_max_bytes``, left at its default; ``tests/test_stream_buffer.py`` checks it)
FETCH_BYTES_PER_REQUEST = 50 * 1024 * 1024
#: the event size a stream buffer is sized for: a fetch of every partition, of events this
#: small, fits in the buffer below its pressure mark (:func:`stream_buffer_size`)
ROUND_EVENT_BYTES = 256


def stream_buffer_size(settings: Settings) -> int:
    """faust's ``stream_buffer_maxsize``: room for whole batches in flight, and for one delivery
    round, whichever is more.

    One delivery round (faust's ``getmany``) hands the streams every record fetched, in turns
    across the partitions: up to ``FETCH_BYTES_PER_PARTITION`` of each. faust's delivery waits,
    record by record, while a stream's buffer is full, and every other stream's records wait
    behind. With 16 batches (16,000 events) and a 50,000-event raw backlog, the first round
    filled the intake buffer and the decide stage got its records only after most of the
    backlog: decide idle for the first 2-3 s (issue 13). Sized for a round of every partition at
    ``ROUND_EVENT_BYTES`` per event below the pressure mark (where faust stops fetching a
    partition: four fifths of the buffer), a round does not wait, and the order in which the
    records reach the streams is the same as before. Bounding the round's count instead
    (``broker_max_poll_records``) would drain it one partition at a time, which takes intake
    away from the order across sources (README, Performance, fourth round). The buffer holds
    references to the fetched records, not copies: ~30 MB more at the peak here. A round is
    sized as one broker's fetch response; records from several brokers may come in one round
    and fill the buffer, and then the decide stage's records wait as they did before.
    """
    fetch = min(settings.partitions * FETCH_BYTES_PER_PARTITION, FETCH_BYTES_PER_REQUEST)
    per_round = fetch // ROUND_EVENT_BYTES
    return max(STREAM_BUFFER_BATCHES * settings.batch_size, 4096, per_round * 5 // 4)


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
        # commits run by the interval; a count-triggered commit would run inside the consumer's
        # delivery loop, stalling both agents for a broker round trip per batch
        broker_commit_every=STREAM_BUFFER_BATCHES * settings.batch_size,
        broker_commit_interval=COMMIT_INTERVAL,
        producer_acks=-1,
        producer_max_request_size=settings.kafka_max_request_size,
        producer_partitioner=kafka_partitioner,  # aiokafka's default, at a third of its cost
        broker_session_timeout=settings.kafka_session_timeout,
        broker_rebalance_timeout=settings.kafka_rebalance_timeout,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout / 3),
        # send_all hands a whole batch to the producer before waiting: the records are batched
        # already, and a linger would only add its wait to every produce (twice per event)
        producer_linger_ms=0,
        stream_wait_empty=False,
        # Room for whole batches in flight: the fetcher pauses a partition when its stream
        # buffer is under pressure, so a buffer of a few batches keeps the agent fed while the
        # previous batch is produced and committed (issue 13).
        stream_buffer_maxsize=stream_buffer_size(settings),
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        Monitor=fastpath.QuietMonitor,  # faust's statistics sensor, without per-message work
        Stream=fastpath.Stream,  # take_events from the channel queue in batches (streams/fastpath.py)
        Schema=fastpath.Schema,  # raw bytes in, raw bytes out, without the serializer registry
        datadir=f"/tmp/cxstream-{settings.app_id}",
    )
    # faust's consumer without four tasks per message, and our fetch wait (streams/fastpath.py)
    fastpath.install(app, int(settings.kafka_fetch_max_wait * 1000))
    raw = app.topic(settings.topic_raw, key_type=bytes, value_type=bytes, partitions=settings.partitions)
    profiled = app.topic(
        settings.topic_profiled, key_type=bytes, value_type=bytes, partitions=settings.partitions
    )

    async def produce(records: Sequence[OutRecord]) -> None:
        await send_all(app.producer, records, settings.kafka_max_request_size)

    lag = metrics.Lag()

    async def forget_revoked(_app: Any, /, *args: Any, signal: Any, **_: Any) -> None:
        lag.forget(app.consumer, args[0])  # faust sends the set of revoked partitions
        runtime.revoked()

    app.on_partitions_revoked.connect(forget_revoked)

    @app.agent(raw, name="intake", concurrency=1)
    async def intake(stream: Any) -> None:
        async for events in _take(stream, settings):
            start = time.perf_counter()
            bind_batch("intake", events)
            batch = _records(events)

            async def run(batch: list[InRecord] = batch) -> None:
                out = await runtime.intake.process(batch, int(time.time() * 1000))
                if settings.repartition_batches:  # one Kafka record per partition, not per event
                    out = batched(out, settings.topic_profiled, settings.kafka_max_request_size)
                await produce(out)

            await _finish("intake", run)
            _done(lag, events)
            metrics.BATCH_SIZE.labels("intake").observe(len(events))
            metrics.PROCESSING_SECONDS.labels("intake").observe(time.perf_counter() - start)

    @app.agent(profiled, name="decide", concurrency=1)
    async def decide(stream: Any) -> None:
        # a batch is acked once its commit has landed, which may be after the next one was taken
        # (Runtime.decide_batch); on stop, the last one lands (and is acked) before faust commits
        try:
            async for events in _take(stream, settings, fastpath.records_weight, ack=False):
                start = time.perf_counter()
                batch = _records(events)
                bind_batch("decide", events)

                async def run(batch: list[InRecord] = batch, events: Sequence[Any] = events) -> None:
                    async with runtime.lock:
                        owned = _owned(app, settings.topic_profiled)
                        await runtime.adopt(owned | {r.partition for r in batch})
                        # the batch may move the event clock: what is due then fires with it
                        fire = {r.partition for r in batch} if settings.clock == "event" else None
                        done = functools.partial(fastpath.ack_events, events, app.consumer)
                        await runtime.decide_batch(batch, produce, fire, done)

                await _finish("decide", run)
                _done(lag, events)
                # records, not Kafka messages: a batch record counts what it holds
                metrics.BATCH_SIZE.labels("decide").observe(sum(map(fastpath.records_weight, events)))
                metrics.PROCESSING_SECONDS.labels("decide").observe(time.perf_counter() - start)
        finally:
            await _finish("decide", runtime.settle)

    @app.timer(settings.timer_tick)  # type: ignore[untyped-decorator]  # faust is untyped
    async def timers() -> None:
        owned = _owned(app, settings.topic_profiled)
        if not owned:
            return

        async def run() -> None:
            async with runtime.lock:
                await runtime.adopt(owned)
            await runtime.tick(produce)

        await _guarded("timers", run)  # the next tick tries again

    if settings.clock == "event":

        @app.timer(IDLE_REPORT_SECONDS)  # type: ignore[untyped-decorator]  # faust is untyped
        async def idle_sources() -> None:
            """Tell the event clock which source partitions this worker has read to their end."""

            async def run() -> None:
                done = await lag.caught_up(app.consumer, settings.topic_raw)
                quiet = int(settings.watermark_idle_timeout * 500)  # half the idle timeout, in ms
                markers = runtime.intake.idle_markers(done, int(time.time() * 1000), quiet)
                if markers:
                    await produce(markers)

            await _guarded("idle", run)

    @app.timer(LAG_INTERVAL)  # type: ignore[untyped-decorator]  # faust is untyped
    async def consumer_lag() -> None:
        await _guarded("lag", lambda: lag.measure(app.consumer))

    return app, runtime


def _take(
    stream: Any, settings: Settings, weight: Callable[[Any], int] | None = None, *, ack: bool = True
) -> AsyncIterator[Sequence[Any]]:
    """``stream.take_events`` (``streams.fastpath.Stream``'s), acked only once the body is done
    with the batch.

    faust acks a batch in the ``finally`` of ``take_events``, run when the body asks for the
    next batch, or when the generator is closed. ``Stream.on_stop`` closes the generators it
    tracks at once (faust/streams.py ``on_stop``: ``agen.aclose()``), which acks the batch in
    hand while the body still works on it; the consumer may then commit it (every :data:`COMMIT_INTERVAL`, and
    on stop). Untracked, the generator is closed when the body lets go of it: after the batch
    (:func:`_finish`). If that happened after the last commit, the batch would only be
    delivered again. ``ack=False``: the body acks each batch itself (``fastpath.ack_events``).
    """
    batches = stream.take_events(settings.batch_size, settings.batch_within, weight, ack=ack)
    tracked = getattr(stream, "_active_agens", None)
    if tracked is not None:
        tracked.discard(batches)
    return batches  # type: ignore[no-any-return]


async def _finish(stage: str, run: Callable[[], Awaitable[None]]) -> None:
    """:func:`~streams.runtime.until_done`, in a task that a cancelled agent does not cut short.

    faust stops an agent by cancelling its task (mode's ``Service.stop`` of the actor), then
    acks the batch in hand and commits it: cut short, its unfinished part would be lost. So
    the batch goes on to its end (outputs acked by Kafka), and then the cancellation goes on.
    A stop waits for the batch in hand; the shutdown watchdog (``streams.health.Shutdown``)
    bounds that wait.
    """
    task = asyncio.create_task(until_done(stage, run), name=f"cxstream-{stage}-batch")
    cancelled = False
    with HEALTH.batch():
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():  # the task itself (loop teardown): nothing left to wait for
                    raise
                if not cancelled:
                    log.info("%s agent stopping: finishing the batch in hand first", stage)
                cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


async def _guarded(task: str, run: Callable[[], Awaitable[None]]) -> None:
    """A periodic task that must not raise: a mode timer that raises stops the whole worker."""
    try:
        await run()
        metrics.flush()
    except FatalError as exc:
        fatal(exc)
    except Exception as exc:
        metrics.BATCH_RETRIES.labels(task).inc()
        log.error(
            "%s task failed (%s at %s); it runs again at its next tick", task, type(exc).__name__, where(exc)
        )


def _done(lag: metrics.Lag, events: Sequence[Any]) -> None:
    last: dict[tuple[str, int], int] = {}  # a partition's offsets rise within a batch: its last one
    for e in events:
        m = e.message
        last[(m.topic, m.partition)] = m.offset
    for (topic, partition), offset in last.items():
        lag.done(topic, partition, offset)


def _owned(app: faust.App, topic: str) -> set[int]:
    try:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}
    except Exception:  # consumer not started yet
        return set()

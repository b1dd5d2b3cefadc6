"""faust's per-message path, without four tasks per message.

faust's consumer hands every fetched message to the streams with
``await self.wait_first(callback(message), self.suspend_flow.wait())``
(``faust.transport.consumer.Consumer._drain_messages``): four tasks (the delivery, the
suspension, the service's stopped and crashed events) and an ``asyncio.wait`` per message, so
that a rebalance (``suspend_flow``) can abandon a delivery that waits for
room in a full stream buffer. Almost every delivery needs no wait at all: the message goes
into the channel queue at once. Measured on one worker draining a backlog, this was
the largest single cost of the whole pipeline (issue 13: with a larger stream buffer and
fetch size, ~2,800 -> ~3,600 events/s on one worker).

:class:`Consumer` runs the delivery coroutine one step in place; if it finished (the usual
case) nothing was scheduled. If it has to wait (a full buffer, flow control, a full
producer buffer), the started coroutine is handed to ``wait_first`` exactly as faust does,
so a rebalance still abandons it. While the flow is suspended, faust's own path is taken
as it is. Everything else of the method is faust's, line for line (one nested ``if`` joined).

Installed through the app's public ``transport`` setter (:func:`install`). Also here:
:class:`QuietMonitor`, faust's statistics sensor without its per-message bookkeeping, and
:class:`Stream`, whose ``take_events`` takes a batch straight from the channel queue instead of
faust's per-message iterator (faust's ``Stream`` setting). The replaced methods are pinned to
the faust versions they were written against: ``tests/test_faust_pin.py`` fails on an upgrade
until they are checked against the new ones.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Generator, Sequence
from typing import Any, cast

import faust
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import TP, ack_lock
from mode import Seconds, Service, want_seconds

from streams.constants import RECORDS_HEADER

#: faust-streaming versions whose ``Consumer._drain_messages`` this module replaces, and the
#: SHA-256 of that method's source in them (``tests/test_faust_pin.py`` checks both)
TESTED_FAUST = {"0.15.3": "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"}
#: the same for ``Stream.take_events``, which :class:`Stream` replaces
TESTED_TAKE_EVENTS = {"0.15.3": "607d48aead118ba8ea868718a0df87de1c5fcecd10ec542c659b448796728e08"}
#: the same for ``Schema.compile``, whose decoding of raw bytes :class:`Schema` replaces
TESTED_SCHEMA_COMPILE = {"0.15.3": "d46eec5ce3195b2c6752cb860a10946cee66ddf6a955f2ea44ac1568c0ecb9ad"}
#: the same for ``ConductorCompiler.build``, the per-partition delivery that
#: ``Consumer._deliver_now`` does without waiting
TESTED_CONDUCTOR_BUILD = {"0.15.3": "837cf521368c1ee4b22c235a2b137f665eca03d0e3e01b5ddedb65232ee73bf2"}


class _Started:
    """The rest of a coroutine that already ran its first step (which yielded ``pending``):
    awaiting this drives it on, passing results and exceptions (a cancellation) through."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._pending
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # cancellation (wait_first abandons it): into the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _rest(started: _Started) -> Any:
    return await started


def step(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Run ``coro`` up to its first suspension. ``None`` if it finished (its result is
    dropped; an exception propagates), else a coroutine that finishes it when awaited."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    return _rest(_Started(coro, pending))


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; only the delivery of each message to the streams differs, and
    the consumer thread is :class:`ConsumerThread`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _deliver_now(self, message: Any) -> bool:
        """Put ``message``'s event on the queue of the one channel that reads its partition, as
        faust's delivery does (the conductor's handler for ``message.tp``, faust/transport/conductor.py
        ``ConductorCompiler.build``, compiled to C in faust's wheel), when none of its waits
        would wait. ``False``, having done nothing: take faust's path.

        faust's path is five coroutines per message (the conductor's ``on_message`` under its
        lock, the flow-control ``acquire``, the producer buffer's ``wait_until_ebb``, the
        decode, the handler itself) and two lookups of the app's settings. Here: the same
        checks, made without waiting; the same reference count, event and queue put, with the
        same pressure callbacks (they pause and resume the partition's fetching). Only for a
        channel of raw bytes (:class:`Schema`), whose decode is the event itself. Otherwise,
        and whenever something would wait (a rebalance updating the conductor's index or
        suspending the flow, a full producer buffer, a full queue), faust's own path runs.
        """
        app = self.app
        conductor: Any = app.topics
        tp = message.tp
        channels = conductor._tp_index.get(tp)
        if (
            not channels
            or len(channels) != 1
            or conductor._tp_to_callback_lock.locked()
            or not app.flow_control.is_active()
        ):
            return False
        buffer: Any = app.producer.buffer
        if buffer.queue is not None or buffer.pending.qsize() > buffer.max_messages:
            return False  # a threaded producer's buffer, or one over its limit (wait_until_ebb)
        for chan in channels:
            queue = chan.queue
            if chan.decode not in _RAW_DECODERS or queue.full():
                return False
            message.incref(1)
            event = self._event_type(app, message.key, message.value, message.headers, message)
            high, drop = self._pressure(tp)
            queue.put_nowait_enhanced(event, on_pressure_high=high, on_pressure_drop=drop)
        return True

    @functools.cached_property
    def _event_type(self) -> Any:
        return self.app.conf.Event  # what app.create_event makes (it looks the setting up each time)

    def _pressure(self, tp: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        """``tp``'s queue pressure callbacks, as the conductor's handler makes them: one pair per
        partition (the queue keeps the drop callback in a set until the pressure drops)."""
        try:
            return self._pressure_callbacks[tp]
        except KeyError:
            pass
        key, tp = tp, TP(tp.topic, tp.partition)  # faust's own type (a message may carry aiokafka's)
        on_topic_buffer_full = self.app.sensors.on_topic_buffer_full
        on_buffer_full, on_buffer_drop = self.on_buffer_full, self.on_buffer_drop

        def high() -> None:
            on_topic_buffer_full(tp)
            on_buffer_full(tp)

        def drop() -> None:
            on_buffer_drop(tp)

        pair = self._pressure_callbacks[key] = (high, drop)
        return pair

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:  # noqa: ASYNC109 (faust's)
        """faust's, noting the offset after each partition's last fetched record (:attr:`fetched`)."""
        records, active = await super()._wait_next_records(timeout)
        if records:
            fetched = self.fetched
            for tp, batch in records.items():
                if batch:
                    fetched[tp] = batch[-1].offset + 1
        return records, active

    # For the idle report (``streams.metrics.Lag.caught_up``): a partition's records between
    # the fetch and a stream's queue are ``fetched`` past ``delivered``.
    @functools.cached_property
    def fetched(self) -> dict[Any, int]:
        """Partition -> the offset after the last record fetched for the streams."""
        return {}

    @functools.cached_property
    def delivered(self) -> dict[Any, int]:
        """Partition -> the offset after the last record handed to a stream."""
        return {}

    @functools.cached_property
    def _pressure_callbacks(self) -> dict[Any, tuple[Callable[[], None], Callable[[], None]]]:
        return {}

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (faust's loop)
        # faust.transport.consumer.Consumer._drain_messages (faust-streaming 0.15.3), with
        # the changes marked "cxstream".
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set  # cxstream
        deliver_now = self._deliver_now  # cxstream
        delivered = self.delivered  # cxstream

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # cxstream: straight onto the channel's queue when nothing has to
                            # wait; else deliver in place, and only a delivery that must wait
                            # races the flow suspension, as faust's own line does for every message
                            if suspended():
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            elif not deliver_now(message):
                                rest = step(cast(Coroutine[Any, Any, Any], callback(message)))
                                if rest is not None:
                                    await self.wait_first(rest, self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                            delivered[tp] = offset + 1  # cxstream
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread; its aiokafka consumer waits ``Transport.fetch_max_wait_ms`` for
    records, not the 1,500 ms faust hard-codes (``_create_worker_consumer``).

    On Kafka a fetch returns as soon as records arrive, so the wait only paces empty fetches. A
    broker that answers a fetch only at the end of its wait (the embedded Tansu) delays each
    record by up to the wait at each of the two hops: with faust's 1,500 ms that was most of
    the event-to-trigger latency (issue 13: p50 ~0.9 s at 1,000 events/s)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its Fetcher in start(), which has not run yet
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class Schema(faust.Schema[Any, Any]):
    """faust's schema; only the decoding of raw bytes differs: the message's key and value
    become the event's as they are.

    Every cxstream topic is ``bytes`` keys and values with the ``raw`` codec, which faust's
    compiled ``decode`` turns into the same bytes through the serializer registry, per message
    and twice (key and value; ~4 µs a message here). Any other schema is faust's own. Installed
    through faust's documented ``Schema`` app setting; pinned like the consumer."""

    def compile(self, app: Any, **kwargs: Any) -> Any:
        serializers = app.serializers
        raw = (
            self.key_type is bytes
            and self.value_type is bytes
            and (self.key_serializer or serializers.key_serializer) == "raw"
            and (self.value_serializer or serializers.value_serializer) == "raw"
        )
        if not raw:
            return super().compile(app, **kwargs)
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        _RAW_DECODERS.add(decode)  # Consumer._deliver_now makes its events itself
        return decode


#: the decoders :meth:`Schema.compile` made for raw bytes
_RAW_DECODERS: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()


class QuietMonitor(Monitor):
    """faust's ``Monitor`` sensor without its per-message and per-event bookkeeping.

    faust calls these four for every message (timestamps, per-topic, per-stream and per-task
    counters in dicts, a runtime deque); nothing of ours reads them (faust's web views are off,
    cxstream exports its own Prometheus metrics). The rest of the monitor (end offsets,
    commits, rebalances, table and producer counts) is faust's. Installed through faust's
    documented ``Monitor`` app setting."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> dict[str, Any] | None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: dict[str, Any] | None = None
    ) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


class Stream(faust.Stream[Any]):
    """faust's stream; only :meth:`take_events` differs: batches taken from the channel's queue.

    faust's ``take_events`` runs the stream's per-message iterator in a background task (the
    "passive drainer"), which hands each event to a buffering processor that awaits a lock-step
    event pair with the agent, and acks event by event. Here the agent takes a batch straight
    from the channel queue the consumer fills (``get_nowait`` while there is one, a wait only
    when it is empty) and acks the batch in one pass. What faust's iterator does for each
    message is kept: an event of an older consumer generation, or taken while the flow is
    suspended (a rebalance), is skipped; a message of an acking topic is tracked as unacked
    when taken; the batch is acked when the body returns, raises, or the generator is closed
    (faust's ``finally``). Not kept: the four per-event sensor calls (:class:`QuietMonitor`
    ignores them), ``current_event`` (cxstream uses the batch), and the ack of a skipped
    event. faust acks it, so the next commit may pass an event nothing processed (its
    ``_new_offset`` does not look for a gap at the head when the committed offset is 0 or
    unknown, e.g. after a revoke). Left unacked, it is delivered again after the new
    assignment seeks back to the committed offsets, and processing it twice is a no-op
    (dedupe at intake, applied offsets at decide).
    Installed through faust's documented ``Stream`` app setting; pinned like the consumer.
    """

    async def take_events(
        self, max_: int, within: Seconds, weight: Callable[[Any], int] | None = None, *, ack: bool = True
    ) -> AsyncGenerator[Sequence[Any], None]:
        """Batches of at most ``max_`` events: yielded when full, or ``within`` seconds after
        their first event, whichever comes first. ``weight``: what an event counts for towards
        ``max_`` (default 1; a batch record of the repartition topic counts its records, see
        :func:`records_weight`), so a batch may pass ``max_`` by its last event's weight less one.
        ``ack=False``: a batch is not acked here at all; the caller acks it (:func:`ack_events`) once
        it is done with it, which may be after it has taken the next one."""
        await self.maybe_start()
        self._finalized = True
        queue = cast(Any, aiter(self.channel)).queue  # the iterator clone the conductor delivers to
        secs = want_seconds(within)
        app = self.app
        consumer = app.consumer
        add_unacked = consumer.unacked.add
        acking_topics = app.topics.acking_topics
        flow_active = app.flow_control.is_active
        get_nowait, empty = queue.get_nowait, queue.empty
        clock = asyncio.get_running_loop().time
        events: list[Any] = []
        while not self.should_stop:
            deadline = 0.0  # set by the batch's first event
            n = 0
            while n < max_:
                try:
                    if not empty():
                        event = get_nowait()  # raises what the channel was thrown (a decode error)
                    else:
                        # none yet: wait in steps of ``within``, to see a stop between them
                        wait = deadline - clock() if events else secs
                        if wait <= 0:
                            break
                        try:
                            event = await asyncio.wait_for(queue.get(), wait)
                        except TimeoutError:
                            if events or self.should_stop:
                                break
                            continue
                except StopAsyncIteration:
                    # the stream stops (faust throws this into its channel): the end, as in
                    # faust's iterator; events taken and not yet yielded stay unacked
                    return
                message = event.message
                if not flow_active() or message.generation_id != app.consumer_generation_id:
                    continue  # faust's iterator skips these (and acks them: we do not, see above)
                if message.topic in acking_topics and not message.tracked:
                    message.tracked = True
                    add_unacked(message)
                if not events:
                    deadline = clock() + secs
                events.append(event)
                n += 1 if weight is None else weight(event)
            if events:
                try:
                    yield list(events)
                finally:
                    if ack:
                        ack_events(events, consumer)
                    events.clear()  # (the caller holds its own list of the batch)


def records_weight(event: Any) -> int:
    """How many records a message holds: its ``cx-records`` header, else one (``take_events``'s
    ``weight`` for the decide stage, whose batch size counts records, not Kafka messages)."""
    headers = event.message.headers or ()
    for key, value in headers.items() if isinstance(headers, dict) else headers:
        if key == RECORDS_HEADER:
            try:
                return max(1, int(value))
            except (TypeError, ValueError):  # not a count: one, as a record of its own
                return 1
    return 1


def ack_events(events: Sequence[Any], consumer: Any) -> None:
    """``event.ack()`` for each of ``events`` (``Message.ack``, inlined under one lock): what
    ``take_events`` does after each batch, or its caller with ``ack=False``. Acking an event
    twice is a no-op."""
    with ack_lock:
        for event in events:
            message = event.message
            if not message.acked and not message.decref(1):
                message.on_final_ack(consumer)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport, making :class:`Consumer`."""

    Consumer = Consumer
    #: how long a fetch may wait on the broker for records (:class:`ConsumerThread`)
    fetch_max_wait_ms = 1500


def install(app: Any, fetch_max_wait_ms: int) -> None:
    """Give ``app`` (a ``faust.App`` on a ``kafka://`` broker) the transport of this module.
    Called by ``streams.app.build_app`` right after the app is made, before any topic."""
    transport = Transport(app.conf.broker_consumer, app)
    transport.fetch_max_wait_ms = fetch_max_wait_ms
    app.transport = transport

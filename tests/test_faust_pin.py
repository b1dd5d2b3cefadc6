"""streams.fastpath replaces one faust method: it must be the faust it was copied from.

Fails on a faust-streaming upgrade (or a patched install) until ``streams/fastpath.py`` has
been compared with the new ``Consumer._drain_messages`` and the version and hash added to
``TESTED_FAUST``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from streams import fastpath
from streams.constants import RECORDS_HEADER


def test_installed_faust_is_a_tested_version() -> None:
    assert faust.__version__ in fastpath.TESTED_FAUST, (
        f"faust-streaming {faust.__version__} is not one streams/fastpath.py was tested on "
        f"({', '.join(fastpath.TESTED_FAUST)}): compare Consumer._drain_messages with the copy there"
    )


def _assert_unchanged(method: Any, table: str, ours: str) -> None:
    """``method``'s source hashes to what ``streams.fastpath.<table>`` records for this faust."""
    digest = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()
    assert digest == getattr(fastpath, table).get(faust.__version__), (
        f"faust's {method.__qualname__} differs from the one {ours} replaces: compare them, port "
        f"the change there, then record the new hash in {table}"
    )


def _replaced(cls: type) -> set[str]:
    """The methods ``cls`` defines itself (what it replaces of faust's class)."""
    return {k for k, v in vars(cls).items() if callable(v) and not k.startswith("__")}


def test_replaced_method_is_unchanged() -> None:
    _assert_unchanged(FaustConsumer._drain_messages, "TESTED_FAUST", "streams.fastpath.Consumer")


def test_our_consumer_is_the_one_the_app_makes() -> None:
    from streams.app import build_app
    from streams.runtime import Stores
    from streams.settings import load_settings

    app, _ = build_app(load_settings(kafka_bootstrap="localhost:1"), Stores.memory())
    assert isinstance(app.transport, fastpath.Transport)
    assert app.transport.Consumer is fastpath.Consumer
    # the only method it replaces
    assert _replaced(fastpath.Consumer) == {
        "_drain_messages",
        "_wait_next_records",  # faust's, then noting what it fetched
        "_new_consumer_thread",
        "_deliver_now",
        "_pressure",
    }
    assert isinstance(app.monitor, fastpath.QuietMonitor)
    assert app.conf.Stream is fastpath.Stream
    assert app.conf.Schema is fastpath.Schema
    from streams.pipeline.envelope import kafka_partitioner

    assert app.producer.partitioner is kafka_partitioner  # what faust hands aiokafka's producer


def test_the_quiet_monitor_replaces_hooks_faust_still_calls() -> None:
    """QuietMonitor silences four per-message hooks of faust's Monitor: they must still be the
    sensor hooks faust calls (else the override would do nothing, or break a new signature)."""
    from faust.sensors import Monitor
    from faust.sensors.base import Sensor

    for name in ("on_message_in", "on_stream_event_in", "on_stream_event_out", "on_message_out"):
        assert name in vars(Sensor) and name in vars(Monitor), name
        theirs = inspect.signature(getattr(Monitor, name))
        ours = inspect.signature(getattr(fastpath.QuietMonitor, name))
        assert list(theirs.parameters) == list(ours.parameters), name


def test_step_finishes_a_delivery_that_does_not_wait_in_place() -> None:
    async def run() -> None:
        seen: list[int] = []

        async def deliver() -> None:
            seen.append(1)

        assert fastpath.step(deliver()) is None
        assert seen == [1]

    asyncio.run(run())


def test_step_hands_on_a_delivery_that_waits() -> None:
    async def run() -> None:
        room = asyncio.Event()
        seen: list[str] = []

        async def deliver() -> str:
            seen.append("started")
            await room.wait()
            seen.append("delivered")
            return "ok"

        rest = fastpath.step(deliver())
        assert rest is not None and seen == ["started"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        room.set()
        assert await task == "ok"
        assert seen == ["started", "delivered"]

    asyncio.run(run())


def test_a_waiting_delivery_is_abandoned_like_fausts() -> None:
    """wait_first cancels the delivery when the flow is suspended: the cancellation reaches it."""

    async def run() -> None:
        cleaned: list[str] = []

        async def deliver() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append("cancelled")

        rest = fastpath.step(deliver())
        assert rest is not None
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["cancelled"]

    asyncio.run(run())


def test_an_error_in_the_delivery_propagates() -> None:
    async def run() -> None:
        async def bad() -> None:
            raise ValueError("x")

        with pytest.raises(ValueError):
            fastpath.step(bad())

        async def bad_later() -> None:
            await asyncio.sleep(0)
            raise KeyError("y")

        rest = fastpath.step(bad_later())
        assert rest is not None
        with pytest.raises(KeyError):
            await rest

    asyncio.run(run())


def test_replaced_take_events_is_unchanged() -> None:
    from faust.streams import Stream as FaustStream

    _assert_unchanged(FaustStream.take_events, "TESTED_TAKE_EVENTS", "streams.fastpath.Stream")
    assert _replaced(fastpath.Stream) == {"take_events"}


def _take_here(
    values: list[int], max_: int, suspend_after: int | None = None, weighted: bool = False
) -> tuple[list[list[int]], list[int]]:
    """Send ``values`` into an in-memory channel of a cxstream app and take them in batches of
    at most ``max_`` until none come within a wait; after ``suspend_after`` batches the flow is
    suspended (a rebalance). Returns the batches' values and the values of the events acked."""
    from streams.app import build_app
    from streams.runtime import Stores
    from streams.settings import load_settings

    async def run() -> tuple[list[list[int]], list[Any]]:
        app, _ = build_app(load_settings(kafka_bootstrap="localhost:1"), Stores.memory())
        from faust.events import Event
        from faust.types import Message

        stream = app.stream(aiter(app.channel()))  # an agent's stream iterates a channel iterator
        assert isinstance(stream, fastpath.Stream)
        app.flow_control.resume()  # as the consumer does once partitions are assigned
        gen = app.consumer_generation_id

        def headers(v: int) -> Any:  # weighted: each event says it holds v records
            return [(RECORDS_HEADER, str(v).encode())] if weighted else {}

        sent = [
            Event(app, None, v, {}, Message("t", 0, v, 0.0, 0, headers(v), None, v, None, generation_id=gen))
            for v in values
        ]
        for event in sent:
            stream.channel.queue.put_nowait(event)
        batches = stream.take_events(max_, 0.05, fastpath.records_weight if weighted else None)
        out: list[list[int]] = []
        while True:
            try:
                batch = await asyncio.wait_for(batches.__anext__(), 0.3)
            except TimeoutError:
                break
            assert all(not e.message.acked for e in batch)  # acked only after the body
            out.append([e.value for e in batch])
            if len(out) == suspend_after:
                app.flow_control.suspend()
        await batches.aclose()
        return out, sent

    out, sent = asyncio.run(run())
    return out, [e.value for e in sent if e.message.acked]


def _take(
    values: list[int], max_: int, suspend_after: int | None = None, weighted: bool = False
) -> tuple[list[list[int]], list[int]]:
    """:func:`_take_here` in a fresh interpreter: faust's app, built there and never started,
    leaves an event loop and sockets behind that the garbage collector would report in a later
    test. Returns the batches' values and the values of the events acked."""
    code = (
        "import json, test_faust_pin as t; "
        f"print(json.dumps(t._take_here({values!r}, {max_!r}, {suspend_after!r}, {weighted!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out, acked = json.loads(run.stdout.strip().splitlines()[-1])
    return out, acked


def test_take_events_takes_full_batches_then_what_came_within_the_wait() -> None:
    out, acked = _take(list(range(7)), 3)
    assert out == [[0, 1, 2], [3, 4, 5], [6]]
    assert acked == list(range(7))  # every batch acked once the body moved on


def test_the_decide_batch_counts_the_records_inside_batch_records() -> None:
    """A batch record of the repartition topic counts its records (``cx-records``) towards the
    batch size, so a decide batch stays near ``CXSTREAM_BATCH_SIZE`` records whatever the
    number of Kafka messages; a message without the header counts one."""
    out, acked = _take([3, 5, 1, 4, 2], 6, weighted=True)
    assert out == [[3, 5], [1, 4, 2]]
    assert acked == [3, 5, 1, 4, 2]
    assert _take([3, 5, 1, 4, 2], 6)[0] == [[3, 5, 1, 4, 2]]  # unweighted: five events


def test_take_events_skips_what_a_rebalance_suspended_without_acking_it() -> None:
    """faust's iterator drops the events taken while the flow is suspended, and acks them, so
    a commit could pass events nothing processed. Ours drops them unacked: none reaches the
    body, and the next owner (or this worker, after the seek of its new assignment) gets them
    again."""
    out, acked = _take(list(range(6)), 2, suspend_after=1)
    assert out == [[0, 1]]
    assert acked == [0, 1]  # the batch the body had; the skipped four are not


def test_the_consumer_waits_for_records_as_long_as_the_setting_says() -> None:
    """faust hard-codes a 1,500 ms fetch wait; the worker's aiokafka consumer gets
    ``CXSTREAM_KAFKA_FETCH_MAX_WAIT`` instead, and aiokafka's fetcher is made from that value.
    Fails when faust or aiokafka change what ``streams.fastpath.ConsumerThread`` relies on."""
    from aiokafka import AIOKafkaConsumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    # what the override assumes: faust still fixes the wait, aiokafka reads it at start()
    assert "fetch_max_wait_ms=1500" in inspect.getsource(AIOKafkaConsumerThread._create_worker_consumer)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)
    code = """
import asyncio
from streams.app import build_app
from streams.runtime import Stores
from streams.settings import load_settings
from streams import fastpath

async def main():
    settings = load_settings(kafka_bootstrap="localhost:1", kafka_fetch_max_wait=0.25)
    app, _ = build_app(settings, Stores.memory())
    thread = app.consumer._thread
    assert isinstance(thread, fastpath.ConsumerThread), type(thread)
    consumer = thread._create_worker_consumer(app.transport)
    print(consumer._fetch_max_wait_ms)

asyncio.run(main())
"""
    # a fresh interpreter: the app, never started, would leave its event loop to this session
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["250"]


def test_the_direct_delivery_copies_the_conductors_handler() -> None:
    from faust.transport.conductor import ConductorCompiler

    _assert_unchanged(
        ConductorCompiler.build, "TESTED_CONDUCTOR_BUILD", "streams.fastpath.Consumer._deliver_now"
    )


def test_the_direct_delivery_queues_what_fausts_handler_queues_and_steps_aside_when_it_would_wait() -> None:
    """Consumer._deliver_now puts the same event (key, value, headers, message, reference count)
    on the channel's queue as faust's handler for the partition; whenever faust's handler could
    wait (the flow suspended, the conductor's index being updated, a full queue) or would decode
    (a channel not of raw bytes), or two channels read the partition, it does nothing and says so."""
    code = """
import asyncio
from faust.types import TP, Message
from streams.app import build_app
from streams.runtime import Stores
from streams.settings import load_settings

async def main():
    app, _ = build_app(load_settings(kafka_bootstrap="localhost:1"), Stores.memory())
    tp = TP("t", 0)
    topic = app.topic("t", key_type=bytes, value_type=bytes)
    conductor, consumer = app.topics, app.consumer
    conductor._tp_index[tp] = {topic}
    app.flow_control.resume()
    def message(offset, headers=()):
        return Message("t", 0, offset, 1.5, 0, list(headers), b"k%d" % offset, b"v%d" % offset, None, tp=tp)
    fausts = conductor._build_handler(tp, {topic})
    a, b = message(1, [("h", b"1")]), message(1, [("h", b"1")])
    await fausts(a)
    assert consumer._deliver_now(b) is True
    x, y = topic.queue.get_nowait(), topic.queue.get_nowait()
    def seen(e):
        return type(e), e.key, e.value, e.headers, e.message.refcount
    assert seen(x) == seen(y)
    assert x.message is a and y.message is b and x.app is y.app is app
    print("same")

    # the consumer's messages carry aiokafka's TopicPartition; under pressure the partition's
    # fetching pauses and resumes by faust's TP, as with faust's handler
    from aiokafka import TopicPartition
    tp1 = TP("t", 1)
    conductor._tp_index[tp1] = {topic}
    consumer._set_active_tps({tp, tp1})
    queue = topic.queue
    while queue.qsize() < queue.pressure_high_size:
        queue.put_nowait(None)
    m = message(5)
    m.tp = TopicPartition("t", 1)
    assert consumer._deliver_now(m) is True
    assert consumer._buffered_partitions == {tp1} and consumer._get_active_partitions() == {tp}
    while not queue.empty():
        queue.get_nowait()
    assert consumer._buffered_partitions == set() and consumer._get_active_partitions() == {tp, tp1}
    assert all(type(t) is TP for t in consumer._get_active_partitions())
    print("pressure")

    def aside(why):
        m = message(9)
        assert consumer._deliver_now(m) is False, why
        assert topic.queue.empty() and m.refcount == 0, why
    app.flow_control.suspend(); aside("suspended"); app.flow_control.resume()
    async with conductor._tp_to_callback_lock:
        aside("index updating")
    for i in range(topic.queue.maxsize):
        topic.queue.put_nowait(None)
    aside_full = message(9)
    assert consumer._deliver_now(aside_full) is False and aside_full.refcount == 0
    topic.queue.clear()
    other = app.topic("t", key_type=str, value_type=bytes)
    conductor._tp_index[tp] = {other}
    aside("decodes")
    conductor._tp_index[tp] = {topic, app.topic("t", key_type=bytes, value_type=bytes, acks=False)}
    aside("two channels")
    conductor._tp_index.pop(tp)
    aside("no channel")
    print("aside")

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["same", "pressure", "aside"]


def test_replaced_schema_compile_is_unchanged() -> None:
    _assert_unchanged(faust.Schema.compile, "TESTED_SCHEMA_COMPILE", "streams.fastpath.Schema")
    assert _replaced(fastpath.Schema) == {"compile"}


def test_raw_bytes_decode_to_the_events_fausts_schema_makes() -> None:
    """Keys and values (bytes, empty, None) and headers come out of our schema's decode as out of
    faust's, for the topics the worker reads; a schema of another type is faust's own."""
    code = """
import asyncio
import faust
from faust.types import Message
from streams.app import build_app
from streams.runtime import Stores
from streams.settings import load_settings
from streams import fastpath

async def main():
    app, _ = build_app(load_settings(kafka_bootstrap="localhost:1"), Stores.memory())
    ours = app.topic("t", key_type=bytes, value_type=bytes).schema
    assert type(ours) is fastpath.Schema, type(ours)
    theirs = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    fast, slow = ours.compile(app), theirs.compile(app)
    assert fast.__code__ is not slow.__code__  # the fast path is taken
    cases = [(b"k", b"{}", []), (None, b"v", [("h", b"1")]), (b"", b"", []), (b"k", None, [])]
    for key, value, headers in cases:
        m = Message("t", 0, 1, 0.0, 0, headers, key, value, None)
        a, b = await fast(m), await slow(m)
        assert (a.key, a.value, a.headers, a.message) == (b.key, b.value, b.headers, b.message), (a, b)
    # not raw bytes: faust's compile
    other = app.topic("u", key_type=str, value_type=bytes).schema
    assert other.compile(app).__code__ is slow.__code__
    print("same")

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["same"]

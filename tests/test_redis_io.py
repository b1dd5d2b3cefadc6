"""redis_io: an outage is waited out, a configuration error stops us in one line, a bug propagates.

Every Redis here is a real ``redis-server`` of the test's own (``Server``), started with the
settings the case needs (maxmemory, a password, a short script time limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import errors as kerr
from faust.exceptions import ProducerSendError
from prometheus_client import REGISTRY
from redis import exceptions as rex
from redis._parsers.base import BaseParser

from streams import kafka, redis_io
from streams.exceptions import FatalError
from streams.pipeline.records import OutRecord
from streams.stack import free_port, redis_binary


class Server:
    """A redis-server of this test alone, with extra command-line settings."""

    def __init__(self, workdir: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                str(workdir),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # any reply will do: PING may need a password
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64)[:1] in (b"+", b"-"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on {self.port} did not answer")

    def url(self, auth: str = "", db: int = 0) -> str:
        return f"redis://{auth + '@' if auth else ''}127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str, port: int | None = None) -> Server:
        d = tmp_path / f"redis{len(started)}"
        d.mkdir()
        started.append(Server(d, *args, port=port))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(main())


# ---------------------------------------------------------------------- the classification table
@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", "outage"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", "outage"),
        ("LOADING Redis is loading the dataset in memory", "outage"),
        ("READONLY You can't write against a read only replica.", "outage"),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", "outage"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "outage"),
        ("CLUSTERDOWN The cluster is down", "outage"),
        ("MOVED 3999 127.0.0.1:6381", "outage"),
        ("ASK 3999 127.0.0.1:6381", "outage"),
        ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist", "outage"),
        ("NOREPLICAS Not enough good replicas to write.", "outage"),
        ("NOSCRIPT No matching script. Please use EVAL.", "outage"),
        ("ERR max number of clients reached", "outage"),
        # Redis < 7 wraps the error of a redis.call inside a script
        (
            "ERR Error running script (call to f_1): @user_script:1: @user_script: 1: -OOM command "
            "not allowed when used memory > 'maxmemory'.",
            "outage",
        ),
        ("NOAUTH Authentication required.", "config"),
        ("WRONGPASS invalid username-password pair or user is disabled.", "config"),
        ("NOPERM this user has no permissions to run the 'evalsha' command", "config"),
        ("ERR invalid password", "config"),
        ("ERR DB index is out of range", "config"),
        ("ERR invalid DB index", "config"),
        ("ERR unknown command `EVALSHA`, with args beginning with: `abc` ", "config"),
        (
            "ERR AUTH <password> called without any password configured for the default user. Are you sure "
            "your configuration is correct?",
            "config",
        ),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", "bug"),
        (
            "ERR Error running script (call to f_1): @user_script:3: user_script:3: attempt to compare nil",
            "bug",
        ),
        ("ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: 1", "bug"),
        (
            "ERR Error running script (call to f_1): @user_script:1: @user_script: 1: Unknown Redis command "
            "called from Lua script",
            "bug",
        ),
        ("CROSSSLOT Keys in request don't hash to the same slot", "bug"),
        ("EXECABORT Transaction discarded because of previous errors.", "bug"),
        ("ERR value is not an integer or out of range", "bug"),
    ],
)
def test_classify_replies(reply: str, kind: str) -> None:
    exc = BaseParser.parse_error(reply)  # type: ignore[no-untyped-call]  # what redis-py raises for it
    assert redis_io.classify(exc) == kind
    if kind == "config":
        line = redis_io.describe(exc)
        assert "\n" not in line and "); " in line, line  # what Redis said, then the fix
        assert "`abc`" not in line  # command arguments are not repeated


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (rex.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."), "outage"),
        (rex.TimeoutError("Timeout reading from socket"), "outage"),
        (TimeoutError(), "outage"),
        (ConnectionResetError(), "outage"),
        (rex.ClusterError("TTL exhausted."), "outage"),
        (rex.SlotNotCoveredError("slot 12 not covered"), "outage"),
        (rex.MaxConnectionsError("Too many connections"), "outage"),
        (rex.RedisClusterException("Redis Cluster cannot be connected. Please provide ..."), "outage"),
        (rex.RedisClusterException("All slots are not covered after query all startup_nodes."), "outage"),
        (rex.AuthorizationError("Invalid credentials"), "config"),
        (
            rex.ConnectionError(
                "Error 1 connecting to h:6380. [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                "verify failed: self-signed certificate"
            ),
            "config",
        ),
        (rex.DataError("Invalid input of type: 'dict'."), "bug"),
        (ValueError("not ours"), "bug"),
    ],
)
def test_classify_client_errors(exc: BaseException, kind: str) -> None:
    assert redis_io.classify(exc) == kind


# ---------------------------------------------------------------------- outages are waited out
def test_oom_is_retried_until_memory_is_freed(
    server: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    srv = server("--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
    errors = sample("cxstream_redis_errors_total", op="t.oom")

    async def scenario() -> None:
        admin = aioredis.Redis.from_url(srv.url())
        client = redis_io.connect(srv.url())
        try:
            with contextlib.suppress(rex.OutOfMemoryError):
                for i in range(1000):
                    await admin.set(f"fill{i}", b"x" * 10_000)
            with pytest.raises(rex.OutOfMemoryError):
                await admin.set("probe", b"x" * 10_000)
            write = asyncio.create_task(redis_io.call("t.oom", lambda: client.set("new", b"y" * 10_000)))
            await asyncio.sleep(1.0)
            assert not write.done(), "an OOM must be waited out, not raised"
            assert sample("cxstream_redis_outage") == 1
            assert sample("cxstream_redis_errors_total", op="t.oom") > errors
            await admin.config_set("maxmemory", 0)
            assert await asyncio.wait_for(write, 10) is True
            assert await admin.get("new") == b"y" * 10_000
            assert sample("cxstream_redis_outage") == 0
        finally:
            await admin.aclose()
            await client.aclose()

    with caplog.at_level(logging.DEBUG, logger="streams.redis_io"):
        run(scenario())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings  # one when the outage starts, one when it is over
    assert "OOM" in warnings[0] and "back after" in warnings[1]


def test_busy_script_is_waited_out_until_killed(server: Callable[..., Server]) -> None:
    srv = server("--lua-time-limit", "50")

    async def scenario() -> None:
        looper = aioredis.Redis.from_url(srv.url())
        admin = aioredis.Redis.from_url(srv.url())
        client = redis_io.connect(srv.url())
        try:
            await admin.set("k", "v")

            async def busy_loop() -> Any:
                return await looper.eval("while true do end", 0)

            loop = asyncio.create_task(busy_loop())
            deadline = time.monotonic() + 5
            while True:  # until the server answers BUSY
                try:
                    await admin.get("k")
                except rex.ResponseError as exc:
                    assert str(exc).startswith("BUSY")
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            read = asyncio.create_task(redis_io.call("t.busy", lambda: client.get("k")))
            await asyncio.sleep(0.5)
            assert not read.done(), "BUSY must be waited out, not raised"
            await admin.script_kill()
            with pytest.raises(rex.ResponseError):
                await loop
            assert await asyncio.wait_for(read, 10) == b"v"
        finally:
            await looper.aclose()
            await admin.aclose()
            await client.aclose()

    run(scenario())


def test_a_call_completes_after_client_pause(server: Callable[..., Server]) -> None:
    srv = server()

    async def scenario() -> None:
        admin = aioredis.Redis.from_url(srv.url())
        client = redis_io.connect(srv.url())
        try:
            await client.ping()
            await admin.client_pause(2000)
            start = time.monotonic()
            assert await redis_io.call("t.pause", lambda: client.set("k", "v")) is True
            assert 1.5 < time.monotonic() - start < 10
        finally:
            await admin.aclose()
            await client.aclose()

    run(scenario())


def test_an_unreachable_redis_is_waited_for(server: Callable[..., Server]) -> None:
    port = free_port()

    async def scenario() -> None:
        client = redis_io.connect(f"redis://127.0.0.1:{port}/0")
        try:
            with pytest.raises(rex.ConnectionError):  # with attempts, the outage error itself
                await redis_io.call("t.down", client.ping, attempts=2)
            assert sample("cxstream_redis_errors_total", op="t.down") >= 2
            ping = asyncio.create_task(redis_io.call("t.down", client.ping))
            await asyncio.sleep(0.5)
            assert not ping.done()
            await asyncio.to_thread(server, port=port)
            assert await asyncio.wait_for(ping, 15) is True
        finally:
            await client.aclose()

    run(scenario())
    assert sample("cxstream_redis_outage") == 0


# ---------------------------------------------------------------------- configuration: one line, stop
def test_a_wrong_password_is_fatal_in_one_line_without_the_password(server: Callable[..., Server]) -> None:
    srv = server("--requirepass", "right-horse-battery")

    async def scenario() -> None:
        for url, says in [
            (srv.url(":wrong-staple-9981"), "WRONGPASS"),
            (srv.url("someone:wrong-staple-9981"), "WRONGPASS"),
            (srv.url(), "NOAUTH"),
            (srv.url(":right-horse-battery", db=99), "database"),
        ]:
            client = redis_io.connect(url)
            try:
                with pytest.raises(FatalError) as info:
                    await redis_io.call("t.auth", lambda: client.set("k", "v"))  # noqa: B023
            finally:
                await client.aclose()
            line = str(info.value)
            assert says in line and "CXSTREAM_REDIS_URL" in line, line
            assert "\n" not in line and "wrong-staple" not in line and "right-horse" not in line, line
            with pytest.raises(FatalError) as info:  # the start-up check names the URL, masked
                await redis_io.check(url, "cxtest")
            line = str(info.value)
            assert f"127.0.0.1:{srv.port}" in line and says in line, line
            assert "\n" not in line and "wrong-staple" not in line and "right-horse" not in line, line

    run(scenario())


# ---------------------------------------------------------------------- bugs: unchanged, not retried
def test_wrongtype_propagates_unchanged(server: Callable[..., Server]) -> None:
    srv = server()
    errors = sample("cxstream_redis_errors_total", op="t.bug")

    async def scenario() -> None:
        client = redis_io.connect(srv.url())
        try:
            await client.set("k", "v")
            start = time.monotonic()
            with pytest.raises(rex.ResponseError, match=r"^WRONGTYPE") as info:
                await redis_io.call("t.bug", lambda: client.lpush("k", "x"))
            assert type(info.value) is rex.ResponseError
            with pytest.raises(rex.ResponseError, match="attempt to compare"):  # a Lua runtime error
                await redis_io.call("t.bug", lambda: client.eval("return nil < 1", 0))
            assert time.monotonic() - start < 1
        finally:
            await client.aclose()

    run(scenario())
    assert sample("cxstream_redis_errors_total", op="t.bug") == errors


# ---------------------------------------------------------------------- the same policy for Kafka sends
class Producer:
    """faust's ``send`` shape over a script of outcomes: an exception, or None for an ack."""

    def __init__(self, script: list[BaseException | None]) -> None:
        self.script = script
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: Any, value: bytes, partition: Any, ts: Any, headers: Any) -> Any:
        outcome = self.script.pop(0) if self.script else None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if outcome is None:
            self.sent.append(value)
            fut.set_result(None)
        else:
            fut.set_exception(outcome)
        return fut


def test_kafka_outage_is_resent_and_an_acl_refusal_is_fatal() -> None:
    recs = [OutRecord("cx.activations", b"k", f"v{i}".encode(), 0) for i in range(3)]
    errors = sample("cxstream_kafka_errors_total")
    p = Producer([None, kerr.KafkaConnectionError("broker down"), kerr.RequestTimedOutError()])
    run(kafka.send_all(p, recs))
    assert p.sent == [b"v0", b"v1", b"v2"]  # in order, the failed ones again
    assert sample("cxstream_kafka_errors_total") == errors + 2
    assert sample("cxstream_kafka_outage") == 0

    denied = kerr.TopicAuthorizationFailedError("cx.activations")
    wrapped = ProducerSendError(f"Error while sending: {denied!r}")
    wrapped.__cause__ = denied
    for exc in (denied, wrapped, kerr.SaslAuthenticationFailed("bad credentials")):
        assert kafka.classify(exc) == "config"
        with pytest.raises(FatalError) as info:
            run(kafka.send_all(Producer([exc]), recs[:1]))
        assert "\n" not in str(info.value) and "Kafka" in str(info.value)
    for exc in (kerr.KafkaConnectionError(), kerr.NotLeaderForPartitionError(), RuntimeError("x")):
        assert kafka.classify(exc) == "outage"

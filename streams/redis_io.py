"""Redis connections and the one error policy every Redis call goes through.

:func:`classify` sorts whatever a Redis call raises into one of three kinds:

* ``outage``: Redis is away, slow, full (``OOM``), busy (``BUSY``: a long script), loading,
  read-only or without its primary after a failover, resharding (``TRYAGAIN``, ``MOVED``,
  ``ASK``, ``CLUSTERDOWN``), refusing writes (``MISCONF``, ``NOREPLICAS``). :func:`call`
  waits it out: capped exponential backoff until Redis answers. Every failed try is counted
  in ``cxstream_redis_errors_total{op}``; ``cxstream_redis_outage`` is 1 while any call is
  waiting; one log line says when an outage starts and one when it is over, not one per try.
  An outage slows the worker down; it does not drop events or crash-loop.
* ``config``: Redis refuses us for good (password, ACL user or permission, database number,
  a command it does not provide, a TLS certificate). :func:`call` raises
  :class:`~streams.exceptions.FatalError`, one line naming what is wrong and the fix.
* ``bug``: anything else (``WRONGTYPE``, a Lua runtime error, ``DataError``) propagates
  unchanged, so the caller can isolate the record that caused it.

Clients from :func:`connect` do not retry on their own (redis-py would, a few times, unseen
and uncounted): :func:`call` is the one retry loop. A script that timed out on the socket may
have run; retrying it is safe (the identity memo makes a re-run a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Literal, TypeVar

import hiredis
import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streams import metrics
from streams.exceptions import FatalError

log = logging.getLogger(__name__)
T = TypeVar("T")

Kind = Literal["outage", "config", "bug"]

#: Error codes (the first word of Redis's reply) worth waiting out.
OUTAGE_CODES = frozenset(
    {
        "BUSY",  # a script or module command runs long (lua-time-limit / busy-reply-threshold)
        "LOADING",  # loading the dataset after a restart
        "OOM",  # maxmemory reached, nothing evictable
        "READONLY",  # talking to a replica: a failover happened
        "MASTERDOWN",  # a replica lost its primary (replica-serve-stale-data no)
        "TRYAGAIN",  # cluster resharding a multi-key slot
        "CLUSTERDOWN",  # cluster has an uncovered slot
        "MOVED",  # cluster slot moved (failover, resharding)
        "ASK",
        "MISCONF",  # writes refused: the last RDB save failed (disk)
        "NOREPLICAS",  # writes refused: min-replicas-to-write not met
        "NOSCRIPT",  # script cache emptied (restart, failover): the retry loads it again
    }
)
#: Error codes that configuration must fix.
CONFIG_CODES = frozenset({"NOAUTH", "WRONGPASS", "NOPERM"})

#: redis-py classes of outages (``ConnectionError`` after the config classes, which derive from it).
_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # also BusyLoadingError (LOADING), MaxConnectionsError
    rex.TimeoutError,
    rex.OutOfMemoryError,
    rex.ReadOnlyError,
    rex.ClusterDownError,  # also MasterDownError
    rex.ClusterError,  # redirects or cluster errors that outlived redis-py's own attempts
    rex.TryAgainError,
    rex.AskError,  # also MovedError
    rex.NoScriptError,
    rex.SlotNotCoveredError,
    OSError,  # also TimeoutError (asyncio's, since 3.11) and ConnectionResetError
)
_CONFIG_TYPES: tuple[type[BaseException], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.NoPermissionError,
    rex.AuthenticationWrongNumberOfArgsError,
)
#: Reply texts (after an ``ERR``) that configuration must fix.
_CONFIG_TEXTS = ("unknown command", "invalid db index", "db index is out of range")
#: Redis < 7 wraps the error of a ``redis.call`` inside a script: ``...: @user_script: 1: -OOM ...``
_SCRIPT_CODE = re.compile(r"@user_script:\s*\d+:\s*-([A-Z]+)\b")

MAX_BACKOFF = 5.0


def classify(exc: BaseException) -> Kind:
    """``outage`` (wait and retry), ``config`` (stop: :class:`FatalError`) or ``bug`` (propagate)."""
    if isinstance(exc, _CONFIG_TYPES):
        return "config"
    code = _code(exc)
    if code in CONFIG_CODES:
        return "config"
    text = _said(exc).lower().removeprefix("err ")
    if isinstance(exc, rex.ResponseError) and text.startswith(_CONFIG_TEXTS):
        return "config"
    if isinstance(exc, rex.RedisError | OSError) and "certificate verify failed" in text:
        return "config"
    if code in OUTAGE_CODES or isinstance(exc, _OUTAGE_TYPES):
        return "outage"
    if isinstance(exc, rex.RedisClusterException) and text.startswith(_CLUSTER_AWAY):
        return "outage"  # no node reachable, or slots uncovered while a failover settles
    return "bug"


#: What redis-py's cluster client says (as a plain RedisClusterException) while no node answers
#: or the slot map has holes: an outage like any other, seen with every node of a test cluster killed.
_CLUSTER_AWAY = ("redis cluster cannot be connected", "all slots are not covered")


def _code(exc: BaseException) -> str:
    """The Redis error code of ``exc`` (``OOM``, ``BUSY``, ...), or ``""``."""
    if not isinstance(exc, rex.RedisError):
        return ""
    code = getattr(exc, "status_code", None)
    if code and code != "ERR":
        return str(code)
    msg = str(exc)
    first = msg.split(" ", 1)[0]
    if code is None and first.isalpha() and first.isupper():  # a code redis-py has no class for: BUSY
        return first
    m = _SCRIPT_CODE.search(msg)
    return m.group(1) if m else ""


def _said(exc: BaseException, limit: int = 200) -> str:
    """What the server (or the socket) said, on one line, without command arguments."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    code = getattr(exc, "status_code", None) if isinstance(exc, rex.RedisError) else None
    if code and code != "ERR" and not text.startswith(str(code)):
        text = f"{code} {text}"  # redis-py strips the code it turned into a class
    text = text.split(", with args beginning with", 1)[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """One line for a ``config`` error: what is wrong and the fix (Redis never echoes a password)."""
    said = _said(exc)
    low = said.lower()
    code = _code(exc)
    url = "CXSTREAM_REDIS_URL (redis://[user]:password@host:port/db)"
    if isinstance(exc, rex.AuthenticationWrongNumberOfArgsError):
        return f"this Redis has no ACL users ({said}); drop the user name from {url}"
    if "without any password configured" in low or "no password is set" in low:
        return f"CXSTREAM_REDIS_URL gives a password but this Redis needs none ({said}); remove it"
    if code == "NOAUTH" or "authentication required" in low:
        return f"this Redis requires a password and none was given ({said}); put it in {url}"
    if isinstance(exc, rex.AuthenticationError) or code == "WRONGPASS":
        return f"Redis refused the user name or password ({said}); fix them in {url}"
    if isinstance(exc, rex.AuthorizationError | rex.NoPermissionError) or code == "NOPERM":
        return (
            f"the Redis user lacks a permission ({said}); grant it in the Redis ACL (our commands on "
            f"keys under CXSTREAM_REDIS_PREFIX) or use another user in {url}"
        )
    if "db index" in low:
        return (
            f"the database in CXSTREAM_REDIS_URL does not exist on this Redis ({said}); use one below "
            "the server's `databases` setting, e.g. redis://host:6379/0"
        )
    if "unknown command" in low:
        return (
            f"this Redis lacks a command cxstream needs ({said}); use Redis 6.2 or later with the "
            "command neither renamed nor disabled"
        )
    if "certificate verify failed" in low:
        return (
            f"the TLS certificate of Redis could not be verified ({said}); fix the server certificate "
            "or give its CA: rediss://host:port/0?ssl_ca_certs=/path/ca.pem"
        )
    return f"Redis refused us ({said}); check CXSTREAM_REDIS_URL"


class Outage:
    """One outage of a backend, however many calls wait through it: a gauge at 1 meanwhile, and
    a log line when the first call starts waiting and one when the last one got through."""

    def __init__(self, name: str, gauge: Gauge, logger: logging.Logger) -> None:
        self.name = name
        self.gauge = gauge
        self.log = logger
        self.waiting = 0
        self.since = 0.0
        gauge.set(0)

    def begin(self, what: str, exc: BaseException) -> None:
        """A call failed on an outage and starts waiting."""
        self.waiting += 1
        if self.waiting == 1:
            self.since = time.monotonic()
            self.gauge.set(1)
            self.log.warning(
                "%s unavailable (%s: %s, in %s); retrying with backoff until it answers",
                self.name,
                type(exc).__name__,
                _said(exc),
                what,
            )

    def end(self, through: bool = True) -> None:
        """That call stopped waiting: it got ``through``, or gave up (cancelled, a shutdown)."""
        self.waiting -= 1
        if self.waiting == 0:
            self.gauge.set(0)
            secs = time.monotonic() - self.since
            if through:
                self.log.warning("%s is back after %.1fs", self.name, secs)
            else:
                self.log.info("%s: stopped waiting after %.1fs, without an answer", self.name, secs)


OUTAGE = Outage("redis", metrics.REDIS_OUTAGE, log)


#: argument types hiredis packs exactly as redis-py does (not bool, which redis-py refuses;
#: not float, which it spells with repr; not memoryview, which it sends in chunks)
_PLAIN = frozenset({str, bytes, int})


class _HiredisPacking:
    """A connection mixin: commands packed by hiredis (C) instead of redis-py's Python loop.

    redis-py's asyncio connection packs every argument in Python (~0.8 µs each here); a
    batch's state save or timer script carries a thousand or more (issue 13: 1,503
    arguments took 1.2 ms, hiredis 0.13 ms). Commands with another argument type, and a
    command name with a space in it (``CONFIG GET``), go to redis-py's own packer."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0] if args else None
        if isinstance(first, str) and " " not in first and _PLAIN.issuperset(map(type, args)):
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)  # type: ignore[misc,no-any-return]  # the connection class's


def _hiredis_packing(pool: aioredis.ConnectionPool) -> None:
    """Make the pool's connections (none made yet) pack with :class:`_HiredisPacking`."""
    base = pool.connection_class
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})


def connect(url: str) -> aioredis.Redis:
    """A client with timeouts, so a dead server is an error we retry, not a hang, and with no
    retries of its own: :func:`call` is the one retry loop (counted, logged, capped).
    Commands are packed by hiredis (:class:`_HiredisPacking`)."""
    client = aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
    _hiredis_packing(client.connection_pool)
    return client


async def call(op: str, fn: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
    """Run ``fn`` until it succeeds, waiting out outages with backoff (see :func:`classify`).

    A ``config`` error raises :class:`FatalError`; a ``bug`` propagates as raised. With
    ``attempts``, the outage error itself is raised once that many tries failed.
    """
    delay = 0.05
    n = 0
    waiting = through = False
    try:
        while True:
            n += 1
            start = time.perf_counter()
            try:
                result = await fn()
            except Exception as exc:
                kind = classify(exc)
                if kind == "bug":
                    raise
                if kind == "config":
                    raise FatalError(f"redis {op}: {describe(exc)}") from exc
                metrics.REDIS_ERRORS.labels(op).inc()
                if attempts is not None and n >= attempts:
                    raise
                if n == 1 and type(exc) is rex.ConnectionError:
                    continue  # perhaps a pooled connection the server closed (restart, idle cut): a fresh one
                if not waiting:
                    waiting = True
                    OUTAGE.begin(op, exc)
                log.debug("redis %s failed (%s); retrying in %.2fs", op, type(exc).__name__, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            metrics.REDIS_SECONDS.labels(op).observe(time.perf_counter() - start)
            through = True
            return result
    finally:
        if waiting:
            OUTAGE.end(through)


async def check(url: str, prefix: str, *, cluster: bool = False) -> None:
    """Start-up check: Redis answers, takes our credentials and database, and lets us write and
    run a script on a key under ``prefix``. An outage is waited out (logged once); a refusal that
    waiting will not fix raises :class:`FatalError`, one line with the URL's password masked."""
    from streams.settings import _mask_url

    where = f"Redis at {_mask_url(url)}"
    client = connect_any(url, cluster=cluster)
    key = "{" + prefix + ":check}"

    async def probe() -> None:
        await client.ping()
        await client.eval("return redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)", 1, key, "1")
        await client.delete(key)

    try:
        await call("check", probe)
    except FatalError as exc:
        raise FatalError(f"{where}: {describe(exc.__cause__ or exc)}") from exc.__cause__
    except Exception as exc:  # a bug kind: e.g. not a Redis on that port
        raise FatalError(f"{where} answered with an error ({_said(exc)}); check CXSTREAM_REDIS_URL") from exc
    finally:
        await client.aclose()


def lua(package: str, name: str) -> str:
    """The source of a Lua script shipped beside a module."""
    return resources.files(package).joinpath(name).read_text()


#: What the stores hold: one server, or a Redis Cluster (``CXSTREAM_REDIS_CLUSTER=true``).
Client = aioredis.Redis | aioredis.RedisCluster


def connect_cluster(url: str) -> aioredis.RedisCluster:
    """A Redis Cluster client: ``url`` names any one node, the others are found from it
    (CLUSTER SLOTS). Same timeouts as :func:`connect`. Scripts and pipelines work as on one
    server if each script's keys share one slot.

    redis-py follows MOVED/ASK itself, and retries once after a connection error or
    CLUSTERDOWN: that one retry is what makes it reload the slot map (a cluster pipeline
    reloads it only on its retry path, so with none it would keep calling a dead primary).
    What still fails reaches :func:`call`, which waits the failover out (a few seconds).
    """
    return aioredis.RedisCluster.from_url(
        url,
        decode_responses=False,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1),
    )


def connect_any(url: str, *, cluster: bool = False) -> Client:
    """:func:`connect_cluster` if ``cluster`` (``Settings.redis_cluster``), else :func:`connect`."""
    return connect_cluster(url) if cluster else connect(url)

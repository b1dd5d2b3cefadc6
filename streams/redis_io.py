"""Redis connections and the one retry policy every Redis call goes through.

An outage slows the worker down, it does not drop events or crash-loop: a failed call
is retried with capped exponential backoff until Redis answers, counted in
``cxstream_redis_errors_total`` and timed in ``cxstream_redis_call_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rex

from streams import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors worth waiting out. Anything else is a bug and propagates.
TRANSIENT = (rex.ConnectionError, rex.TimeoutError, rex.BusyLoadingError, rex.TryAgainError, OSError)
MAX_BACKOFF = 5.0


def connect(url: str) -> aioredis.Redis:
    """A client with timeouts, so a dead server is an error we retry, not a hang."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


async def call(op: str, fn: Callable[[], Awaitable[T]], *, attempts: int | None = None) -> T:
    """Run ``fn`` until it succeeds (or ``attempts`` run out), backing off while Redis is away."""
    delay = 0.05
    n = 0
    while True:
        n += 1
        start = time.perf_counter()
        try:
            result = await fn()
        except TRANSIENT as exc:
            metrics.REDIS_ERRORS.labels(op).inc()
            if attempts is not None and n >= attempts:
                raise
            log.warning("redis %s failed (%s); retrying in %.2fs", op, exc.__class__.__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        metrics.REDIS_SECONDS.labels(op).observe(time.perf_counter() - start)
        return result


def lua(package: str, name: str) -> str:
    """The source of a Lua script shipped beside a module."""
    return resources.files(package).joinpath(name).read_text()

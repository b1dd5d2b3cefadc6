"""``messageId`` dedupe within a TTL (24 h by default): one Redis script call per batch
(on a Redis Cluster: one per hash-tag bucket, in one pipeline).

The marker stores the source coordinate (topic/partition/offset) that first claimed the
id, so a *redelivery* of that same record after a crash is not mistaken for a duplicate
(it would otherwise be dropped and lost).
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from streams import redis_io
from streams.constants import Keys, dedupe_bucket

# KEYS: the markers, in order; ARGV: the TTL, then the coordinate of each key. The TTL goes to
# SET as the string it came as (a Lua number would be formatted with snprintf('%.17g') per key).
_CHECK = """
local out = {}
local ttl = ARGV[1]
for j = 1, #KEYS do
  if redis.call('SET', KEYS[j], ARGV[j + 1], 'NX', 'EX', ttl) then
    out[j] = 1
  elseif redis.call('GET', KEYS[j]) == ARGV[j + 1] then
    out[j] = 1
  else
    out[j] = 0
  end
end
return out
"""


# Delete a marker only if it still holds this coordinate (another occurrence's claim stays).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DedupeStore(ABC):
    """Remembers which source coordinate first claimed each ``messageId``, for a TTL."""

    @abstractmethod
    async def release(self, items: Sequence[tuple[str, str]]) -> None:
        """Give up the claims of these ``(message_id, coordinate)`` pairs, where the coordinate
        still holds them: the record was dead-lettered after its check, so a replay of it from
        the dead-letter topic (another coordinate) must not count as a duplicate."""

    @abstractmethod
    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(message_id, source coordinate)``, in order: True if fresh (or our own
        redelivery), False if another coordinate claimed the id within the TTL.

        Called once per intake batch, before identity resolution. A fresh id is claimed by the
        call itself, so a second occurrence later in the same batch is already a duplicate.
        Raising fails the batch (the Redis store retries with backoff first).
        """


class MemoryDedupeStore(DedupeStore):
    """In-process twin of :class:`RedisDedupeStore` (``simulate``, tests): same answers, same TTL."""

    def __init__(self, ttl_seconds: float | None = None, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self.seen: dict[str, tuple[str, float]] = {}  # id -> (coordinate, expiry); insertion = expiry order

    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        now = self.clock()
        self._expire(now)
        out = []
        for mid, coord in items:
            prev = self.seen.get(mid)
            if prev is None:
                self.seen[mid] = (coord, now + self.ttl if self.ttl is not None else float("inf"))
                out.append(True)
            else:
                out.append(prev[0] == coord)
        return out

    async def release(self, items: Sequence[tuple[str, str]]) -> None:
        for mid, coord in items:
            if self.seen.get(mid, ("",))[0] == coord:
                del self.seen[mid]

    def _expire(self, now: float) -> None:
        if self.ttl is None:
            return
        while self.seen:
            mid, (_, expiry) = next(iter(self.seen.items()))
            if expiry > now:
                return
            del self.seen[mid]


class RedisDedupeStore(DedupeStore):
    """Markers ``{P:dd:<bucket>}:<messageId>``, spread over ``DEDUPE_BUCKETS`` hash tags.

    One server: one script call per batch, whatever the buckets. Cluster: a script may touch
    one slot only, so one call per bucket present in the batch, all in one pipeline (redis-py
    sends one pipeline per primary, concurrently). A messageId always lands in one bucket, so
    its occurrences in a batch meet in one call, in order: the first claim wins as on one server.
    """

    def __init__(self, client: redis_io.Client, keys: Keys, ttl_seconds: int) -> None:
        self.keys = keys
        self.ttl = ttl_seconds
        self._check = client.register_script(_CHECK)
        self._cluster = client if isinstance(client, aioredis.RedisCluster) else None
        self._release = client.register_script(_RELEASE)

    async def release(self, items: Sequence[tuple[str, str]]) -> None:
        for mid, coord in items:  # rare (records dead-lettered after the check): one call each
            call = functools.partial(self._release, keys=[self.keys.dedupe(mid)], args=[coord])
            await redis_io.call("dedupe.release", call)

    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        if not items:
            return []
        if self._cluster is not None:
            return await redis_io.call("dedupe", lambda: self._check_buckets(items))
        keys = [self.keys.dedupe(mid) for mid, _ in items]
        args: list[str | int] = [self.ttl, *(coord for _, coord in items)]
        res = await redis_io.call("dedupe", lambda: self._check(keys=keys, args=args))
        return [bool(x) for x in res]

    async def _check_buckets(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        assert self._cluster is not None
        buckets: dict[int, list[int]] = {}
        for n, (mid, _) in enumerate(items):
            buckets.setdefault(dedupe_bucket(mid), []).append(n)
        out = [False] * len(items)
        todo = list(buckets.values())
        for _ in range(3):
            pipe = self._cluster.pipeline(transaction=False)
            for idx in todo:
                # by name, EVALSHA is blocked on redis-py's cluster pipeline (it cannot load a
                # missing script there); routed by its KEYS it works, and NOSCRIPT is handled below
                keys = [self.keys.dedupe(items[n][0]) for n in idx]
                pipe.execute_command(
                    "EVALSHA", self._check.sha, len(idx), *keys, self.ttl, *[items[n][1] for n in idx]
                )
            missing = []
            for idx, res in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                if isinstance(res, NoScriptError):  # a primary that never saw it (new, or failed over)
                    missing.append(idx)
                elif isinstance(res, BaseException):
                    raise res  # redis_io.call decides: wait it out, or a bug
                else:
                    for n, x in zip(idx, res, strict=True):
                        out[n] = bool(x)
            if not missing:
                return out
            await self._cluster.script_load(_CHECK)  # to every primary
            todo = missing
        raise NoScriptError("dedupe script still missing on a primary after loading it 3 times")

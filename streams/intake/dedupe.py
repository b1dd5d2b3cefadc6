"""``messageId`` dedupe within a TTL (24 h by default): one Redis script call per batch.

The marker stores the source coordinate (topic/partition/offset) that first claimed the
id, so a *redelivery* of that same record after a crash is not mistaken for a duplicate
(it would otherwise be dropped and lost).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from streams import redis_io
from streams.constants import Keys

_CHECK = """
local out = {}
local ttl = tonumber(ARGV[1])
for j = 2, #ARGV, 2 do
  local key = KEYS[1] .. ':' .. ARGV[j]
  local ok = redis.call('SET', key, ARGV[j + 1], 'NX', 'EX', ttl)
  if ok then
    table.insert(out, 1)
  elseif redis.call('GET', key) == ARGV[j + 1] then
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
return out
"""


class DedupeStore(ABC):
    """Remembers which source coordinate first claimed each ``messageId``, for a TTL."""

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

    def _expire(self, now: float) -> None:
        if self.ttl is None:
            return
        while self.seen:
            mid, (_, expiry) = next(iter(self.seen.items()))
            if expiry > now:
                return
            del self.seen[mid]


class RedisDedupeStore(DedupeStore):
    def __init__(self, client: aioredis.Redis, keys: Keys, ttl_seconds: int) -> None:
        self.keys = keys
        self.ttl = ttl_seconds
        self._check = client.register_script(_CHECK)

    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        if not items:
            return []
        args: list[str | int] = [self.ttl]
        for mid, coord in items:
            args += [mid, coord]
        res = await redis_io.call("dedupe", lambda: self._check(keys=[self.keys.dedupe_tag], args=args))
        return [bool(x) for x in res]

"""``messageId`` dedupe within a TTL (24 h by default): one Redis script call per batch.

The marker stores the source coordinate (topic/partition/offset) that first claimed the
id, so a *redelivery* of that same record after a crash is not mistaken for a duplicate
(it would otherwise be dropped and lost).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

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
    @abstractmethod
    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        """For each ``(message_id, source coordinate)``: True if fresh (or our own redelivery)."""


class MemoryDedupeStore(DedupeStore):
    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    async def check(self, items: Sequence[tuple[str, str]]) -> list[bool]:
        out = []
        for mid, coord in items:
            prev = self.seen.setdefault(mid, coord)
            out.append(prev == coord)
        return out


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

"""The identity graph in Redis: one Lua call per batch (see ``resolve.lua``)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from streams import redis_io
from streams.constants import Keys
from streams.identity.base import (
    IdentityRules,
    IdentityStore,
    Merge,
    ProfileView,
    Resolution,
    ResolveRequest,
)
from streams.model import Identifier, dumps, loads

_FORGET = """
local G = KEYS[1]
local function pkey(pid) return G .. ':p:' .. pid end
local pid = ARGV[1]
local gone = {}
if redis.call('EXISTS', pkey(pid)) == 0 then return gone end
local all = redis.call('SMEMBERS', pkey(pid) .. ':absorbed')
table.sort(all)
table.insert(all, 1, pid)
for _, p in ipairs(all) do
  local k = pkey(p)
  for _, m in ipairs(redis.call('SMEMBERS', k .. ':ids')) do
    local t, v = string.match(m, '^([^:]+):(.*)$')
    local key = G .. ':i:' .. t .. ':' .. v
    if redis.call('GET', key) == p then redis.call('DEL', key) end
  end
  redis.call('DEL', k, k .. ':ids', k .. ':traits', k .. ':ch', k .. ':merges', k .. ':absorbed')
  table.insert(gone, p)
end
return gone
"""


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _arr(x: Any) -> list[Any]:
    # Redis' cjson encodes an empty Lua table as {}: read it as the empty list it is.
    return x if isinstance(x, list) else []


class RedisIdentityStore(IdentityStore):
    def __init__(self, client: aioredis.Redis, keys: Keys, rules: IdentityRules | None = None) -> None:
        self.client = client
        self.keys = keys
        self.rules = rules or IdentityRules()
        self._resolve = client.register_script(redis_io.lua("streams.identity", "resolve.lua"))
        self._forget = client.register_script(_FORGET)
        self._rules_json = dumps(
            {
                "limits": dict(self.rules.limits) or {"_": 1 << 30},
                "max_ids": self.rules.max_identifiers,
                "max_merges": self.rules.max_merges,
            }
        )

    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        if not batch:
            return []
        payload = dumps(
            [
                {
                    "m": r.message_id,
                    "ts": r.ts,
                    "ch": r.channel,
                    "ids": [[i.type, i.value] for i in self.rules.prepare(r)],
                    **({"tr": r.traits} if r.traits else {}),
                }
                for r in batch
            ]
        )
        raw = await redis_io.call(
            "identity.resolve",
            lambda: self._resolve(keys=[self.keys.graph], args=[payload, self._rules_json]),
        )
        out = []
        for pid, outcome, created, merges, dropped in loads(raw):
            out.append(
                Resolution(
                    profile_id=pid,
                    outcome=outcome,
                    created=bool(created),
                    merges=tuple(
                        Merge(s, a, tuple(Identifier(t, v) for t, v in _arr(link)), int(ts))
                        for s, a, link, ts in _arr(merges)
                    ),
                    dropped=tuple(Identifier(t, v) for t, v in _arr(dropped)),
                )
            )
        return out

    async def _live(self, pid: str) -> str:
        for _ in range(64):
            nxt = await redis_io.call(
                "identity.read", functools.partial(self.client.hget, self.keys.profile(pid), "mi")
            )
            if nxt is None:
                return pid
            pid = _text(nxt)
        return pid

    async def lookup(self, identifier: Identifier) -> str | None:
        key = self.keys.identifier(identifier.type, identifier.value)
        raw = await redis_io.call("identity.read", functools.partial(self.client.get, key))
        return await self._live(_text(raw)) if raw else None

    async def profile(self, profile_id: str) -> ProfileView | None:
        pid = await self._live(profile_id)
        k = self.keys.profile(pid)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(k)
        pipe.smembers(k + ":ids")
        pipe.hgetall(k + ":traits")
        pipe.hgetall(k + ":ch")
        pipe.lrange(k + ":merges", 0, -1)
        meta, ids, traits, chans, merges = await redis_io.call("identity.read", pipe.execute)
        if not meta:
            return None
        idents = [Identifier.parse(m.decode()) for m in ids]
        return ProfileView(
            profile_id=pid,
            created=int(meta[b"c"]),
            first_seen=int(meta[b"fs"]),
            last_seen=int(meta[b"ls"]),
            identifiers=self.rules.ordered(idents),
            traits={k.decode(): tuple(loads(v)) for k, v in traits.items()},
            channels={k.decode(): int(v) for k, v in chans.items()},
            merges=[loads(m) for m in merges],
        )

    async def forget(self, profile_id: str) -> list[str]:
        """Erase the live profile and every profile it absorbed: index keys, meta, ids, traits,
        channels, merge records. Atomic (one script); returns ``[live id, *absorbed ids sorted]``."""
        pid = await self._live(profile_id)
        gone = await redis_io.call(
            "identity.forget", lambda: self._forget(keys=[self.keys.graph], args=[pid])
        )
        return [g.decode() for g in gone]

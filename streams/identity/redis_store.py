"""The identity graph in Redis: one Lua call per chunk of a batch (see ``resolve.lua``).

A batch goes to Redis in consecutive chunks of at most :data:`MAX_IDS_PER_CALL` identifiers
(an event is never split), so one script call, during which Redis serves no one else, stays
short whatever the batch holds. Each event is resolved atomically; a chunk is too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, Final

import redis.asyncio as aioredis

from streams import redis_io
from streams.constants import ANONYMOUS_TYPES, MERGED_POINTER_TTL, Keys, retention_margin
from streams.identity.base import (
    IdentityRules,
    IdentityStore,
    Merge,
    ProfileView,
    Resolution,
    ResolveRequest,
)
from streams.model import Identifier, dumps, loads

#: Most identifiers (as ``IdentityRules.prepare`` leaves them) resolved in one script call: Redis serves
#: no other client while a script runs. Measured with bench/bench_identity.py (redis-server 6.2, a
#: shared 2-core box): a chunk of 2,000 all-new identifiers, the costliest kind (a GET, SET and SADD
#: each), holds Redis ~10 ms (up to ~30 ms under load); limit drops and known profiles cost less per
#: identifier. One unchunked call of 500 events x 50 identifiers held it 5 s before resolution was
#: made linear. The worker's own decide stage is one of the clients kept waiting: with chunks of
#: 2,000, a batch of 1,000 mixed events was one call of ~35 ms, and decide's state loads and
#: commits queued behind it while the worker's thread sat idle (bench_ratio.py --trace, issue 13);
#: with 500, such a batch is ~3 calls of ~11 ms, and they slip in between.
MAX_IDS_PER_CALL: Final = 500

#: Seconds a resolution memo lives by default: as long as a dedupe marker (``dedupe_ttl``).
DEFAULT_MEMO_TTL: Final = 24 * 3600

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
  for _, occ in ipairs(redis.call('ZRANGE', k .. ':r', 0, -1)) do  -- resolution memos of its events
    redis.call('DEL', G .. ':r:' .. occ)
  end
  for _, m in ipairs(redis.call('SMEMBERS', k .. ':ids')) do
    local t, v = string.match(m, '^([^:]+):(.*)$')
    local key = G .. ':i:' .. t .. ':' .. v
    if redis.call('GET', key) == p then redis.call('DEL', key) end
  end
  redis.call('DEL', k, k .. ':ids', k .. ':traits', k .. ':ch', k .. ':merges', k .. ':absorbed', k .. ':r')
  table.insert(gone, p)
end
return gone
"""


def _text(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _arr(x: Any) -> list[Any]:
    # Redis' cjson encodes an empty Lua table as {}: read it as the empty list it is.
    return x if isinstance(x, list) else []


def chunks(sizes: Sequence[int], limit: int) -> Iterator[range]:
    """Consecutive index ranges whose ``sizes`` add up to at most ``limit`` (one item may exceed it alone)."""
    start, total = 0, 0
    for n, size in enumerate(sizes):
        if n > start and total + size > limit:
            yield range(start, n)
            start, total = n, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))


def _resolution(row: list[Any]) -> Resolution:
    pid, outcome, created, merges, dropped = row
    if not merges and not dropped:  # most events (~0.4 us against ~1.2 with the empty tuples built)
        return Resolution(pid, outcome, bool(created))
    return Resolution(
        profile_id=pid,
        outcome=outcome,
        created=bool(created),
        merges=tuple(
            Merge(s, a, tuple(Identifier(t, v) for t, v in _arr(link)), int(ts))
            for s, a, link, ts in _arr(merges)
        ),
        dropped=tuple(Identifier(t, v) for t, v in _arr(dropped)),
    )


class RedisIdentityStore(IdentityStore):
    """``memo_ttl``: seconds the resolution of an event occurrence (``ResolveRequest.source`` set) is
    remembered for replays; wire it to ``Settings.dedupe_ttl``. ``max_ids_per_call``: chunk size.

    ``anonymous_ttl``: seconds an anonymous-only profile (identifiers of
    :data:`~streams.constants.ANONYMOUS_TYPES` only) lives after the last event resolved to it,
    at most :func:`~streams.constants.retention_margin` more (Redis expiry, refreshed by events
    once it has fallen below ``anonymous_ttl``; ``None`` keeps every profile); wire it to
    ``Settings.anonymous_retention_days``. ``merged_ttl``: seconds the pointer left by an absorbed
    profile lives (``None``: forever)."""

    def __init__(
        self,
        client: aioredis.Redis | aioredis.RedisCluster,
        keys: Keys,
        rules: IdentityRules | None = None,
        memo_ttl: int = DEFAULT_MEMO_TTL,
        max_ids_per_call: int = MAX_IDS_PER_CALL,
        anonymous_ttl: int | None = None,
        merged_ttl: int | None = MERGED_POINTER_TTL,
    ) -> None:
        if memo_ttl < 1 or max_ids_per_call < 1:
            raise ValueError("memo_ttl and max_ids_per_call must be at least 1")
        if (anonymous_ttl is not None and anonymous_ttl < 1) or (merged_ttl is not None and merged_ttl < 1):
            raise ValueError("anonymous_ttl and merged_ttl must be at least 1 second (or None: no expiry)")
        self.client = client
        self.keys = keys
        self.rules = rules or IdentityRules()
        self.memo_ttl = memo_ttl
        self.max_ids_per_call = max_ids_per_call
        self._resolve = client.register_script(redis_io.lua("streams.identity", "resolve.lua"))
        self._forget = client.register_script(_FORGET)
        self._rules_json = dumps(
            {
                "limits": dict(self.rules.limits) or {"_": 1 << 30},
                "max_ids": self.rules.max_identifiers,
                "max_merges": self.rules.max_merges,
                "anon_ttl": anonymous_ttl or 0,
                "anon_margin": retention_margin(anonymous_ttl) if anonymous_ttl else 0,
                "merged_ttl": merged_ttl or 0,
                "anon_types": sorted(ANONYMOUS_TYPES),
            }
        )

    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        events = []
        for r in batch:
            ev: dict[str, Any] = {
                "m": r.message_id,
                "ts": r.ts,
                "ch": r.channel,
                "ids": [[i.type, i.value] for i in self.rules.prepare(r)],
            }
            if r.traits:
                ev["tr"] = r.traits
            if r.source:
                ev["src"] = r.source
            if r.alias_of:
                ev["al"] = r.alias_of
            events.append(ev)
        out: list[Resolution] = []
        for run in chunks([len(ev["ids"]) for ev in events], self.max_ids_per_call):
            args: list[bytes | str | int] = [
                dumps(events[run.start : run.stop]),
                self._rules_json,
                self.memo_ttl,
            ]
            raw = await redis_io.call(
                "identity.resolve", functools.partial(self._resolve, keys=[self.keys.graph], args=args)
            )
            out += [_resolution(row) for row in loads(raw)]
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

        async def read() -> list[Any]:  # a fresh pipeline per attempt: a failed execute empties it
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k)
            pipe.smembers(self.keys.profile_identifiers(pid))
            pipe.hgetall(self.keys.profile_traits(pid))
            pipe.hgetall(self.keys.profile_channels(pid))
            pipe.lrange(self.keys.profile_merges(pid), 0, -1)
            return list(await pipe.execute())

        meta, ids, traits, chans, merges = await redis_io.call("identity.read", read)
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

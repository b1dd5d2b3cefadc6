"""Where the per-profile state of the decision stage is kept (the state itself:
:class:`streams.state.ProfileState`, outside this package).

One JSON document per profile (Redis key ``{P:s:<pid>}``), loaded and saved once per
batch. Only the worker that owns the profile's partition of the repartition topic
touches it, so no two writers race on one profile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import RedisCluster

from streams import redis_io
from streams.constants import ANONYMOUS_TYPES, Keys, retention_margin
from streams.state import ProfileState


class StateStore(ABC):
    @abstractmethod
    async def load(self, pids: Iterable[str]) -> dict[str, ProfileState]:
        """The states of these profiles; a fresh state for one never seen. One round trip."""

    @abstractmethod
    async def save(self, states: Mapping[str, ProfileState | None]) -> None:
        """Write these states; ``None`` deletes. One round trip."""


async def load_with(
    store: StateStore, pids: Iterable[str], carried: Mapping[str, ProfileState | None]
) -> dict[str, ProfileState]:
    """``store.load(pids)``, except for the profiles in ``carried``, what a commit still in flight
    writes (:meth:`streams.runtime.Runtime.decide_batch`): a copy of that state, as the store
    holds it once the commit has landed (a fresh state for ``None``, a delete)."""
    if not carried:
        return await store.load(pids)
    out: dict[str, ProfileState] = {}
    rest: list[str] = []
    for p in set(pids):
        if p not in carried:
            rest.append(p)
        elif (s := carried[p]) is None:
            out[p] = ProfileState()
        else:  # a copy: the commit in flight writes the object it holds, as it is now
            out[p] = ProfileState.from_json(s.to_json())
    if rest:
        out.update(await store.load(rest))
    return out


class MemoryStateStore(StateStore):
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def load(self, pids: Iterable[str]) -> dict[str, ProfileState]:
        return {
            p: ProfileState.from_json(self.data[p]) if p in self.data else ProfileState() for p in set(pids)
        }

    async def save(self, states: Mapping[str, ProfileState | None]) -> None:
        for p, s in states.items():
            if s is None:
                self.data.pop(p, None)
            else:
                self.data[p] = s.to_json()


#: one server: a batch's states written in one script call (a pipeline of SET ... EX per
#: expiring state cost ~20 µs of redis-py per key, issue 13). ARGV pairs: seconds to live
#: (``-1`` deletes, ``0`` keeps no expiry, as MSET would), then the document. The TTL goes to
#: SET as the string it came as: a Lua number would be formatted with snprintf('%.17g'), ~1,800
#: instructions a key.
_SAVE = """
for i, key in ipairs(KEYS) do
  local ttl = ARGV[2 * i - 1]
  local n = tonumber(ttl)
  if n < 0 then
    redis.call('DEL', key)
  elseif n == 0 then
    redis.call('SET', key, ARGV[2 * i])
  else
    redis.call('SET', key, ARGV[2 * i], 'EX', ttl)
  end
end
return #KEYS
"""


class RedisStateStore(StateStore):
    def __init__(
        self,
        client: redis_io.Client,
        keys: Keys,
        tombstone_ttl: int = 30 * 86400,
        anonymous_ttl: int | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.tombstone_ttl = tombstone_ttl
        self._anonymous_ttl: int | None = None
        self._anonymous_expiry: int | None = None
        self.anonymous_ttl = anonymous_ttl
        # Each profile's key has its own hash tag: its states spread over a cluster's slots (and
        # so its memory over the nodes); batching them per partition on one slot would not.
        self.cluster = isinstance(client, RedisCluster)
        self._save = None if self.cluster else client.register_script(_SAVE)

    async def load(self, pids: Iterable[str]) -> dict[str, ProfileState]:
        order = sorted(set(pids))
        if not order:
            return {}

        keys = [self.keys.state(p) for p in order]

        async def run() -> list[bytes | None]:
            if not self.cluster:  # one server: one MGET for the whole batch
                got = await self.client.mget(keys)
                return [r.encode() if isinstance(r, str) else r for r in got]
            # a cluster: one GET per key, the cluster pipeline sends them node by node
            pipe = self.client.pipeline(transaction=False)
            for k in keys:
                pipe.get(k)
            return list(await pipe.execute())

        raws = await redis_io.call("state.load", run)
        return {
            p: ProfileState.from_json(r) if r else ProfileState() for p, r in zip(order, raws, strict=True)
        }

    async def save(self, states: Mapping[str, ProfileState | None]) -> None:
        if not states:
            return
        if self._save is not None:  # one server: one script call for the batch
            keys, args = self._save_args(states)
            script = self._save
            await redis_io.call("state.save", lambda: script(keys=keys, args=args))
            return

        async def run() -> None:  # a cluster: one command per key, the pipeline sends them node by node
            pipe = self.client.pipeline(transaction=False)
            for p, s in states.items():
                key = self.keys.state(p)
                if s is None:
                    pipe.delete(key)
                elif (ttl := self.ttl(s)) is None:
                    pipe.set(key, s.to_json())
                else:
                    pipe.set(key, s.to_json(), ex=ttl)
            await pipe.execute()

        await redis_io.call("state.save", run)

    async def queue_save(self, pipe: Any, states: Mapping[str, ProfileState | None]) -> None:
        """What :meth:`save` sends on one server, queued on a pipeline of that server (the decide
        stage's commit in one round trip)."""
        if states:
            if self._save is None:
                raise TypeError("queue_save is for one server: a cluster saves key by key")
            keys, args = self._save_args(states)
            await self._save(keys=keys, args=args, client=pipe)

    def _save_args(self, states: Mapping[str, ProfileState | None]) -> tuple[list[str], list[int | bytes]]:
        """``_SAVE``'s keys and arguments: per state its TTL (0: none, -1: delete) and document."""
        keys: list[str] = []
        args: list[int | bytes] = []
        for p, s in states.items():
            keys.append(self.keys.state(p))
            if s is None:
                args.append(-1)
                args.append(b"")
            else:
                args.append(self.ttl(s) or 0)
                args.append(s.to_json())
        return keys, args

    @property
    def anonymous_ttl(self) -> int | None:
        """Seconds an anonymous-only profile's state lives after its last save (retention,
        ``Settings.anonymous_retention_days``); ``None``: no expiry."""
        return self._anonymous_ttl

    @anonymous_ttl.setter
    def anonymous_ttl(self, ttl: int | None) -> None:
        self._anonymous_ttl = ttl
        # what ttl() gives an anonymous-only profile, worked out once: it is asked for every state
        # saved (calling the margin's function each time was ~12% of a commit's CPU, issue 13)
        self._anonymous_expiry = None if ttl is None else ttl + retention_margin(ttl)

    def ttl(self, s: ProfileState) -> int | None:
        """Seconds the saved state may live, or ``None`` for no expiry: a tombstone (merged away)
        lives ``tombstone_ttl``; an anonymous-only profile (``reach`` holds only anonymous identifier
        types) lives ``anonymous_ttl`` from this save, plus the margin its graph keys may outlive the
        period by (:func:`~streams.constants.retention_margin`), so that the state is not gone while
        the graph still resolves the person to it. Called by :meth:`save` for every state it writes."""
        if s.merged_into:
            return self.tombstone_ttl
        expiry = self._anonymous_expiry
        if expiry is not None and ANONYMOUS_TYPES.issuperset(s.reach):
            return expiry
        return None

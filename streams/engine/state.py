"""Per-profile state of the decision stage, and where it is kept.

One JSON document per profile (Redis key ``{P:s:<pid>}``), loaded and saved once per
batch. Only the worker that owns the profile's partition of the repartition topic
touches it, so no two writers race on one profile.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from streams import redis_io
from streams.constants import Keys
from streams.model import JSONDict, dumps, loads

#: Consent history entry: [granted, event ms, source]
ConsentEntry = list[Any]


@dataclass(slots=True)
class ProfileState:
    #: purpose -> history of [granted, ts, source], oldest first, bounded
    consent: dict[str, list[ConsentEntry]] = field(default_factory=dict)
    #: rule name -> the rule's own state
    rules: dict[str, JSONDict] = field(default_factory=dict)
    #: pending timers of this profile: ``rule|name`` -> due ms (they follow a merge)
    timers: dict[str, int] = field(default_factory=dict)
    #: payloads of those timers that have one: ``rule|name`` -> payload (they follow a merge too)
    tpay: dict[str, JSONDict] = field(default_factory=dict)
    #: failed attempts of a timer whose rule raised: ``rule|name`` -> count (bounded retries)
    fails: dict[str, int] = field(default_factory=dict)
    #: rule name -> event ms of its last trigger (cooldowns)
    cool: dict[str, int] = field(default_factory=dict)
    #: channel -> event ms of recent activations (frequency caps)
    caps: dict[str, list[int]] = field(default_factory=dict)
    #: zero-party preferences: channels or topics the customer chose, as data
    prefs: JSONDict = field(default_factory=dict)
    country: str | None = None
    #: identifier types the profile has (who can be reached where)
    reach: list[str] = field(default_factory=list)
    #: profiles merged into this one (makes a repeated hand-off a no-op)
    absorbed: list[str] = field(default_factory=list)
    #: absorbed profiles whose hand-off is announced but not yet here: events wait in ``buffer``
    pending: list[str] = field(default_factory=list)
    #: repartition records held while a hand-off is pending, applied in order once it arrives
    buffer: list[JSONDict] = field(default_factory=list)
    #: wall ms since when ``pending`` has been waited for (the hand-off timeout counts from it)
    since: int = 0
    #: set when this profile was merged away: events for it go to the survivor
    into: str | None = None
    #: offset of the last repartition record applied to this profile (redelivery is a no-op)
    off: int = -1

    def become_tombstone(self, into: str) -> None:
        """Forget everything but the applied offset, and point at the survivor."""
        fresh = ProfileState(into=into, off=self.off)
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def restore(self, raw: bytes) -> None:
        """Become the state ``raw`` (from :meth:`to_json`) again, in place: undo a failed change."""
        old = ProfileState.from_json(raw)
        for f in fields(self):
            setattr(self, f.name, getattr(old, f.name))

    def to_json(self) -> bytes:
        d: JSONDict = {"off": self.off}
        for name in (
            "consent",
            "rules",
            "timers",
            "tpay",
            "fails",
            "cool",
            "caps",
            "prefs",
            "reach",
            "absorbed",
            "pending",
            "buffer",
        ):
            v = getattr(self, name)
            if v:
                d[name] = v
        if self.country:
            d["country"] = self.country
        if self.into:
            d["into"] = self.into
        if self.since:
            d["since"] = self.since
        return dumps(d)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProfileState:
        d = loads(raw)
        return cls(
            consent=d.get("consent", {}),
            rules=d.get("rules", {}),
            timers=d.get("timers", {}),
            tpay=d.get("tpay", {}),
            fails=d.get("fails", {}),
            cool=d.get("cool", {}),
            caps=d.get("caps", {}),
            prefs=d.get("prefs", {}),
            country=d.get("country"),
            reach=d.get("reach", []),
            absorbed=d.get("absorbed", []),
            pending=d.get("pending", []),
            buffer=d.get("buffer", []),
            into=d.get("into"),
            since=d.get("since", 0),
            off=d.get("off", -1),
        )


class StateStore(ABC):
    @abstractmethod
    async def load(self, pids: Iterable[str]) -> dict[str, ProfileState]:
        """The states of these profiles; a fresh state for one never seen. One round trip."""

    @abstractmethod
    async def save(self, states: Mapping[str, ProfileState | None]) -> None:
        """Write these states; ``None`` deletes. One round trip."""


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


class RedisStateStore(StateStore):
    def __init__(self, client: redis_io.Client, keys: Keys, tombstone_ttl: int = 30 * 86400) -> None:
        self.client = client
        self.keys = keys
        self.tombstone_ttl = tombstone_ttl

    async def load(self, pids: Iterable[str]) -> dict[str, ProfileState]:
        order = sorted(set(pids))
        if not order:
            return {}

        async def run() -> list[bytes | None]:
            pipe = self.client.pipeline(transaction=False)
            for p in order:
                pipe.get(self.keys.state(p))
            return await pipe.execute()

        raws = await redis_io.call("state.load", run)
        return {
            p: ProfileState.from_json(r) if r else ProfileState() for p, r in zip(order, raws, strict=True)
        }

    async def save(self, states: Mapping[str, ProfileState | None]) -> None:
        if not states:
            return

        async def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            for p, s in states.items():
                if s is None:
                    pipe.delete(self.keys.state(p))
                elif s.into:
                    pipe.set(self.keys.state(p), s.to_json(), ex=self.tombstone_ttl)
                else:
                    pipe.set(self.keys.state(p), s.to_json())
            await pipe.execute()

        await redis_io.call("state.save", run)

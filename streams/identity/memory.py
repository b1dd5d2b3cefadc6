"""The in-memory identity store: the reference implementation of :mod:`streams.identity.base`.

Used by the testing kit and ``cxstream simulate``. The Redis store runs the same
algorithm in Lua; ``tests/identity/test_stores_agree.py`` holds them to each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.identity.base import (
    IdentityRules,
    IdentityStore,
    Merge,
    ProfileView,
    Resolution,
    ResolveRequest,
    new_profile_id,
)
from streams.model import Identifier, JSONDict


@dataclass
class _Profile:
    created: int
    first_seen: int
    last_seen: int
    ids: list[Identifier] = field(default_factory=list)
    traits: dict[str, tuple[object, int]] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    merges: list[JSONDict] = field(default_factory=list)
    n_merges: int = 0
    merged_into: str | None = None
    absorbed: list[str] = field(default_factory=list)  # every profile merged into this one


class MemoryIdentityStore(IdentityStore):
    def __init__(self, rules: IdentityRules | None = None) -> None:
        self.rules = rules or IdentityRules()
        self.index: dict[Identifier, str] = {}
        self.profiles: dict[str, _Profile] = {}

    # ------------------------------------------------------------------ contract
    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        return [self.resolve_one(r) for r in batch]

    async def lookup(self, identifier: Identifier) -> str | None:
        pid = self.index.get(identifier)
        return self._live(pid) if pid else None

    async def profile(self, profile_id: str) -> ProfileView | None:
        if profile_id not in self.profiles:
            return None
        pid = self._live(profile_id)
        p = self.profiles[pid]
        return ProfileView(
            pid,
            p.created,
            p.first_seen,
            p.last_seen,
            list(p.ids),
            dict(p.traits),
            dict(p.channels),
            list(p.merges),
        )

    async def forget(self, profile_id: str) -> list[str]:
        if profile_id not in self.profiles:
            return []
        pid = self._live(profile_id)
        p = self.profiles[pid]
        gone = [pid, *sorted(p.absorbed)]
        for i in p.ids:
            if self.index.get(i) == pid:
                del self.index[i]
        for k in gone:
            del self.profiles[k]
        return gone

    # ------------------------------------------------------------------ algorithm
    def _live(self, pid: str) -> str:
        while (nxt := self.profiles[pid].merged_into) is not None:
            pid = nxt
        return pid

    def _violates(self, ids: Sequence[Identifier]) -> bool:
        if len(ids) > self.rules.max_identifiers:
            return True
        counts: dict[str, int] = {}
        for i in ids:
            counts[i.type] = counts.get(i.type, 0) + 1
        return any(n > self.rules.limits.get(t, n) for t, n in counts.items())

    def resolve_one(self, req: ResolveRequest) -> Resolution:
        ids = self.rules.prepare(req)
        dropped: list[Identifier] = []
        while True:
            matched: list[str] = []
            for i in ids:
                pid = self.index.get(i)
                if pid is not None:
                    pid = self._live(pid)
                    if pid not in matched:
                        matched.append(pid)
            new = [i for i in ids if i not in self.index]
            if not matched:
                if len(ids) > 1 and self._violates(ids):
                    dropped.append(ids.pop())
                    continue
                pid = new_profile_id(req.message_id, ids[0])
                self.profiles[pid] = _Profile(req.ts, req.ts, req.ts)
                self._attach(pid, new)
                self._touch(pid, req)
                return Resolution(pid, "new", True, (), tuple(dropped))
            union = [x for m in matched for x in self.profiles[m].ids] + new
            merges_after = sum(self.profiles[m].n_merges for m in matched) + len(matched) - 1
            if len(ids) > 1 and (self._violates(union) or merges_after > self.rules.max_merges):
                dropped.append(ids.pop())
                continue
            survivor = min(matched, key=lambda m: (self.profiles[m].created, m))
            owner = {i: self._live(self.index[i]) for i in ids if i in self.index}
            merges: list[Merge] = []
            for absorbed in matched:
                if absorbed != survivor:
                    linking = tuple(i for i in ids if owner.get(i) in (absorbed, survivor))
                    self._merge(survivor, absorbed, linking, req.ts)
                    merges.append(Merge(survivor, absorbed, linking, req.ts))
            self._attach(survivor, new)
            self._touch(survivor, req)
            return Resolution(
                survivor, "merged" if merges else "matched", False, tuple(merges), tuple(dropped)
            )

    def _attach(self, pid: str, ids: Sequence[Identifier]) -> None:
        p = self.profiles[pid]
        for i in ids:
            self.index[i] = pid
            p.ids.append(i)

    def _touch(self, pid: str, req: ResolveRequest) -> None:
        p = self.profiles[pid]
        p.first_seen = min(p.first_seen, req.ts)
        p.last_seen = max(p.last_seen, req.ts)
        p.channels[req.channel] = max(p.channels.get(req.channel, req.ts), req.ts)
        for k, v in req.traits.items():
            old = p.traits.get(k)
            if old is None or req.ts >= old[1]:
                p.traits[k] = (v, req.ts)

    def _merge(self, survivor: str, absorbed: str, linking: tuple[Identifier, ...], ts: int) -> None:
        s, a = self.profiles[survivor], self.profiles[absorbed]
        for i in a.ids:
            self.index[i] = survivor
            s.ids.append(i)
        for k, (v, t) in a.traits.items():
            old = s.traits.get(k)
            if old is None or t > old[1]:
                s.traits[k] = (v, t)
        for ch, t in a.channels.items():
            s.channels[ch] = max(s.channels.get(ch, t), t)
        s.first_seen = min(s.first_seen, a.first_seen)
        s.last_seen = max(s.last_seen, a.last_seen)
        s.n_merges += a.n_merges + 1
        s.merges.extend(a.merges)
        s.merges.append({"absorbed": absorbed, "linking": [str(i) for i in linking], "ts": ts})
        # one hop: whatever pointed to the absorbed profile now points to the survivor
        for x in a.absorbed:
            self.profiles[x].merged_into = survivor
        s.absorbed += [*a.absorbed, absorbed]
        a.ids, a.traits, a.channels, a.merges, a.absorbed = [], {}, {}, [], []
        a.merged_into = survivor

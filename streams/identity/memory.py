"""The in-memory identity store: the reference implementation of :mod:`streams.identity.base`.

Used by the testing kit and ``cxstream simulate``. The Redis store runs the same
algorithm in Lua; ``tests/identity/test_stores_agree.py`` and ``test_one_pass.py`` hold them to
each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    """``memo_ttl``: seconds an occurrence's resolution is remembered (``None``: for ever), on ``clock``."""

    def __init__(
        self,
        rules: IdentityRules | None = None,
        memo_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules or IdentityRules()
        self.memo_ttl = memo_ttl
        self.clock = clock
        self.index: dict[Identifier, str] = {}
        self.profiles: dict[str, _Profile] = {}
        #: (message_id, source) -> (resolution, expiry), for replays of the same occurrence
        self.memos: dict[tuple[str, str], tuple[Resolution, float]] = {}

    # ------------------------------------------------------------------ contract
    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        now = self.clock()
        while self.memos:  # insertion order is expiry order: forget the expired ones
            occurrence, (_, expiry) = next(iter(self.memos.items()))
            if expiry > now:
                break
            del self.memos[occurrence]
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
        erased = set(gone)  # memos name the profile their event resolved to (live or absorbed since)
        self.memos = {o: m for o, m in self.memos.items() if m[0].profile_id not in erased}
        return gone

    # ------------------------------------------------------------------ algorithm
    def _live(self, pid: str) -> str:
        while (nxt := self.profiles[pid].merged_into) is not None:
            pid = nxt
        return pid

    def resolve_one(self, req: ResolveRequest) -> Resolution:
        occurrence = (req.message_id, req.source)
        if req.source:
            memo = self.memos.get(occurrence)
            if memo is not None and memo[1] > self.clock():
                return memo[0]
        res = self._resolve(req)
        if req.source and (res.outcome != "matched" or res.dropped):
            expires = self.clock() + self.memo_ttl if self.memo_ttl is not None else float("inf")
            self.memos.pop(occurrence, None)  # an expired one: the new memo goes last
            self.memos[occurrence] = (res, expires)
        return res

    def _resolve(self, req: ResolveRequest) -> Resolution:
        """One pass over the ordered identifiers: the longest prefix that breaks no rule is kept.

        The state after ``k`` identifiers is what resolving the prefix of length ``k`` would
        join: per-type counts and total over the matched profiles' identifiers plus the new
        ones, and the merges the survivor would then have. It only grows with ``k``, so the
        first prefix (longer than one) that breaks a rule ends the pass, and the rest is dropped.
        """
        ids = self.rules.prepare(req)
        limits, max_ids, max_merges = self.rules.limits, self.rules.max_identifiers, self.rules.max_merges
        if req.alias_of:
            limits = {}
            anon, user = Identifier("anonymous_id", req.alias_of), Identifier("user_id", req.alias_of)
            if anon in ids and user in self.index and anon not in self.index:
                ids[ids.index(anon)] = user
        counts: dict[str, int] = {}
        total = n_merges = 0
        broken = False
        matched: list[str] = []  # live profiles, in order of first match
        owned: dict[str, list[int]] = {}  # live profile -> positions of the kept identifiers it owns
        new: list[Identifier] = []
        kept = 0
        for k, i in enumerate(ids):
            pid = self.index.get(i)
            pid = self._live(pid) if pid is not None else None
            joins = pid is not None and pid not in owned  # a profile this event did not match yet
            added: list[str] = []  # the types this identifier adds to the union
            if pid is None:
                added, total = [i.type], total + 1
            elif joins:
                p = self.profiles[pid]
                added, total, n_merges = [x.type for x in p.ids], total + len(p.ids), n_merges + p.n_merges
            for t in added:
                n = counts[t] = counts.get(t, 0) + 1
                broken = broken or n > limits.get(t, n)
            n_matched = len(matched) + joins
            broken = broken or total > max_ids or (n_matched > 0 and n_merges + n_matched - 1 > max_merges)
            if broken and k > 0:
                break
            kept = k + 1
            if pid is None:
                new.append(i)
            elif joins:
                owned[pid] = [k]
                matched.append(pid)
            else:
                owned[pid].append(k)
        dropped = tuple(reversed(ids[kept:]))  # as dropped one by one: lowest priority first
        if not matched:
            pid = new_profile_id(req.message_id, ids[0])
            self.profiles[pid] = _Profile(req.ts, req.ts, req.ts)
            self._attach(pid, new)
            self._touch(pid, req)
            return Resolution(pid, "new", True, (), dropped)
        survivor = min(matched, key=lambda m: (self.profiles[m].created, m))
        merges: list[Merge] = []
        for absorbed in matched:
            if absorbed != survivor:
                linking = tuple(ids[k] for k in sorted(owned[absorbed] + owned[survivor]))
                self._merge(survivor, absorbed, linking, req.ts)
                merges.append(Merge(survivor, absorbed, linking, req.ts))
        self._attach(survivor, new)
        self._touch(survivor, req)
        return Resolution(survivor, "merged" if merges else "matched", False, tuple(merges), dropped)

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

"""A plain reference model of identity resolution, independent of ``streams.identity``.

Union-find over identifiers. Each group (a person) keeps the count of its identifiers
per type and how many profiles were created inside it (so its merges are that number
minus one). One event: look up its identifiers; if joining them (and the new ones) into
one group breaks a per-type limit, the identifier cap or the merge cap, drop the event's
lowest-priority identifier and try again; otherwise union. That is the whole rule of the
contract (``streams/identity/base.py``), written a second time, without profiles, ids,
traits or Redis, so the stores can be checked against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Ident = tuple[str, str]  # (type, value)

OTHER_RANK = 50


@dataclass
class Rules:
    priority: Mapping[str, int]
    limits: Mapping[str, int]
    max_identifiers: int
    max_merges: int
    blocked: frozenset[str]


@dataclass
class UnionFind:
    rules: Rules
    parent: dict[Ident, Ident] = field(default_factory=dict)
    types: dict[Ident, Counter[str]] = field(default_factory=dict)  # per root
    profiles: dict[Ident, int] = field(default_factory=dict)  # per root: profiles created in the group

    def find(self, x: Ident) -> Ident:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def _order(self, ids: Iterable[Ident], message_id: str) -> list[Ident]:
        kept = {i for i in ids if i[1].strip().lower() not in self.rules.blocked}
        if not kept:
            return [("message_id", message_id)]
        return sorted(kept, key=lambda i: (-self.rules.priority.get(i[0], OTHER_RANK), i[0], i[1]))

    def _allowed(self, counts: Counter[str], merges: int) -> bool:
        if sum(counts.values()) > self.rules.max_identifiers or merges > self.rules.max_merges:
            return False
        return all(n <= self.rules.limits.get(t, n) for t, n in counts.items())

    def add(self, message_id: str, ids: Iterable[Ident]) -> None:
        order = self._order(ids, message_id)
        while True:
            roots = {self.find(i) for i in order if i in self.parent}
            new = [i for i in order if i not in self.parent]
            counts: Counter[str] = Counter(t for t, _ in new)
            for r in roots:
                counts += self.types[r]
            merges = sum(self.profiles[r] for r in roots) - 1 if roots else 0
            if len(order) > 1 and not self._allowed(counts, merges):
                order.pop()  # the lowest priority goes
                continue
            break
        root = next(iter(roots)) if roots else new[0]
        created = 0 if roots else 1
        for i in new:
            self.parent[i] = root
        for r in roots:
            self.parent[r] = root
        self.types[root] = counts
        self.profiles[root] = sum(self.profiles[r] for r in roots) + created

    def groups(self) -> set[frozenset[Ident]]:
        out: dict[Ident, set[Ident]] = {}
        for i in self.parent:
            out.setdefault(self.find(i), set()).add(i)
        return {frozenset(g) for g in out.values()}

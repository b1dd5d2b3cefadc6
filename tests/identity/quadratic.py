"""The memory store as it resolved before the one-pass rewrite: drop the lowest-priority identifier
and redo all the matching, until no rule is broken. Quadratic, kept only as an oracle: the one-pass
store must give exactly its results (survivor, merges, linking, dropped and their order).
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.identity.base import Merge, Resolution, ResolveRequest, new_profile_id
from streams.identity.memory import MemoryIdentityStore, _Profile
from streams.model import Identifier


class QuadraticMemoryStore(MemoryIdentityStore):
    def _violates(self, ids: Sequence[Identifier]) -> bool:
        if len(ids) > self.rules.max_identifiers:
            return True
        counts: dict[str, int] = {}
        for i in ids:
            counts[i.type] = counts.get(i.type, 0) + 1
        return any(n > self.rules.limits.get(t, n) for t, n in counts.items())

    def _resolve(self, req: ResolveRequest) -> Resolution:
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

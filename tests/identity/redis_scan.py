"""Read Redis raw (SCAN and plain reads, none of our code): the identity graph, or every value."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from streams.constants import Keys


def dump(client: redis.Redis, match: str = "*") -> dict[str, list[str]]:
    """Every key matching ``match`` -> every string it holds (members, fields, values, scores)."""
    out: dict[str, list[str]] = {}
    for raw in client.scan_iter(match=match, count=1000):
        key = raw.decode()
        kind = client.type(raw).decode()
        vals: list[bytes | str | float] = []
        if kind == "string":
            vals = [client.get(raw) or b""]
        elif kind == "hash":
            for f, v in client.hgetall(raw).items():
                vals += [f, v]
        elif kind == "set":
            vals = list(client.smembers(raw))
        elif kind == "list":
            vals = list(client.lrange(raw, 0, -1))
        elif kind == "zset":
            for m, s in client.zrange(raw, 0, -1, withscores=True):
                vals += [m, s]
        else:
            raise AssertionError(f"unexpected Redis type {kind} at {key}")
        out[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in vals]
    return out


def holding(client: redis.Redis, needles: set[str], match: str = "*") -> list[str]:
    """Keys whose name or any value contains one of ``needles``: what an erasure must leave none of."""
    hits = []
    for key, vals in dump(client, match).items():
        for text in [key, *vals]:
            found = [n for n in needles if n in text]
            if found:
                hits.append(f"{key} holds {found[0]!r}")
                break
    return hits


@dataclass
class Graph:
    index: dict[str, str] = field(default_factory=dict)  # "type:value" -> pid
    live: dict[str, set[str]] = field(default_factory=dict)  # pid -> its identifiers
    merged_into: dict[str, str] = field(default_factory=dict)  # absorbed pid -> pid
    leftovers: list[str] = field(default_factory=list)  # data an absorbed profile should not hold

    def groups(self) -> set[frozenset[tuple[str, str]]]:
        by: dict[str, set[tuple[str, str]]] = {}
        for ident, pid in self.index.items():
            t, _, v = ident.partition(":")
            by.setdefault(pid, set()).add((t, v))
        return {frozenset(g) for g in by.values()}

    def problems(self) -> list[str]:
        """Broken invariants: each identifier in one live profile, no orphans, no dangling pointer."""
        out = list(self.leftovers)
        for ident, pid in self.index.items():
            if pid not in self.live:
                out.append(f"{ident} -> {pid}, not a live profile")
            elif ident not in self.live[pid]:
                out.append(f"{ident} -> {pid}, which does not list it")
        for pid, ids in self.live.items():
            if not ids:
                out.append(f"live profile {pid} has no identifier (orphan)")
            for ident in ids:
                if self.index.get(ident) != pid:
                    out.append(f"{pid} lists {ident}, which resolves to {self.index.get(ident)}")
        for a, s in self.merged_into.items():
            if s not in self.live:
                out.append(f"{a} merged into {s}, not a live profile")
        return out


def graph(client: redis.Redis, keys: Keys) -> Graph:
    g = Graph()
    ipre, ppre = f"{keys.graph}:i:", f"{keys.graph}:p:"
    for raw in client.scan_iter(match=keys.graph + ":*", count=1000):
        key = raw.decode()
        if key.startswith(ipre):
            g.index[key.removeprefix(ipre)] = (client.get(raw) or b"").decode()
        elif key.startswith(ppre) and ":" not in key.removeprefix(ppre):
            pid = key.removeprefix(ppre)
            mi = client.hget(raw, "mi")
            if mi is None:
                g.live[pid] = {m.decode() for m in client.smembers(key + ":ids")}
            else:
                g.merged_into[pid] = mi.decode()
                if client.exists(key + ":ids", key + ":traits", key + ":ch", key + ":merges"):
                    g.leftovers.append(f"absorbed {pid} still holds identifiers, traits or channels")
    return g

"""Customers active now: the retention KPIs as live Prometheus gauges, without scans.

Each profiled partition keeps one sorted set (``{P:t:<n>}:act``, beside its timers) of its
*known* customers (anonymous-only profiles are not customers yet), member the profile id, score
the event time of its last activity (track, page or screen). The decide stage writes a profile
there only when the day of its last activity changes (at most once per customer per day, in the
batch's commit), removes it when it is merged away or erased, and the worker refreshes the
gauges from three ``ZCOUNT``\\ s and a ``ZCARD`` per owned partition every
:data:`REFRESH_SECONDS`, and within :data:`CHANGED_REFRESH_SECONDS` of a change (``O(log n)`` each):

* ``cxstream_customers{window="all"}``: known customers with any activity;
* ``{window="30d"}``, ``{window="90d"}``: active within the last 30 / 90 days of the clock
  (the event clock under a replay, else the wall clock);
* ``{window="churned"}``: no activity for ``[measurement] churn_days`` (default 90).

Share active = ``sum(cxstream_customers{window="30d"}) / sum(cxstream_customers{window="all"})``;
each worker reports the partitions it owns (label ``partition``), so the sums add up over
workers and a partition moving to another worker moves its series with it.

Memory: one sorted-set entry per known customer, about 100 bytes with a 26-character profile
id. On Redis Cluster each partition's set lives in the slot of that partition's timers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from streams import redis_io
from streams.constants import DAY_MS, Keys

#: how often (wall seconds) a worker recounts its partitions' customers (the clock moves on) ...
REFRESH_SECONDS = 5.0
#: ... and how soon after a commit changed a last activity (at most once a second)
CHANGED_REFRESH_SECONDS = 1.0
WINDOWS_DAYS = (30, 90)


@dataclass(frozen=True, slots=True)
class Customers:
    """Known customers of one partition at ``now``: all, active per window, churned."""

    total: int
    active: dict[int, int]
    churned: int


def changed_day(before: int | None, after: int | None) -> bool:
    """Whether a last activity moving from ``before`` to ``after`` must be written (a new day)."""
    return after is not None and (before is None or after // DAY_MS != before // DAY_MS)


class ActivityStore(ABC):
    """Last activity of each known customer, per profiled partition."""

    @abstractmethod
    async def apply(self, partition: int, seen: Mapping[str, int], gone: Iterable[str]) -> None:
        """Record ``seen`` (profile id -> last activity ms; an older time never replaces a newer
        one) and forget ``gone``. Called with the batch's commit, after its records are acked;
        idempotent, so a batch committed again changes nothing."""

    @abstractmethod
    async def customers(self, partition: int, now: int, churn_ms: int) -> Customers:
        """The counts of one partition as of ``now`` (ms on the worker's clock)."""


class MemoryActivityStore(ActivityStore):
    def __init__(self) -> None:
        self.data: dict[int, dict[str, int]] = {}

    async def apply(self, partition: int, seen: Mapping[str, int], gone: Iterable[str]) -> None:
        part = self.data.setdefault(partition, {})
        for pid, ts in seen.items():
            part[pid] = max(ts, part.get(pid, ts))
        for pid in gone:
            part.pop(pid, None)

    async def customers(self, partition: int, now: int, churn_ms: int) -> Customers:
        last = self.data.get(partition, {}).values()
        return Customers(
            len(last),
            {d: sum(1 for t in last if t >= now - d * DAY_MS) for d in WINDOWS_DAYS},
            sum(1 for t in last if t < now - churn_ms),
        )


class RedisActivityStore(ActivityStore):
    """``{P:t:<n>}:act``: zset profile id -> last activity ms (``ZADD GT``: Redis >= 6.2)."""

    def __init__(self, client: redis_io.Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def _key(self, partition: int) -> str:
        return self.keys.activity(partition)

    async def apply(self, partition: int, seen: Mapping[str, int], gone: Iterable[str]) -> None:
        dead = list(gone)
        if not seen and not dead:
            return

        async def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            self.queue_apply(pipe, partition, seen, dead)
            await pipe.execute()

        await redis_io.call("activity.apply", run)

    def queue_apply(self, pipe: Any, partition: int, seen: Mapping[str, int], gone: Iterable[str]) -> None:
        """What :meth:`apply` sends, queued on a pipeline (the decide stage's commit in one round trip)."""
        key = self._key(partition)
        if seen:
            pipe.zadd(key, dict(seen), gt=True)
        dead = list(gone)
        if dead:
            pipe.zrem(key, *dead)

    async def customers(self, partition: int, now: int, churn_ms: int) -> Customers:
        key = self._key(partition)

        async def run() -> list[int]:
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(key)
            for d in WINDOWS_DAYS:
                pipe.zcount(key, now - d * DAY_MS, "+inf")
            pipe.zcount(key, "-inf", f"({now - churn_ms}")
            return [int(x) for x in await pipe.execute()]

        total, *active, churned = await redis_io.call("activity.customers", run)
        return Customers(total, dict(zip(WINDOWS_DAYS, active, strict=True)), churned)

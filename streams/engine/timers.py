"""Durable timers: per partition of the repartition topic, in Redis, claimed before they fire.

Protocol (each step survives a crash at any point):

1. **schedule**: ``ZADD due <due> <member>`` + ``HSET data <member> <payload>``; setting a
   member again reschedules it, ``cancel`` removes it. Batched per processed batch.
2. **claim**: members with ``due <= clock`` and no live lease get a lease (wall time);
   a worker that dies holding a lease lets it lapse and the next owner claims again.
3. **fire**: the engine runs the rule and produces the trigger (acked by Kafka).
4. **done**: the member is removed, but only if it still has the due time that was
   claimed (a timer rescheduled meanwhile stays).

So a killed worker fires every due timer at least once after restart, and because the
trigger id is derived from rule and condition, a re-send carries the same id: exactly
once from the consumer's point of view.

Members are ``<profile id>|<rule>|<timer name>``: ``str(TimerId)`` (:class:`streams.state.TimerId`).
Keys: :class:`~streams.constants.Keys` (``timer_due``, ``timer_data``, ``timer_claims``,
``timer_marks``, ``timer_waiting``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import RedisCluster

from streams import redis_io
from streams.constants import TIMER_LEASE_MS, Keys
from streams.model import JSONDict, dumps, loads
from streams.state import TimerId


@dataclass(frozen=True, slots=True, init=False)
class DueTimer:
    """A claimed timer: its ZSET member (``str(TimerId)``), due ms and payload."""

    member: str
    due: int
    payload: JSONDict

    def __init__(self, member: str, due: int, payload: JSONDict) -> None:
        object.__setattr__(self, "member", member)
        object.__setattr__(self, "due", due)
        object.__setattr__(self, "payload", payload)

    @property
    def timer_id(self) -> TimerId:
        """The timer the member names. ``ValueError`` on a member not written by this code."""
        return TimerId.parse(self.member)

    @property
    def profile_id(self) -> str:
        return self.timer_id.profile_id


@dataclass(frozen=True, slots=True, init=False)
class TimerOps:
    """Changes to one partition's timers, applied together."""

    schedule: dict[str, tuple[int, JSONDict]]
    cancel: set[str]

    def __init__(self, schedule: dict[str, tuple[int, JSONDict]], cancel: set[str]) -> None:
        object.__setattr__(self, "schedule", schedule)
        object.__setattr__(self, "cancel", cancel)

    def then(self, cancel: Iterable[str], schedule: Mapping[str, tuple[int, JSONDict]]) -> None:
        """Apply later changes on top of these: cancels first, then schedules; the last word wins."""
        for m in cancel:
            self.schedule.pop(m, None)
            self.cancel.add(m)
        for m, v in schedule.items():
            self.cancel.discard(m)
            self.schedule[m] = v


class TimerStore(ABC):
    @abstractmethod
    async def apply(self, partition: int, ops: TimerOps) -> None:
        """Schedule and cancel, in one round trip."""

    @abstractmethod
    async def claim(self, partition: int, clock: int, wall: int, limit: int) -> list[DueTimer]:
        """Lease up to ``limit`` timers due at ``clock`` (earliest first)."""

    async def claim_many(self, clocks: Mapping[int, int], wall: int, limit: int) -> dict[int, list[DueTimer]]:
        """:meth:`claim` for each partition (partition -> its clock)."""
        return {p: await self.claim(p, clock, wall, limit) for p, clock in sorted(clocks.items())}

    @abstractmethod
    async def done(self, partition: int, fired: Sequence[DueTimer]) -> None:
        """Remove fired timers unless rescheduled since they were claimed."""

    @abstractmethod
    async def release(self, partition: int, timers: Sequence[DueTimer]) -> None:
        """Give back claims without firing: the timers stay due."""

    @abstractmethod
    async def pending(self, partition: int) -> int:
        """How many timers the partition holds."""

    @abstractmethod
    async def next_due(self, partition: int) -> int | None:
        """The earliest due time, or ``None``."""

    @abstractmethod
    async def save_marks(self, partition: int, marks: dict[int, int]) -> None:
        """Persist the partition's event-clock watermarks (source partition -> ms)."""

    @abstractmethod
    async def load_marks(self, partition: int) -> dict[int, int]:
        """The persisted watermarks of the partition."""

    @abstractmethod
    async def set_waiting(self, partition: int, add: dict[str, int], remove: set[str]) -> None:
        """Record profiles of the partition that wait for a merge hand-off (profile id -> since,
        wall ms), and forget those that no longer wait."""

    @abstractmethod
    async def waiting(self, partition: int, since_before: int, limit: int) -> list[str]:
        """Profiles of the partition that have waited since before ``since_before`` (wall ms)."""

    async def pending_many(self, partitions: Iterable[int]) -> dict[int, int]:
        """:meth:`pending` for each partition."""
        return {p: await self.pending(p) for p in sorted(set(partitions))}

    async def waiting_many(
        self, partitions: Iterable[int], since_before: int, limit: int
    ) -> dict[int, list[str]]:
        """:meth:`waiting` for each partition."""
        return {p: await self.waiting(p, since_before, limit) for p in sorted(set(partitions))}


class MemoryTimerStore(TimerStore):
    def __init__(self) -> None:
        self.due: dict[int, dict[str, int]] = {}
        self.data: dict[int, dict[str, JSONDict]] = {}
        self.claims: dict[int, dict[str, int]] = {}
        self.marks: dict[int, dict[int, int]] = {}
        self.waits: dict[int, dict[str, int]] = {}

    async def apply(self, partition: int, ops: TimerOps) -> None:
        due = self.due.setdefault(partition, {})
        data = self.data.setdefault(partition, {})
        for m in ops.cancel:
            due.pop(m, None)
            data.pop(m, None)
            self.claims.get(partition, {}).pop(m, None)
        for m, (t, payload) in ops.schedule.items():
            due[m] = t
            data[m] = payload

    async def claim(self, partition: int, clock: int, wall: int, limit: int) -> list[DueTimer]:
        claims = self.claims.setdefault(partition, {})
        out: list[DueTimer] = []
        for m, t in sorted(self.due.get(partition, {}).items(), key=lambda x: (x[1], x[0])):
            if t > clock or len(out) >= limit:
                break
            if claims.get(m, 0) >= wall:
                continue
            claims[m] = wall + TIMER_LEASE_MS
            out.append(DueTimer(m, t, self.data[partition].get(m, {})))
        return out

    async def done(self, partition: int, fired: Sequence[DueTimer]) -> None:
        due = self.due.get(partition, {})
        for f in fired:
            if due.get(f.member) == f.due:
                del due[f.member]
                self.data[partition].pop(f.member, None)
            self.claims.get(partition, {}).pop(f.member, None)

    async def release(self, partition: int, timers: Sequence[DueTimer]) -> None:
        for t in timers:
            self.claims.get(partition, {}).pop(t.member, None)

    async def pending(self, partition: int) -> int:
        return len(self.due.get(partition, {}))

    async def next_due(self, partition: int) -> int | None:
        due = self.due.get(partition)
        return min(due.values()) if due else None

    async def save_marks(self, partition: int, marks: dict[int, int]) -> None:
        self.marks[partition] = dict(marks)

    async def load_marks(self, partition: int) -> dict[int, int]:
        return dict(self.marks.get(partition, {}))

    async def set_waiting(self, partition: int, add: dict[str, int], remove: set[str]) -> None:
        w = self.waits.setdefault(partition, {})
        for pid in remove:
            w.pop(pid, None)
        w.update(add)

    async def waiting(self, partition: int, since_before: int, limit: int) -> list[str]:
        w = self.waits.get(partition, {})
        return sorted((p for p, t in w.items() if t <= since_before), key=lambda p: (w[p], p))[:limit]


_CLAIM = """
local due, data, claims = KEYS[1], KEYS[2], KEYS[3]
local clock, wall, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- the lease's end as a string, made once: Redis would format a Lua number per ZADD (snprintf %.17g)
local leased = string.format('%d', wall + lease)
local out = {}
local offset = 0
while #out < limit do
  local page = redis.call('ZRANGEBYSCORE', due, '-inf', clock, 'WITHSCORES', 'LIMIT', offset, limit)
  if #page == 0 then break end
  offset = offset + #page / 2
  for j = 1, #page, 2 do
    local m = page[j]
    local c = tonumber(redis.call('ZSCORE', claims, m))
    if (not c or c < wall) and #out < limit then
      redis.call('ZADD', claims, leased, m)
      table.insert(out, {m, page[j + 1], redis.call('HGET', data, m) or '{}'})
    end
  end
end
return out
"""

_APPLY = """
local due, data, claims = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[1])
for j = 2, n + 1 do
  redis.call('ZREM', due, ARGV[j])
  redis.call('HDEL', data, ARGV[j])
  redis.call('ZREM', claims, ARGV[j])
end
for j = n + 2, #ARGV, 3 do
  redis.call('ZADD', due, ARGV[j + 1], ARGV[j])
  if ARGV[j + 2] == '' then
    redis.call('HDEL', data, ARGV[j])
  else
    redis.call('HSET', data, ARGV[j], ARGV[j + 2])
  end
end
return 1
"""

_DONE = """
local due, data, claims = KEYS[1], KEYS[2], KEYS[3]
for j = 1, #ARGV, 2 do
  local m = ARGV[j]
  if redis.call('ZSCORE', due, m) == ARGV[j + 1] then
    redis.call('ZREM', due, m)
    redis.call('HDEL', data, m)
  end
  redis.call('ZREM', claims, m)
end
return 1
"""


class RedisTimerStore(TimerStore):
    def __init__(self, client: redis_io.Client, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._apply = client.register_script(_APPLY)
        self._claim = client.register_script(_CLAIM)
        self._done = client.register_script(_DONE)
        self.cluster = isinstance(client, RedisCluster)

    def _script_keys(self, partition: int) -> list[str]:
        """``due``, ``data``, ``claims``: declared in KEYS, one hash tag, so one slot on a cluster."""
        k = self.keys
        return [k.timer_due(partition), k.timer_data(partition), k.timer_claims(partition)]

    async def apply(self, partition: int, ops: TimerOps) -> None:
        args = _apply_args(ops)
        if args:
            # One script call per partition and batch (not 2-3 commands per timer).
            keys = self._script_keys(partition)
            await redis_io.call("timers.apply", lambda: self._apply(keys=keys, args=args))

    async def claim(self, partition: int, clock: int, wall: int, limit: int) -> list[DueTimer]:
        rows = await redis_io.call(
            "timers.claim",
            lambda: self._claim(keys=self._script_keys(partition), args=[clock, wall, TIMER_LEASE_MS, limit]),
        )
        return _due_timers(rows)

    async def claim_many(self, clocks: Mapping[int, int], wall: int, limit: int) -> dict[int, list[DueTimer]]:
        """:meth:`claim` for several partitions (partition -> clock), in one round trip on one
        server (a cluster: one call per partition, their keys are on different slots)."""
        if self.cluster or len(clocks) < 2:
            return await super().claim_many(clocks, wall, limit)
        order = sorted(clocks)

        async def run() -> list[object]:
            pipe: Any = self.client.pipeline(transaction=False)
            for p in order:
                await self._claim(
                    keys=self._script_keys(p), args=[clocks[p], wall, TIMER_LEASE_MS, limit], client=pipe
                )
            return list(await pipe.execute())

        rows = await redis_io.call("timers.claim", run)
        return {p: _due_timers(r) for p, r in zip(order, rows, strict=True)}

    async def done(self, partition: int, fired: Sequence[DueTimer]) -> None:
        if fired:
            args = _done_args(fired)
            await redis_io.call(
                "timers.done", lambda: self._done(keys=self._script_keys(partition), args=args)
            )

    async def release(self, partition: int, timers: Sequence[DueTimer]) -> None:
        if timers:
            key = self.keys.timer_claims(partition)
            await redis_io.call("timers.release", lambda: self.client.zrem(key, *[t.member for t in timers]))

    # What a batch's commit writes, queued on a pipeline of the same server (the decide stage
    # sends its whole commit in one round trip: ``DecideStage.commit``). Each is what the
    # method of the same name without ``queue_`` sends.
    async def queue_apply(self, pipe: Any, partition: int, ops: TimerOps) -> None:
        args = _apply_args(ops)
        if args:
            await self._apply(keys=self._script_keys(partition), args=args, client=pipe)

    async def queue_done(self, pipe: Any, partition: int, fired: Sequence[DueTimer]) -> None:
        if fired:
            await self._done(keys=self._script_keys(partition), args=_done_args(fired), client=pipe)

    def queue_release(self, pipe: Any, partition: int, timers: Sequence[DueTimer]) -> None:
        if timers:
            pipe.zrem(self.keys.timer_claims(partition), *[t.member for t in timers])

    def queue_marks(self, pipe: Any, partition: int, marks: dict[int, int]) -> None:
        if marks:
            pipe.hset(self.keys.timer_marks(partition), mapping=marks)

    def queue_waiting(self, pipe: Any, partition: int, add: dict[str, int], remove: set[str]) -> None:
        key = self.keys.timer_waiting(partition)
        if remove:
            pipe.zrem(key, *sorted(remove))
        if add:
            pipe.zadd(key, add)

    async def pending(self, partition: int) -> int:
        n = await redis_io.call("timers.read", lambda: self.client.zcard(self.keys.timer_due(partition)))
        return int(n)

    async def next_due(self, partition: int) -> int | None:
        rows = await redis_io.call(
            "timers.read",
            lambda: self.client.zrange(self.keys.timer_due(partition), 0, 0, withscores=True),
        )
        return int(rows[0][1]) if rows else None

    async def save_marks(self, partition: int, marks: dict[int, int]) -> None:
        if marks:
            key = self.keys.timer_marks(partition)
            await redis_io.call("timers.marks", lambda: self.client.hset(key, mapping=marks))  # type: ignore[arg-type]

    async def load_marks(self, partition: int) -> dict[int, int]:
        raw = await redis_io.call(
            "timers.read", lambda: self.client.hgetall(self.keys.timer_marks(partition))
        )
        return {int(k): int(v) for k, v in raw.items()}

    async def set_waiting(self, partition: int, add: dict[str, int], remove: set[str]) -> None:
        if not add and not remove:
            return

        async def run() -> None:
            pipe = self.client.pipeline(transaction=False)
            self.queue_waiting(pipe, partition, add, remove)
            await pipe.execute()

        await redis_io.call("timers.wait", run)

    async def waiting(self, partition: int, since_before: int, limit: int) -> list[str]:
        key = self.keys.timer_waiting(partition)
        rows = await redis_io.call(
            "timers.read", lambda: self.client.zrangebyscore(key, "-inf", since_before, start=0, num=limit)
        )
        return _texts(rows)

    # The periodic tick reads every partition of the worker: one pipeline, not one round trip per
    # partition (8 of them held the decide stage's lock ~90 ms per tick behind the intake's
    # identity scripts, issue 13). On a cluster the pipeline sends each node its keys.
    async def pending_many(self, partitions: Iterable[int]) -> dict[int, int]:
        counts = await self._read_each(partitions, lambda pipe, p: pipe.zcard(self.keys.timer_due(p)))
        return {p: int(n) for p, n in counts.items()}

    async def waiting_many(
        self, partitions: Iterable[int], since_before: int, limit: int
    ) -> dict[int, list[str]]:
        rows = await self._read_each(
            partitions,
            lambda pipe, p: pipe.zrangebyscore(
                self.keys.timer_waiting(p), "-inf", since_before, start=0, num=limit
            ),
        )
        return {p: _texts(r) for p, r in rows.items()}

    async def _read_each(self, partitions: Iterable[int], queue: Callable[[Any, int], Any]) -> dict[int, Any]:
        """One read per partition (``queue(pipe, partition)`` adds it), in one pipeline."""
        order = sorted(set(partitions))
        if not order:
            return {}

        async def run() -> list[Any]:
            pipe: Any = self.client.pipeline(transaction=False)
            for p in order:
                queue(pipe, p)
            return list(await pipe.execute())

        replies = await redis_io.call("timers.read", run)
        return dict(zip(order, replies, strict=True))


def _apply_args(ops: TimerOps) -> list[str | int | bytes]:
    """``_APPLY``'s arguments for ``ops`` (none: nothing to do)."""
    if not ops.schedule and not ops.cancel:
        return []
    args: list[str | int | bytes] = [len(ops.cancel), *sorted(ops.cancel)]
    for m, (t, payload) in sorted(ops.schedule.items()):
        args += [m, t, dumps(payload) if payload else b""]
    return args


def _done_args(fired: Sequence[DueTimer]) -> list[str | int]:
    args: list[str | int] = []
    for f in fired:
        args += [f.member, str(f.due)]
    return args


def _texts(rows: Any) -> list[str]:
    return [r.decode() if isinstance(r, bytes) else str(r) for r in rows]


def _due_timers(rows: Any) -> list[DueTimer]:
    """``_CLAIM``'s reply: member, due and payload of each claimed timer."""
    return [DueTimer(m.decode(), int(float(t)), loads(p)) for m, t, p in rows]

"""Everything a worker holds at run time, built from settings: stores, stages, the lock.

Kept apart from :mod:`streams.app` so the faust wiring stays a page of glue, and so
``simulate`` and tests can build the same stages over in-memory stores.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from streams import metrics
from streams.consent.policy import Policy, load_policy
from streams.constants import DAY_MS, Keys
from streams.engine import registry
from streams.engine.clock import EventClock
from streams.engine.runner import Engine
from streams.engine.state import MemoryStateStore, RedisStateStore, StateStore
from streams.engine.timers import MemoryTimerStore, RedisTimerStore, TimerStore
from streams.exceptions import FatalError, fatal, where
from streams.health import HEALTH
from streams.identity.base import IdentityRules, IdentityStore
from streams.identity.memory import MemoryIdentityStore
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import Intake, IntakeConfig
from streams.intake.dedupe import DedupeStore, MemoryDedupeStore, RedisDedupeStore
from streams.intake.errors import ErrorCode
from streams.measure.activity import (
    CHANGED_REFRESH_SECONDS,
    REFRESH_SECONDS,
    ActivityStore,
    MemoryActivityStore,
    RedisActivityStore,
)
from streams.model import CALL_TYPES
from streams.pipeline.decide_stage import DecideStage, DecideTopics, Result
from streams.pipeline.intake_stage import IntakeStage, IntakeTopics
from streams.pipeline.records import InRecord, OutRecord
from streams.settings import Settings

log = logging.getLogger(__name__)

#: seconds between attempts at a batch our own code failed on (doubling up to the cap)
RETRY_FIRST, RETRY_CAP = 0.5, 30.0


async def until_done(stage: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a batch (or its commit) until it succeeds: an agent's body must not return (and ack)
    before that. A configuration error ends the process (:func:`~streams.exceptions.fatal`);
    anything else is a bug of ours: done again from the start, with backoff, and counted."""
    delay = RETRY_FIRST
    while True:
        try:
            await run()
            metrics.flush()  # what the batch counted, if a stage left any
            return
        except FatalError as exc:
            fatal(exc)
        except Exception as exc:
            metrics.BATCH_RETRIES.labels(stage).inc()
            # class and place only: an exception's text may carry event values
            log.error(
                "%s batch failed (%s at %s); doing it again in %.1fs, nothing is acked meanwhile",
                stage,
                type(exc).__name__,
                where(exc),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_CAP)


#: Sends records in order and waits for every ack. Must not return before all are acked.
Produce = Callable[[Sequence[OutRecord]], Awaitable[None]]


@dataclass
class Stores:
    dedupe: DedupeStore
    identity: IdentityStore
    states: StateStore
    timers: TimerStore
    activity: ActivityStore = field(default_factory=MemoryActivityStore)

    @classmethod
    def memory(cls, settings: Settings | None = None) -> Stores:
        rules = IdentityRules.from_settings(settings) if settings is not None else None
        ttl = settings.dedupe_ttl if settings is not None else None
        return cls(
            MemoryDedupeStore(ttl),
            MemoryIdentityStore(rules, memo_ttl=ttl),
            MemoryStateStore(),
            MemoryTimerStore(),
        )

    @classmethod
    def redis(cls, settings: Settings) -> Stores:
        from streams import redis_io

        # one server, or any node of a Redis Cluster: every store works on both (README, Redis Cluster)
        client = redis_io.connect_any(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
        keys = Keys(settings.redis_prefix)
        # retention: anonymous-only profiles expire this long after their last event (constants.py)
        anonymous_ttl = settings.anonymous_retention_days * 86400
        return cls(
            RedisDedupeStore(client, keys, settings.dedupe_ttl),
            # resolutions remembered as long as dedupe markers: a retry or redelivery within it
            # gets the same profile, creation and merges back (streams/identity/resolve.lua)
            RedisIdentityStore(
                client,
                keys,
                IdentityRules.from_settings(settings),
                memo_ttl=settings.dedupe_ttl,
                anonymous_ttl=anonymous_ttl,
            ),
            RedisStateStore(client, keys, anonymous_ttl=anonymous_ttl),
            RedisTimerStore(client, keys),
            RedisActivityStore(client, keys),
        )


def count_from_zero(policy: Policy) -> None:
    """The policy's channels become the only channel names kept as metric labels, and the
    program-health series start at 0 (:func:`streams.metrics.program_series`)."""
    metrics.known_channels(policy.channels)
    metrics.program_series(CALL_TYPES, (code.value for code in ErrorCode))


class Runtime:
    """The two stages, wired to stores and a policy."""

    def __init__(self, settings: Settings, stores: Stores, policy: Policy | None = None) -> None:
        self.settings = settings
        self.stores = stores
        self.policy = policy or load_policy(settings.policy_file)
        count_from_zero(self.policy)
        self.rules = registry.load(settings.rules, settings=settings)
        shadow = registry.load_shadow(settings.shadow_rules, self.rules, settings=settings)
        self.engine = Engine(self.rules, self.policy, shadow)
        self.intake = IntakeStage(
            Intake(
                IntakeConfig(
                    max_event_bytes=settings.max_event_bytes,
                    max_properties=settings.max_properties,
                    max_depth=settings.max_depth,
                    max_identifiers_per_event=settings.max_identifiers_per_event,
                    future_tolerance_ms=settings.future_tolerance * 1000,
                    phone_default_region=settings.phone_default_region,
                    blocked_values=frozenset(settings.blocked_identifiers),
                )
            ),
            stores.dedupe,
            stores.identity,
            partitions=settings.partitions,
            topics=IntakeTopics(
                settings.topic_deadletter, settings.topic_profiled, settings.topic_identity_changes
            ),
            pepper=settings.identity_pepper.get_secret_value().encode() if settings.identity_pepper else None,
        )
        self.event_clock = EventClock(settings.partitions, int(settings.watermark_idle_timeout * 1000))
        self.decide = DecideStage(
            self.engine,
            stores.states,
            stores.timers,
            partitions=settings.partitions,
            topics=DecideTopics(
                profiled=settings.topic_profiled,
                activations=settings.topic_activations,
                decisions=settings.topic_decisions,
                deadletter=settings.topic_deadletter,
                conversions=settings.topic_conversions,
            ),
            clock=settings.clock,
            event_clock=self.event_clock,
            timer_batch=settings.timer_batch,
            handoff_timeout_ms=int(settings.handoff_timeout * 1000),
            handoff_max_buffer=settings.handoff_max_buffer,
            activity=stores.activity,
        )
        #: one profile's state is touched by one coroutine at a time: the batch or the timer tick
        self.lock = asyncio.Lock()
        self.known_partitions: set[int] = set()
        self._counted_at = 0.0  # monotonic time of the last customer count
        self._counted: set[int] = set()  # partitions whose customer gauges this worker reports
        self._activity_changed = False  # a commit changed a last activity since the last count
        #: the last batch's commit while it lands (:meth:`decide_batch` with ``done``), and whether
        #: partitions were revoked since it started (:meth:`revoked`)
        self._landing: asyncio.Task[None] | None = None
        self._revoked_since = False

    async def adopt(self, partitions: set[int]) -> None:
        """Partitions of the repartition topic newly assigned to us: restore their event clocks."""
        new = partitions - self.known_partitions
        if new:
            await self.settle()  # their marks as the last commit left them
        for p in sorted(new):
            self.event_clock.restore(p, await self.stores.timers.load_marks(p))
        self.known_partitions = set(partitions)

    def revoked(self) -> None:
        """Partitions were revoked (a rebalance): a commit still in flight lands before the next
        batch loads states, whose profiles another worker may have owned meanwhile."""
        self._revoked_since = True

    async def settle(self) -> None:
        """Wait until the last batch's commit has landed. Everything that reads the stores
        (due timers, the tick, a newly assigned partition's marks) comes after it."""
        task = self._landing
        if task is None:
            return
        try:
            await asyncio.shield(task)  # a cancelled caller does not cut the commit short
        finally:
            if task.done() and self._landing is task:  # (landed, or its ack raised: once)
                self._landing = None
                self.decide.carried = {}

    async def run_decide(self, result: Result, produce: Produce) -> None:
        await produce(result.records)
        await self._persist(result)

    async def _persist(self, result: Result) -> None:
        await self.decide.commit(result.commit)
        if result.commit.active or result.commit.inactive:
            self._activity_changed = True
        self.decide.observe_latency(result)

    async def decide_batch(
        self,
        batch: Sequence[InRecord],
        produce: Produce,
        fire: Iterable[int] | None = None,
        done: Callable[[], None] | None = None,
    ) -> None:
        """One batch of the repartition topic, produced and committed. ``fire``: partitions whose
        due timers fire with the batch (the event clock: the batch may have moved it), in the same
        produce and commit, as a round after the batch's commit would fire them; then more rounds
        while some may be left (:meth:`fire_round`). The caller holds :attr:`lock`.

        ``done`` (the worker's ack of the batch): the batch's commit lands behind, and ``done``
        is called once it has; meanwhile the caller takes the next batch. That batch is computed
        while the commit is in flight, with the states the commit writes for the profiles it
        shares with it (:attr:`DecideStage.carried
        <streams.pipeline.decide_stage.DecideStage.carried>`) and the store's for the others.
        Its due timers are read, and its records produced, only after the commit has landed
        (:meth:`settle`): the order of produces and commits is the same as without ``done``,
        and a crash before the ack redelivers what was not committed. Issue 13: the commit
        waits on Redis behind intake's identity calls, and the worker's thread idled meanwhile.
        """
        landing = self._landing
        if landing is not None and (landing.done() or self._revoked_since):
            await self.settle()
        res = await self.decide.process(batch)
        await self.settle()
        parts = sorted(set(fire)) if fire is not None else []
        if parts:
            res = await self.decide.fire_due(parts, res)
        if done is None or res.more:
            await self.run_decide(res, produce)
            if done is not None:
                done()
            while res.more and await self.fire_round(parts, produce):
                pass
            return
        await produce(res.records)
        self.decide.carried = res.commit.states
        self._revoked_since = False
        self._landing = asyncio.create_task(self._land(res, done), name="cxstream-decide-commit")

    async def _land(self, res: Result, done: Callable[[], None]) -> None:
        with HEALTH.batch():  # in hand until acked: a stop waits for it (and says so)
            await until_done("decide", lambda: self._persist(res))
            done()

    async def fire_round(self, partitions: Iterable[int], produce: Produce) -> bool:
        """One round of due timers: produce and commit what it did, even when no timer fired (a
        failed attempt is counted in the profile's state, a held-up timer's claim given back).
        Returns whether another round may find more (:attr:`Result.more
        <streams.pipeline.decide_result.Result.more>`): not after a round that took every due timer."""
        res = await self.decide.fire_due(sorted(partitions))
        c = res.commit
        if res.records or c.fired or c.states or c.released or c.timers:
            await self.run_decide(res, produce)
        return res.more

    async def tick(self, produce: Produce) -> None:
        """Fire due timers of our partitions (wall clock, idle sources, restarts), and release
        profiles that waited too long for a merge hand-off."""
        async with self.lock:
            await self.settle()
            while await self.fire_round(self.known_partitions, produce):
                pass
            res = await self.decide.release_waiting(sorted(self.known_partitions))
            if res.records or res.commit.states:
                await self.run_decide(res, produce)
        metrics.TIMERS_PENDING.set(
            sum((await self.stores.timers.pending_many(self.known_partitions)).values())
        )
        since = time.monotonic() - self._counted_at
        if since >= REFRESH_SECONDS or (self._activity_changed and since >= CHANGED_REFRESH_SECONDS):
            await self.count_customers()

    async def count_customers(self) -> None:
        """Refresh ``cxstream_customers`` for the partitions we own (and drop the series of those
        we no longer own: their new owner reports them)."""
        self._counted_at = time.monotonic()
        self._activity_changed = False
        churn_ms = int(self.policy.measurement.churn_days * DAY_MS)
        for p in sorted(self._counted - self.known_partitions):
            for window in ("all", "30d", "90d", "churned"):
                metrics.CUSTOMERS.remove(str(p), window)
        self._counted = set()
        for p in sorted(self.known_partitions):
            now = self.decide.clock_now(p)
            if now is None:
                continue  # the event clock has not started on this partition yet
            c = await self.stores.activity.customers(p, now, churn_ms)
            label = str(p)
            metrics.CUSTOMERS.labels(label, "all").set(c.total)
            for days, n in c.active.items():
                metrics.CUSTOMERS.labels(label, f"{days}d").set(n)
            metrics.CUSTOMERS.labels(label, "churned").set(c.churned)
            self._counted.add(p)

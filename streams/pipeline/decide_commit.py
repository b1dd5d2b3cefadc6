"""The decide stage's commit: what a batch (or a round of due timers) changed, persisted once
its records are acked by Kafka. Called through :meth:`DecideStage.commit
<streams.pipeline.decide_stage.DecideStage.commit>`.

Order: timer changes, then states, then the event-clock marks, fired timers done, claims given
back, hand-off waits and customers' last activity. Timer changes go first: they are
idempotent, so a crash before the state is saved (which makes the batch's records count as
not applied) just recomputes them. The other way round, a saved state would skip the records
whose timer changes were lost.

On one Redis server the whole commit is one pipeline (:func:`_at_once`); on a cluster, or with
other stores, one call per partition and kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streams import redis_io
from streams.engine.state import RedisStateStore, StateStore
from streams.engine.timers import RedisTimerStore, TimerStore
from streams.measure.activity import ActivityStore, RedisActivityStore
from streams.pipeline.decide_result import Commit

if TYPE_CHECKING:
    from streams.pipeline.decide_stage import DecideStage


async def commit(stage: DecideStage, c: Commit) -> None:
    """Persist ``c``: in one round trip on one server, else call by call (module docstring)."""
    states, timers, activity = stage.states, stage.timers, stage.activity
    if (
        isinstance(states, RedisStateStore)
        and isinstance(timers, RedisTimerStore)
        and isinstance(activity, RedisActivityStore)
        and not states.cluster
        and states.client is timers.client is activity.client
    ):
        await _at_once(states.client, states, timers, activity, c)
    else:
        await _one_by_one(states, timers, activity, c)


async def _one_by_one(states: StateStore, timers: TimerStore, activity: ActivityStore, c: Commit) -> None:
    for p, ops in c.timers.items():
        await timers.apply(p, ops)
    await states.save(c.states)
    for p, marks in c.marks.items():
        await timers.save_marks(p, marks)
    for p, fired in c.fired.items():
        await timers.done(p, fired)
    for p, held in c.released.items():
        await timers.release(p, held)
    for p in sorted(set(c.waits) | set(c.unwaits)):
        await timers.set_waiting(p, c.waits.get(p, {}), c.unwaits.get(p, set()))
    for p in sorted(set(c.active) | set(c.inactive)):
        await activity.apply(p, c.active.get(p, {}), c.inactive.get(p, set()))


async def _at_once(
    client: Any, states: RedisStateStore, timers: RedisTimerStore, activity: RedisActivityStore, c: Commit
) -> None:
    """The same writes in the same order, in one pipeline: one round trip (and one more that
    checks its scripts are loaded) instead of one call per partition and kind, ~25 per batch
    at ~0.1-0.4 ms of client CPU each (issue 13). Redis runs a pipeline's commands in order, so
    a crash leaves a prefix of them done, as the calls one by one would; every write is
    idempotent, so an outage retries the whole pipeline."""

    async def run() -> None:
        pipe = client.pipeline(transaction=False)
        for p, ops in c.timers.items():
            await timers.queue_apply(pipe, p, ops)
        await states.queue_save(pipe, c.states)
        for p, marks in c.marks.items():
            timers.queue_marks(pipe, p, marks)
        for p, fired in c.fired.items():
            await timers.queue_done(pipe, p, fired)
        for p, held in c.released.items():
            timers.queue_release(pipe, p, held)
        for p in sorted(set(c.waits) | set(c.unwaits)):
            timers.queue_waiting(pipe, p, c.waits.get(p, {}), c.unwaits.get(p, set()))
        for p in sorted(set(c.active) | set(c.inactive)):
            activity.queue_apply(pipe, p, c.active.get(p, {}), c.inactive.get(p, set()))
        if len(pipe):
            await pipe.execute()

    await redis_io.call("decide.commit", run)

"""The decide stage's timer side: firing due timers and releasing profiles that waited too long
for a merge hand-off. Called through :meth:`DecideStage.fire_due
<streams.pipeline.decide_stage.DecideStage.fire_due>` and :meth:`DecideStage.release_waiting
<streams.pipeline.decide_stage.DecideStage.release_waiting>` (the worker's timer tick), under
the same lock as the batches, so no profile is touched by two coroutines at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from streams import metrics
from streams.constants import TIMER_CHAIN_LIMIT, TIMER_MAX_ATTEMPTS
from streams.engine.effects import RuleFailure
from streams.engine.timers import DueTimer
from streams.exceptions import FatalError
from streams.intake.errors import DeadLetter, ErrorCode
from streams.model import SourceRef, dumps
from streams.pipeline.decide_result import Result
from streams.pipeline.records import OutRecord
from streams.state import ProfileState
from streams.state.timer_id import SEP

if TYPE_CHECKING:
    from streams.pipeline.decide_stage import DecideStage

log = logging.getLogger("streams.pipeline.decide_stage")


async def fire_due(stage: DecideStage, partitions: Iterable[int], batch: Result | None = None) -> Result:
    """Claim and run up to ``stage.timer_batch`` due timers of each of these partitions.

    Each timer is isolated: one whose rule fails (or that the stage cannot apply) leaves
    the profile as it was and stays claimed until its lease lapses, then is tried again;
    after :data:`TIMER_MAX_ATTEMPTS` failures it is dead-lettered with its payload (and a
    ``cx.decisions`` record with outcome ``error``). The other timers go on. Raises only
    :class:`FatalError` (an outage): nothing is persisted then.

    ``batch``: the result of a batch that is not committed yet; the round goes into it, as if
    the batch had been committed first (one produce and one commit for both). Its states are
    the profiles' states, and the timers it set that are due are fired with those it claims.
    """
    limit = stage.timer_batch
    res = Result() if batch is None else batch
    claimed: list[tuple[int, DueTimer]] = []
    clocks: dict[int, int] = {}
    full = False
    for p in partitions:
        now = stage.clock_now(p)
        if now is not None:
            clocks[p] = now
    # one round trip for all the partitions on one server
    for p, due in (await stage.timers.claim_many(clocks, stage.wall(), limit)).items():
        now = clocks[p]
        full = full or len(due) >= limit
        claimed += [(p, t) for t in due]
    if batch is not None:
        claimed = _with_set_due(batch, claimed, clocks)
    if not claimed:
        return res
    cache = await _states(stage, batch, {t.profile_id for _, t in claimed})
    tried: set[tuple[int, str, int]] = set()  # (partition, member, due) of every timer run
    for p, t in sorted(claimed, key=lambda x: (x[1].due, x[1].member)):
        pid = t.profile_id
        state = cache[pid]
        if state.pending:
            one = Result()
            try:
                waiting = stage.still_waiting(one, p, pid, state)
            except FatalError:
                raise
            except Exception as exc:  # applying the held events failed: keep waiting, say why
                log.error("profile %s could not release its held events (%s)", pid, type(exc).__name__)
                waiting = True
            if waiting:
                # a hand-off is on its way: decide on the whole person, once it is here
                res.commit.released.setdefault(p, []).append(t)
                continue
            res.absorb(one)
            res.commit.states[pid] = state
        if state.merged_into:
            res.commit.fired.setdefault(p, []).append(t)
            continue  # merged away: the survivor got this timer in the hand-off
        if state.timers.get(t.timer_id.key) != t.due:
            res.commit.fired.setdefault(p, []).append(t)
            continue  # stale: rescheduled or cancelled since
        _fire_chain(stage, res, p, t, state, clocks[p], tried)
    # Another round only after progress (a round of held-up timers alone would claim them again
    # at once), and only if a partition gave as many as asked for, or a timer due already was set
    # and not run in this round (past the chain limit, or by a release of held events): it is in
    # the store once this round is committed. One whose rule failed here waits for a later round,
    # as a claimed one waits for its lease.
    res.more = bool(res.commit.fired) and (full or _due_left(res, clocks, tried))
    metrics.flush()
    return res


def _observe_lateness(stage: DecideStage, p: int, now: int, due: int) -> None:
    """``cxstream_timer_lateness_seconds`` of a timer that fires now: wall time since it became
    due, on either clock (a timer found stale, merged away or held up is not firing)."""
    late = now - due if stage.clock_mode == "wall" else stage.event_clock.lateness_ms(p, due)
    metrics.TIMER_LATENESS.observe(max(0.0, late / 1000))


def _with_set_due(
    batch: Result, claimed: list[tuple[int, DueTimer]], clocks: dict[int, int]
) -> list[tuple[int, DueTimer]]:
    """``claimed``, plus the timers ``batch`` set that are due at their partition's clock: in the
    store once the batch is committed, a round after the commit would claim them. Where the batch
    set a claimed timer again, its new due time and payload are the timer's."""
    out: dict[tuple[int, str], DueTimer] = {(p, t.member): t for p, t in claimed}
    for p, ops in batch.commit.timers.items():
        clock = clocks.get(p)
        if clock is None:
            continue
        for member, (due, payload) in ops.schedule.items():
            if due <= clock:
                out[(p, member)] = DueTimer(member, due, payload)
    return [(p, t) for (p, _), t in out.items()]


async def _states(stage: DecideStage, batch: Result | None, pids: set[str]) -> dict[str, ProfileState]:
    """The states of ``pids``: the batch's where it changed them (a profile it erased is a fresh
    state, as the store would give once the erasure is committed), the store's for the others."""
    if batch is None:
        return await stage.states.load(pids)
    changed = batch.commit.states
    cache = await stage.states.load(pids - changed.keys())
    for pid in pids & changed.keys():
        state = changed[pid]
        cache[pid] = ProfileState() if state is None else state
    return cache


def _due_left(res: Result, clocks: dict[int, int], tried: set[tuple[int, str, int]]) -> bool:
    """Whether ``res`` schedules a timer due at its partition's clock that was not run."""
    for p, ops in res.commit.timers.items():
        clock = clocks.get(p)
        if clock is None:
            continue
        for member, (due, _) in ops.schedule.items():
            if due <= clock and (p, member, due) not in tried:
                return True
    return False


def _fire_chain(
    stage: DecideStage,
    res: Result,
    p: int,
    t: DueTimer,
    state: ProfileState,
    now: int,
    tried: set[tuple[int, str, int]],
) -> None:
    """Fire ``t``; then, earliest first, each timer that a firing set for this profile due
    already at ``now``, up to :data:`TIMER_CHAIN_LIMIT` of them.

    The next round would claim such a timer from the store and fire it on the state saved
    here, which is this state: nothing else touches the profile in between (the stage's
    lock). Fired here, it costs no round (claims, states, produce and commit) of its own.
    Its schedule and its firing go in the same commit: applied, then done, which removes it
    unless a later firing set it again (:meth:`TimerStore.done`). ``tried``: each timer run is
    added to it."""
    _observe_lateness(stage, p, now, t.due)
    tried.add((p, t.member, t.due))
    ready = _fire_one(stage, res, p, t, state, now)
    chained = 0
    while ready and chained < TIMER_CHAIN_LIMIT:
        ready.sort(key=_due_order)
        nxt = ready.pop(0)
        if state.timers.get(nxt.timer_id.key) != nxt.due:
            continue  # set again or cancelled by a later firing
        chained += 1
        _observe_lateness(stage, p, now, nxt.due)
        tried.add((p, nxt.member, nxt.due))
        ready += _fire_one(stage, res, p, nxt, state, now)


def _due_order(t: DueTimer) -> tuple[int, str]:
    return t.due, t.member


async def release_waiting(stage: DecideStage, partitions: Iterable[int]) -> Result:
    """Profiles that waited longer than the hand-off timeout go on without it, even when
    nothing more arrives for them (their held events are applied now)."""
    res = Result()
    before = stage.wall() - stage.handoff_timeout_ms
    waits = await stage.timers.waiting_many(partitions, before, stage.timer_batch)  # one round trip
    for p, pids in waits.items():
        if not pids:
            continue
        cache = await stage.states.load(pids)
        for pid in pids:
            state = cache[pid]
            if not state.pending or state.merged_into:
                res.commit.unwait(p, pid)  # no longer waits (the hand-off came, or merged away)
                continue
            one = Result()
            snapshot = state.to_json()
            try:
                if stage.still_waiting(one, p, pid, state):
                    continue
            except FatalError:
                raise
            except Exception as exc:  # applying the held events failed: keep waiting, say why
                log.error("profile %s could not release its held events (%s)", pid, type(exc).__name__)
                state.restore(snapshot)
                continue
            res.absorb(one)
            res.commit.states[pid] = state
    metrics.flush()
    return res


def _fire_one(
    stage: DecideStage, res: Result, p: int, t: DueTimer, state: ProfileState, now: int
) -> list[DueTimer]:
    """Fire ``t`` into ``res``. Returns the timers its firing set for this profile that are due
    at ``now`` (empty if it failed: the profile stays as it was)."""
    tid = t.timer_id
    pid, key = tid.profile_id, tid.key
    before = state.to_json()
    one = Result()
    failure: RuleFailure | None = None
    exc_name = ""
    try:
        eff = stage.engine.on_timer(pid, state, t.member, t.due, t.payload)
        if eff.failures:
            failure = eff.failures[0]
            exc_name = failure.exception
        else:
            stage.emit_effects(one, p, eff, state)
    except FatalError:
        raise
    except Exception as exc:  # ours, not the rule's: the profile stays as it was
        exc_name = type(exc).__name__
        log.error("timer %s could not be applied (%s)", t.member, exc_name)
    res.commit.states[pid] = state
    if not exc_name:
        state.fails.pop(key, None)
        metrics.count(metrics.TIMERS_FIRED, tid.rule)
        res.commit.fired.setdefault(p, []).append(t)
        res.absorb(one)
        ops = one.commit.timers.get(p)
        if ops is None:
            return []
        prefix = pid + SEP
        return [
            DueTimer(member, due, payload)
            for member, (due, payload) in ops.schedule.items()
            if due <= now and member.startswith(prefix)
        ]
    state.restore(before)
    attempts = state.fails.get(key, 0) + 1
    if attempts < TIMER_MAX_ATTEMPTS:
        state.fails[key] = attempts  # still claimed: tried again when the lease lapses
        return []
    # Given up: the timer leaves the store, its payload goes to the dead-letter topic.
    state.fails.pop(key, None)
    state.timers.pop(key, None)
    state.timer_payloads.pop(key, None)
    res.commit.fired.setdefault(p, []).append(t)
    metrics.DEADLETTERED.labels(ErrorCode.PROCESSING_ERROR.value).inc()
    log.error("timer %s failed %d times (%s); dead-lettered with its payload", t.member, attempts, exc_name)
    value = dumps({"profileId": pid, "rule": tid.rule, "timer": t.member, "due": t.due, "payload": t.payload})
    dl = DeadLetter(
        ErrorCode.PROCESSING_ERROR,
        f"timer failed {attempts} times",
        pid.encode(),
        value,
        SourceRef(stage.topics.profiled, p, -1),
        stage="timer",
        rule=tid.rule,
        exception=exc_name,
    )
    res.records.append(OutRecord(stage.topics.deadletter, dl.key, dl.value, None, dl.headers()))
    if failure is not None:
        stage.emit_error_decision(res, failure, state)
    return []

"""Stage 2, on the repartition topic (keyed by profile): consent, rules, timers, decisions.

Per batch: load the states of the batch's profiles (one round trip), apply every record
in order, and return the records to produce plus a :class:`Commit` of state and timer
changes. The caller produces first, waits for the acks, then calls :meth:`commit`; a
crash in between redelivers the batch, which recomputes the same records (same ids),
and records already applied to a profile (``state.off``) are skipped.

Only the worker owning a partition touches the profiles that hash to it; absorbed
profiles hand their state to the survivor's partition through the topic itself.

Faults stay with the record that caused them. A record the stage cannot apply (anything
raised that is not an outage or a configuration error) is dead-lettered on its own, with
its bytes, ``cx-error-code: processing_error`` and the stage and exception class; the batch
is then computed again without it, from the stored state (nothing was persisted yet), so
the rest of the batch is applied exactly as if that record had never come. A rule that
fails costs that rule that one event (a ``cx.decisions`` record with outcome ``error``
says so); a timer whose rule fails is retried after its lease lapses, up to
:data:`~streams.constants.TIMER_MAX_ATTEMPTS` times, then dead-lettered with its payload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from streams import metrics
from streams.constants import TIMER_MAX_ATTEMPTS, TIMER_SCAN_LIMIT
from streams.engine.clock import EventClock, wall_ms
from streams.engine.runner import Effects, Engine, RuleFailure
from streams.engine.state import ProfileState, StateStore
from streams.engine.timers import DueTimer, TimerOps, TimerStore, member
from streams.exceptions import FatalError
from streams.intake.errors import DeadLetter, ErrorCode
from streams.model import Event, JSONDict, SourceRef, dumps, loads
from streams.pipeline import envelope
from streams.pipeline.records import InRecord, OutRecord
from streams.sinks import records

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecideTopics:
    profiled: str
    activations: str
    decisions: str
    identity_changes: str
    deadletter: str = "cx.events.deadletter"


class _RecordFailed(Exception):
    """Record ``index`` of the batch could not be applied (``exc`` says why)."""

    def __init__(self, index: int, exc: Exception) -> None:
        super().__init__(index)
        self.index = index
        self.exc = exc


@dataclass(slots=True)
class Commit:
    """What to persist once the batch's records are acked."""

    states: dict[str, ProfileState | None] = field(default_factory=dict)
    timers: dict[int, TimerOps] = field(default_factory=dict)
    fired: dict[int, list[DueTimer]] = field(default_factory=dict)
    marks: dict[int, dict[int, int]] = field(default_factory=dict)
    #: claimed but not fired (the profile waits for a hand-off): claim given back
    released: dict[int, list[DueTimer]] = field(default_factory=dict)
    #: profiles that started waiting for a hand-off (partition -> pid -> since), and stopped
    waits: dict[int, dict[str, int]] = field(default_factory=dict)
    unwaits: dict[int, set[str]] = field(default_factory=dict)

    def wait(self, partition: int, pid: str, since: int) -> None:
        self.unwaits.get(partition, set()).discard(pid)
        self.waits.setdefault(partition, {})[pid] = since

    def unwait(self, partition: int, pid: str) -> None:
        self.waits.get(partition, {}).pop(pid, None)
        self.unwaits.setdefault(partition, set()).add(pid)

    def timer_ops(self, partition: int) -> TimerOps:
        ops = self.timers.get(partition)
        if ops is None:
            ops = self.timers[partition] = TimerOps({}, set())
        return ops


@dataclass(slots=True)
class Result:
    records: list[OutRecord] = field(default_factory=list)
    commit: Commit = field(default_factory=Commit)
    #: (rule, origin wall ms) per activation, for the event-to-trigger latency metric
    latencies: list[tuple[str, int]] = field(default_factory=list)

    def absorb(self, other: Result) -> None:
        """Append what ``other`` produced and changed (records and timer operations) after ours."""
        self.records += other.records
        self.latencies += other.latencies
        for p, theirs in other.commit.timers.items():
            self.commit.timer_ops(p).then(theirs.cancel, theirs.schedule)
        self.commit.states.update(other.commit.states)
        for p, w in other.commit.waits.items():
            for pid, since in w.items():
                self.commit.wait(p, pid, since)
        for p, gone in other.commit.unwaits.items():
            for pid in gone:
                self.commit.unwait(p, pid)


class DecideStage:
    def __init__(
        self,
        engine: Engine,
        states: StateStore,
        timers: TimerStore,
        *,
        partitions: int,
        topics: DecideTopics,
        clock: Literal["wall", "event"],
        event_clock: EventClock,
        timer_batch: int = TIMER_SCAN_LIMIT,
        handoff_timeout_ms: int = 600_000,
        handoff_max_buffer: int = 1000,
        wall: Callable[[], int] = wall_ms,
    ) -> None:
        self.timer_batch = timer_batch
        self.handoff_timeout_ms = handoff_timeout_ms
        self.handoff_max_buffer = handoff_max_buffer
        self.wall = wall
        self.engine = engine
        self.states = states
        self.timers = timers
        self.partitions = partitions
        self.topics = topics
        self.clock_mode = clock
        self.event_clock = event_clock

    # ------------------------------------------------------------------ records
    async def process(self, batch: Sequence[InRecord]) -> Result:
        """The batch's records and commit. Never raises on a record: see the module docstring."""
        skip: dict[int, Exception] = {}
        while True:
            try:
                res = await self._run(batch, skip)
            except _RecordFailed as failed:
                if isinstance(failed.exc, FatalError):
                    raise failed.exc from None
                skip[failed.index] = failed.exc
                continue  # again from the stored state, without that record
            for i, exc in sorted(skip.items()):
                res.records.append(self._dead_letter(batch[i], exc))
            return res

    def _dead_letter(self, rec: InRecord, exc: Exception, rule: str | None = None) -> OutRecord:
        name = type(exc).__name__
        metrics.DEADLETTERED.labels(ErrorCode.PROCESSING_ERROR.value).inc()
        log.error(
            "repartition record %s/%s/%s could not be applied (%s); dead-lettered, the batch went on",
            rec.topic,
            rec.partition,
            rec.offset,
            name,
        )
        dl = DeadLetter(
            ErrorCode.PROCESSING_ERROR,
            f"decide stage raised {name}",
            rec.key,
            rec.value or b"",
            SourceRef(rec.topic, rec.partition, rec.offset),
            stage="decide",
            rule=rule,
            exception=name,
        )
        return OutRecord(self.topics.deadletter, dl.key, dl.value, None, dl.headers())

    async def _run(self, batch: Sequence[InRecord], skip: dict[int, Exception]) -> Result:
        res = Result()
        parsed: list[tuple[int, InRecord, JSONDict]] = []
        for i, rec in enumerate(batch):
            if i in skip:
                continue
            try:
                d = loads(rec.value or b"")
                if not isinstance(d, dict) or not isinstance(d.get("k"), str):
                    raise ValueError("not a repartition envelope")
                if d["k"] not in ("wm", "idle") and not isinstance(d.get("pid"), str):
                    raise ValueError("a repartition envelope without a profile id")
            except Exception as exc:
                raise _RecordFailed(i, exc) from exc
            parsed.append((i, rec, d))
        pids = {d["pid"] for _, _, d in parsed if "pid" in d}
        cache, unreadable = await self._load(pids)
        for i, rec, d in parsed:
            try:
                if d.get("pid") in unreadable:
                    raise unreadable[d["pid"]]
                await self._apply(res, cache, rec, d)
            except Exception as exc:
                raise _RecordFailed(i, exc) from exc
        return res

    async def _load(self, pids: set[str]) -> tuple[dict[str, ProfileState], dict[str, Exception]]:
        """The states, in one round trip; if that fails for a reason other than an outage (a
        state that cannot be read), one by one, so only the records of that profile fail."""
        try:
            return await self.states.load(pids), {}
        except FatalError:
            raise
        except Exception:
            log.error("loading %d profile states failed; loading them one by one", len(pids))
        cache: dict[str, ProfileState] = {}
        bad: dict[str, Exception] = {}
        for pid in sorted(pids):
            try:
                cache.update(await self.states.load([pid]))
            except FatalError:
                raise
            except Exception as exc:
                bad[pid] = exc
        return cache, bad

    async def _apply(self, res: Result, cache: dict[str, ProfileState], rec: InRecord, d: JSONDict) -> None:
        kind = d["k"]
        if kind == "wm":
            if self.event_clock.observe(rec.partition, int(d["src"]), int(d["wm"])):
                res.commit.marks[rec.partition] = self.event_clock.marks(rec.partition)
            return
        if kind == "idle":
            self.event_clock.report_idle(rec.partition, int(d["src"]))
            return
        pid = d["pid"]
        if pid not in cache:
            cache.update(await self.states.load([pid]))
        state = cache[pid]
        if rec.offset <= state.off:
            return  # applied before a crash; its records were produced then
        if kind == "merge" and (state.into or d["into"] == pid):
            # Merged away already: a merge announced again (its intake batch was processed again,
            # and identity gave the same answer) changes nothing. Forwarding it would make the
            # survivor merge into itself.
            return
        if state.into and kind != "erase":
            self._forward(res, state.into, d)
            return
        state.off = rec.offset
        res.commit.states[pid] = state
        if kind == "ev":
            if state.pending and self._waiting(res, rec.partition, pid, state):
                state.buffer.append(d)  # half a person: wait for the announced hand-off
            else:
                self._apply_event(res, rec.partition, pid, state, d)
        elif kind == "expect":
            absorbed = d["from"]
            if absorbed not in state.absorbed and absorbed not in state.pending:
                state.pending.append(absorbed)
                if not state.since:
                    state.since = self.wall()
                    res.commit.wait(rec.partition, pid, state.since)
        elif kind == "merge":
            self._fire_until(res, rec.partition, pid, state, int(d["ts"]))
            self._hand_off(res, rec.partition, pid, state, d["into"], int(d["ts"]))
            cache[pid] = res.commit.states[pid] or state  # the tombstone, for later records of the batch
        elif kind == "hand":
            absorbed = d["from"]
            if absorbed in state.absorbed:
                return
            state.absorbed.append(absorbed)
            other = ProfileState.from_json(dumps(d["state"]))
            # and what it had absorbed itself: an `expect` for one of those, announced again and
            # forwarded here, must not make this profile wait for a hand-off that came long ago
            state.absorbed += [a for a in other.absorbed if a not in state.absorbed and a != pid]
            if absorbed in state.pending:
                state.pending.remove(absorbed)
            # what the absorbed profile was itself waiting for, it now waits for here
            state.pending += [p for p in other.pending if p not in state.absorbed and p not in state.pending]
            if state.pending and not state.since:
                state.since = self.wall()
                res.commit.wait(rec.partition, pid, state.since)
            state.buffer += other.buffer
            self._effects(
                res, rec.partition, self.engine.merge(pid, state, other, absorbed, int(d.get("ts", 0))), state
            )
            if not state.pending:
                self._release_buffer(res, rec.partition, pid, state)
        elif kind == "erase":
            ops = res.commit.timer_ops(rec.partition)
            ops.cancel.update(member(pid, *k.split("|", 1)) for k in state.timers)
            for m in [m for m in ops.schedule if m.startswith(pid + "|")]:  # set earlier in this batch
                del ops.schedule[m]
                ops.cancel.add(m)
            res.commit.states[pid] = None
            res.commit.unwait(rec.partition, pid)
            cache[pid] = ProfileState()  # a later record of this batch must not bring it back
            for absorbed in state.absorbed:  # their tombstones name this profile
                res.commit.states[absorbed] = None
                cache.pop(absorbed, None)
            if state.into:
                # What this profile forwarded or handed to its survivor (maybe after the survivor's
                # own erase) is ahead of this record on that path: the survivor erases again after it.
                self._forward(res, state.into, d)
        else:
            raise ValueError(f"unknown repartition record kind {kind!r}")

    def _waiting(self, res: Result, partition: int, pid: str, state: ProfileState) -> bool:
        """Whether the profile still waits for an announced hand-off. Past the hand-off timeout,
        or with its buffer full, it stops waiting: what it holds is applied now, and a hand-off
        that arrives later is merged as it comes (a lost ``merge`` record cannot block a person)."""
        waited = self.wall() - (state.since or self.wall())
        if waited <= self.handoff_timeout_ms and len(state.buffer) < self.handoff_max_buffer:
            return True
        metrics.HANDOFF_TIMEOUTS.inc()
        log.warning(
            "profile %s gave up waiting for the hand-off of %s after %.0fs with %d events held; "
            "going on with what it has",
            pid,
            ",".join(state.pending),
            waited / 1000,
            len(state.buffer),
        )
        state.pending = []
        self._release_buffer(res, partition, pid, state)
        return False

    def _release_buffer(self, res: Result, partition: int, pid: str, state: ProfileState) -> None:
        state.since = 0
        res.commit.unwait(partition, pid)
        held, state.buffer = state.buffer, []
        for env in held:
            self._apply_event(res, partition, pid, state, env)

    def _apply_event(self, res: Result, partition: int, pid: str, state: ProfileState, d: JSONDict) -> None:
        ev = Event.from_dict(d["ev"])
        self._effects(res, partition, self.engine.on_event(pid, state, ev, int(d.get("rx", 0))), state)
        metrics.event_resolved(state.reach)

    def _forward(self, res: Result, into: str, d: JSONDict) -> None:
        fwd = {**d, "pid": into}
        res.records.append(envelope.to_profile(self.topics.profiled, into, dumps(fwd), self.partitions))

    def _fire_until(self, res: Result, partition: int, pid: str, state: ProfileState, until: int) -> None:
        """Fire the absorbed profile's own timers due by the merge's event time, under its id.

        From the merge on, every event of this person resolves to the survivor, so this
        state is final: what was due before the merge is decided now, as the event clock
        would have, even when a fast source partition brought the merge ahead of the clock.
        A timer whose rule fails here is kept: it travels with the hand-off and is retried
        by the survivor's owner like any failing timer.
        """
        eff = self.engine.fire_until(pid, state, until, on_failure=lambda _f: True)
        for f in eff.fired:
            metrics.TIMERS_FIRED.labels(f.rule.name).inc()
        self._effects(res, partition, eff, state)

    def _hand_off(
        self, res: Result, partition: int, pid: str, state: ProfileState, into: str, ts: int
    ) -> None:
        payload = loads(state.to_json())
        payload.pop("off", None)
        res.records.append(
            envelope.to_profile(
                self.topics.profiled, into, envelope.handoff_record(into, pid, payload, ts), self.partitions
            )
        )
        ops = res.commit.timer_ops(partition)
        for k in state.timers:  # they travel with the hand-off; none stays here
            m = member(pid, *k.split("|", 1))
            ops.schedule.pop(m, None)
            ops.cancel.add(m)
        if state.since:  # what it waited for travels in the hand-off: the survivor waits now
            res.commit.unwait(partition, pid)
        # The cached object itself becomes the tombstone: later records of this batch for the
        # absorbed profile must see `into` and be forwarded, not revive the old state.
        state.become_tombstone(into)
        res.commit.states[pid] = state

    def _effects(self, res: Result, partition: int, eff: Effects, state: ProfileState | None = None) -> None:
        res.commit.timer_ops(partition).then(eff.cancel_timers, eff.set_timers)
        pv = self.engine.policy.version
        for failure in eff.failures:
            if failure.method != "on_timer":  # timers are retried; fire_due reports the last failure
                self._error_decision(res, failure, state)
        for f in eff.fired:
            dk, dv = records.decision(f, pv)
            res.records.append(OutRecord(self.topics.decisions, dk, dv))
            outcome = "activated" if f.verdict.activated else "suppressed"
            if state is not None:
                chans = [a.channel for a in f.verdict.allowed] + [r.channel for r in f.verdict.refused]
                purposes = {f.rule.purpose, *(self.engine.policy.channels.get(c, "") for c in chans)}
                metrics.decision_consent(state.consent, purposes)
            if f.verdict.activated:
                ak, av, headers = records.activation(f, pv)
                res.records.append(OutRecord(self.topics.activations, ak, av, None, headers))
                for a in f.verdict.allowed:
                    metrics.TRIGGERS.labels(f.rule.name, a.channel).inc()
                if f.origin_rx:
                    res.latencies.append((f.rule.name, f.origin_rx))
            metrics.DECISIONS.labels(f.rule.name, outcome).inc()
            for r in f.verdict.refused:
                metrics.REFUSALS.labels(f.rule.name, r.reason.value).inc()

    # ------------------------------------------------------------------ timers
    def clock_now(self, partition: int) -> int | None:
        if self.clock_mode == "wall":
            return wall_ms()
        return self.event_clock.now(partition)

    async def fire_due(self, partitions: Iterable[int]) -> Result:
        """Claim and run up to ``timer_batch`` due timers of each of these partitions.

        Each timer is isolated: one whose rule fails (or that the stage cannot apply) leaves
        the profile as it was and stays claimed until its lease lapses, then is tried again;
        after :data:`TIMER_MAX_ATTEMPTS` failures it is dead-lettered with its payload (and a
        ``cx.decisions`` record with outcome ``error``). The other timers go on.
        """
        limit = self.timer_batch
        res = Result()
        claimed: list[tuple[int, DueTimer]] = []
        for p in partitions:
            now = self.clock_now(p)
            if now is None:
                continue
            due = await self.timers.claim(p, now, self.wall(), limit)
            for t in due:
                metrics.TIMER_LATENESS.observe(max(0.0, (now - t.due) / 1000))
            claimed += [(p, t) for t in due]
        if not claimed:
            return res
        cache = await self.states.load({t.profile_id for _, t in claimed})
        for p, t in sorted(claimed, key=lambda x: (x[1].due, x[1].member)):
            pid = t.profile_id
            state = cache[pid]
            if state.pending:
                one = Result()
                try:
                    waiting = self._waiting(one, p, pid, state)
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
            if state.into:
                res.commit.fired.setdefault(p, []).append(t)
                continue  # merged away: the survivor got this timer in the hand-off
            key = t.member.split("|", 1)[1]
            if state.timers.get(key) != t.due:
                res.commit.fired.setdefault(p, []).append(t)
                continue  # stale: rescheduled or cancelled since
            self._fire_one(res, p, t, state, key)
        return res

    async def release_waiting(self, partitions: Iterable[int]) -> Result:
        """Profiles that waited longer than the hand-off timeout go on without it, even when
        nothing more arrives for them (their held events are applied now)."""
        res = Result()
        before = self.wall() - self.handoff_timeout_ms
        for p in partitions:
            pids = await self.timers.waiting(p, before, self.timer_batch)
            if not pids:
                continue
            cache = await self.states.load(pids)
            for pid in pids:
                state = cache[pid]
                if not state.pending or state.into:
                    res.commit.unwait(p, pid)  # no longer waits (the hand-off came, or merged away)
                    continue
                one = Result()
                snapshot = state.to_json()
                try:
                    if self._waiting(one, p, pid, state):
                        continue
                except FatalError:
                    raise
                except Exception as exc:  # applying the held events failed: keep waiting, say why
                    log.error("profile %s could not release its held events (%s)", pid, type(exc).__name__)
                    state.restore(snapshot)
                    continue
                res.absorb(one)
                res.commit.states[pid] = state
        return res

    def _fire_one(self, res: Result, p: int, t: DueTimer, state: ProfileState, key: str) -> None:
        pid = t.profile_id
        before = state.to_json()
        one = Result()
        failure: RuleFailure | None = None
        exc_name = ""
        try:
            eff = self.engine.on_timer(pid, state, t.member, t.due, t.payload)
            if eff.failures:
                failure = eff.failures[0]
                exc_name = failure.exception
            else:
                self._effects(one, p, eff, state)
        except FatalError:
            raise
        except Exception as exc:  # ours, not the rule's: the profile stays as it was
            exc_name = type(exc).__name__
            log.error("timer %s could not be applied (%s)", t.member, exc_name)
        res.commit.states[pid] = state
        if not exc_name:
            state.fails.pop(key, None)
            metrics.TIMERS_FIRED.labels(key.split("|", 1)[0]).inc()
            res.commit.fired.setdefault(p, []).append(t)
            res.absorb(one)
            return
        state.restore(before)
        attempts = state.fails.get(key, 0) + 1
        if attempts < TIMER_MAX_ATTEMPTS:
            state.fails[key] = attempts  # still claimed: tried again when the lease lapses
            return
        # Given up: the timer leaves the store, its payload goes to the dead-letter topic.
        state.fails.pop(key, None)
        state.timers.pop(key, None)
        state.tpay.pop(key, None)
        res.commit.fired.setdefault(p, []).append(t)
        rule = key.split("|", 1)[0]
        metrics.DEADLETTERED.labels(ErrorCode.PROCESSING_ERROR.value).inc()
        log.error(
            "timer %s failed %d times (%s); dead-lettered with its payload", t.member, attempts, exc_name
        )
        value = dumps({"profileId": pid, "rule": rule, "timer": t.member, "due": t.due, "payload": t.payload})
        dl = DeadLetter(
            ErrorCode.PROCESSING_ERROR,
            f"timer failed {attempts} times",
            pid.encode(),
            value,
            SourceRef(self.topics.profiled, p, -1),
            stage="timer",
            rule=rule,
            exception=exc_name,
        )
        res.records.append(OutRecord(self.topics.deadletter, dl.key, dl.value, None, dl.headers()))
        if failure is not None:
            self._error_decision(res, failure, state)

    def _error_decision(self, res: Result, failure: RuleFailure, state: ProfileState | None) -> None:
        policy = self.engine.policy
        region = policy.region_of(state.country if state is not None else None)
        dk, dv = records.error_decision(failure, policy.version, region)
        res.records.append(OutRecord(self.topics.decisions, dk, dv))
        metrics.DECISIONS.labels(failure.rule.name, "error").inc()

    # ------------------------------------------------------------------ persistence
    async def commit(self, commit: Commit) -> None:
        """Persist, after the produce acks: timer changes, then state, then fired timers done.

        Timer changes go first: they are idempotent, so a crash before the state is saved
        (which makes the batch's records count as not applied) just recomputes them. The other
        way round, a saved state would skip the records whose timer changes were lost.
        """
        for p, ops in commit.timers.items():
            await self.timers.apply(p, ops)
        await self.states.save(commit.states)
        for p, marks in commit.marks.items():
            await self.timers.save_marks(p, marks)
        for p, fired in commit.fired.items():
            await self.timers.done(p, fired)
        for p, held in commit.released.items():
            await self.timers.release(p, held)
        for p in sorted(set(commit.waits) | set(commit.unwaits)):
            await self.timers.set_waiting(p, commit.waits.get(p, {}), commit.unwaits.get(p, set()))

    def observe_latency(self, res: Result) -> None:
        now = time.time() * 1000
        for rule, rx in res.latencies:
            metrics.EVENT_TO_TRIGGER_SECONDS.labels(rule).observe(max(0.0, (now - rx) / 1000))

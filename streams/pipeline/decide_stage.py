"""Stage 2, on the repartition topic (keyed by profile): consent, rules, timers, decisions.

Per batch: load the states of the batch's profiles (one round trip), apply every record
in order, and return the records to produce plus a :class:`Commit` of state and timer
changes. The caller produces first, waits for the acks, then calls :meth:`commit`; a
crash in between redelivers the batch, which recomputes the same records (same ids),
and records already applied to a profile (``state.off``) are skipped.

Only the worker owning a partition touches the profiles that hash to it; absorbed
profiles hand their state to the survivor's partition through the topic itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from streams import metrics
from streams.constants import TIMER_SCAN_LIMIT
from streams.engine.clock import EventClock, wall_ms
from streams.engine.runner import Effects, Engine
from streams.engine.state import ProfileState, StateStore
from streams.engine.timers import DueTimer, TimerOps, TimerStore, member
from streams.model import Event, JSONDict, dumps, loads
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


@dataclass(slots=True)
class Commit:
    """What to persist once the batch's records are acked."""

    states: dict[str, ProfileState | None] = field(default_factory=dict)
    timers: dict[int, TimerOps] = field(default_factory=dict)
    fired: dict[int, list[DueTimer]] = field(default_factory=dict)
    marks: dict[int, dict[int, int]] = field(default_factory=dict)
    #: claimed but not fired (the profile waits for a hand-off): claim given back
    released: dict[int, list[DueTimer]] = field(default_factory=dict)

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
    ) -> None:
        self.timer_batch = timer_batch
        self.engine = engine
        self.states = states
        self.timers = timers
        self.partitions = partitions
        self.topics = topics
        self.clock_mode = clock
        self.event_clock = event_clock

    # ------------------------------------------------------------------ records
    async def process(self, batch: Sequence[InRecord]) -> Result:
        res = Result()
        parsed: list[tuple[InRecord, JSONDict]] = []
        for rec in batch:
            try:
                parsed.append((rec, loads(rec.value or b"")))
            except Exception:
                log.error(
                    "unreadable repartition record at %s/%s/%s; skipped", rec.topic, rec.partition, rec.offset
                )
        pids = {d["pid"] for _, d in parsed if "pid" in d}
        cache = await self.states.load(pids)
        for rec, d in parsed:
            kind = d.get("k")
            if kind == "wm":
                if self.event_clock.observe(rec.partition, int(d["src"]), int(d["wm"])):
                    res.commit.marks[rec.partition] = self.event_clock.marks(rec.partition)
                continue
            pid = d["pid"]
            if pid not in cache:
                cache.update(await self.states.load([pid]))
            state = cache[pid]
            if rec.offset <= state.off:
                continue  # applied before a crash; its records were produced then
            if state.into and kind != "erase":
                self._forward(res, state.into, d)
                continue
            state.off = rec.offset
            res.commit.states[pid] = state
            if kind == "ev":
                if state.pending:
                    state.buffer.append(d)  # half a person: wait for the announced hand-off
                else:
                    self._apply_event(res, rec.partition, pid, state, d)
            elif kind == "expect":
                absorbed = d["from"]
                if absorbed not in state.absorbed and absorbed not in state.pending:
                    state.pending.append(absorbed)
            elif kind == "merge":
                self._fire_until(res, rec.partition, pid, state, int(d["ts"]))
                self._hand_off(res, rec.partition, pid, state, d["into"], int(d["ts"]))
                cache[pid] = res.commit.states[pid] or state  # the tombstone, for later records of the batch
            elif kind == "hand":
                absorbed = d["from"]
                if absorbed in state.absorbed:
                    continue
                state.absorbed.append(absorbed)
                other = ProfileState.from_json(dumps(d["state"]))
                if absorbed in state.pending:
                    state.pending.remove(absorbed)
                # what the absorbed profile was itself waiting for, it now waits for here
                state.pending += [
                    p for p in other.pending if p not in state.absorbed and p not in state.pending
                ]
                state.buffer += other.buffer
                self._effects(res, rec.partition, self.engine.merge(pid, state, other))
                if not state.pending:
                    held, state.buffer = state.buffer, []
                    for env in held:
                        self._apply_event(res, rec.partition, pid, state, env)
            elif kind == "erase":
                ops = res.commit.timer_ops(rec.partition)
                ops.cancel.update(member(pid, *k.split("|", 1)) for k in state.timers)
                for m in [m for m in ops.schedule if m.startswith(pid + "|")]:  # set earlier in this batch
                    del ops.schedule[m]
                    ops.cancel.add(m)
                res.commit.states[pid] = None
                cache[pid] = ProfileState()  # a later record of this batch must not bring it back
                for absorbed in state.absorbed:  # their tombstones name this profile
                    res.commit.states[absorbed] = None
                    cache.pop(absorbed, None)
                if state.into:
                    # What this profile forwarded or handed to its survivor (maybe after the survivor's
                    # own erase) is ahead of this record on that path: the survivor erases again after it.
                    self._forward(res, state.into, d)
        return res

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
        """
        eff = self.engine.fire_until(pid, state, until)
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
        # The cached object itself becomes the tombstone: later records of this batch for the
        # absorbed profile must see `into` and be forwarded, not revive the old state.
        state.become_tombstone(into)
        res.commit.states[pid] = state

    def _effects(self, res: Result, partition: int, eff: Effects, state: ProfileState | None = None) -> None:
        ops = res.commit.timer_ops(partition)
        for m in eff.cancel_timers:
            ops.schedule.pop(m, None)
            ops.cancel.add(m)
        for m, v in eff.set_timers.items():
            ops.cancel.discard(m)
            ops.schedule[m] = v
        pv = self.engine.policy.version
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
        """Claim and run up to ``timer_batch`` due timers of each of these partitions."""
        limit = self.timer_batch
        res = Result()
        claimed: list[tuple[int, DueTimer]] = []
        for p in partitions:
            now = self.clock_now(p)
            if now is None:
                continue
            due = await self.timers.claim(p, now, wall_ms(), limit)
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
                # a hand-off is on its way: decide on the whole person, once it is here
                res.commit.released.setdefault(p, []).append(t)
                continue
            res.commit.fired.setdefault(p, []).append(t)
            if state.into:
                continue  # merged away: the survivor got this timer in the hand-off
            key = t.member.split("|", 1)[1]
            if state.timers.get(key) != t.due:
                continue  # stale: rescheduled or cancelled since
            metrics.TIMERS_FIRED.labels(key.split("|", 1)[0]).inc()
            res.commit.states[pid] = state
            self._effects(res, p, self.engine.on_timer(pid, state, t.member, t.due, t.payload), state)
        return res

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

    def observe_latency(self, res: Result) -> None:
        now = time.time() * 1000
        for rule, rx in res.latencies:
            metrics.EVENT_TO_TRIGGER_SECONDS.labels(rule).observe(max(0.0, (now - rx) / 1000))

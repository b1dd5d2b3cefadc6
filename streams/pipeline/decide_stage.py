"""Stage 2, on the repartition topic (keyed by profile): consent, rules, timers, decisions.

Per batch: load the states of the batch's profiles (one round trip), apply every record
in order, and return the records to produce plus a :class:`Commit` of state and timer
changes. The caller produces first, waits for the acks, then calls :meth:`commit`; a
crash in between redelivers the batch, which recomputes the same records (same ids),
and records already applied to a profile (``state.applied_offset``) are skipped. Each record
is parsed once into a typed record (:func:`streams.pipeline.envelope.unpack`) and applied by the
method of its kind (``_on_event``, ``_on_expect``, ``_on_merge``, ``_on_hand_off``, ``_on_erase``,
``_on_watermark``, ``_on_idle``); timers are in :mod:`streams.pipeline.decide_timers`.

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

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

from streams import metrics
from streams.constants import TIMER_SCAN_LIMIT
from streams.engine import recent
from streams.engine.clock import EventClock, wall_ms
from streams.engine.effects import Effects, RuleFailure
from streams.engine.runner import Engine
from streams.engine.state import StateStore, load_with
from streams.engine.timers import TimerStore
from streams.exceptions import FatalError
from streams.intake.errors import DeadLetter, ErrorCode
from streams.measure import kpi
from streams.measure.activity import ActivityStore, MemoryActivityStore, changed_day
from streams.model import Event, SourceRef, dumps, loads
from streams.pipeline import decide_commit, decide_timers, envelope
from streams.pipeline.decide_result import Commit, Result
from streams.pipeline.envelope import (
    Envelope,
    EnvelopeError,
    EraseRecord,
    EventRecord,
    ExpectRecord,
    HandOffRecord,
    IdleRecord,
    Item,
    MergeRecord,
    ProfileRecord,
    WatermarkRecord,
)
from streams.pipeline.records import InRecord, OutRecord
from streams.sinks import records
from streams.state import ProfileState, TimerId, erase_profile

__all__ = ["Commit", "DecideStage", "DecideTopics", "Result"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DecideTopics:
    profiled: str
    activations: str
    decisions: str
    deadletter: str = "cx.events.deadletter"
    conversions: str = "cx.conversions"


class _RecordFailed(Exception):
    """Record ``index`` of the batch could not be applied (``exc`` says why)."""

    def __init__(self, index: int, exc: Exception) -> None:
        super().__init__(index)
        self.index = index
        self.exc = exc


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
        activity: ActivityStore | None = None,
    ) -> None:
        self.activity = activity or MemoryActivityStore()
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
        self.carried: Mapping[str, ProfileState | None] = {}  # a commit in flight writes these

    # ------------------------------------------------------------------ records
    async def process(self, batch: Sequence[InRecord]) -> Result:
        """The batch's records and commit. Never raises on a record: see the module docstring."""
        items = envelope.unpack_all(batch)
        # records that cannot be read are dead-lettered at once; the others are applied
        skip: dict[int, Exception] = {
            n: env for n, (_, _, _, env) in enumerate(items) if isinstance(env, EnvelopeError)
        }
        while True:
            try:
                res = await self._run(items, skip)
            except _RecordFailed as failed:
                if isinstance(failed.exc, FatalError):
                    raise failed.exc from None
                skip[failed.index] = failed.exc
                continue  # again from the stored state, without that record
            for n, exc in sorted(skip.items()):
                res.records.append(self._dead_letter(items[n], exc))
            metrics.flush()  # the batch's per-event counts, once per label set
            return res

    def _dead_letter(self, item: Item, exc: Exception) -> OutRecord:
        rec, index, wire, _ = item
        name = type(exc).__name__
        metrics.DEADLETTERED.labels(ErrorCode.PROCESSING_ERROR.value).inc()
        log.error(
            "repartition record %s/%s/%s%s could not be applied (%s); dead-lettered, the batch went on",
            rec.topic,
            rec.partition,
            rec.offset,
            "" if wire is None else f" (#{index} of its batch)",
            name,
        )
        key, value = rec.key, rec.value or b""
        if wire is not None:  # one record of a batch: its own bytes, under its profile
            pid = wire.get("pid") if isinstance(wire, dict) else None
            key = pid.encode() if isinstance(pid, str) else None
            with contextlib.suppress(TypeError):  # deeper than orjson writes: the batch's bytes
                value = dumps(wire)
        dl = DeadLetter(
            ErrorCode.PROCESSING_ERROR,
            f"decide stage raised {name}" + ("" if wire is None else f" on record {index} of a batch"),
            key,
            value,
            SourceRef(rec.topic, rec.partition, rec.offset),
            stage="decide",
            exception=name,
        )
        return OutRecord(self.topics.deadletter, dl.key, dl.value, None, dl.headers())

    async def _run(self, items: Sequence[Item], skip: dict[int, Exception]) -> Result:
        res = Result()
        pids = {
            e.profile_id
            for n, (_, _, _, e) in enumerate(items)
            if n not in skip and not isinstance(e, (WatermarkRecord, IdleRecord, EnvelopeError))
        }
        cache, unreadable = await self._load(pids)
        for n, (rec, index, _, env) in enumerate(items):
            if n in skip or isinstance(env, EnvelopeError):  # (every unreadable record is in skip)
                continue
            try:
                if not isinstance(env, (WatermarkRecord, IdleRecord)) and env.profile_id in unreadable:
                    raise unreadable[env.profile_id]
                await self._apply(res, cache, rec, index, env)
            except Exception as exc:
                raise _RecordFailed(n, exc) from exc
        return res

    async def _load(self, pids: set[str]) -> tuple[dict[str, ProfileState], dict[str, Exception]]:
        """The states, in one round trip; if that fails for a reason other than an outage (a
        state that cannot be read), one by one, so only the records of that profile fail."""
        try:
            return await load_with(self.states, pids, self.carried), {}
        except FatalError:
            raise
        except Exception:
            log.error("loading %d profile states failed; loading them one by one", len(pids))
        cache: dict[str, ProfileState] = {}
        bad: dict[str, Exception] = {}
        for pid in sorted(pids):
            try:
                cache.update(await load_with(self.states, [pid], self.carried))
            except FatalError:
                raise
            except Exception as exc:
                bad[pid] = exc
        return cache, bad

    async def _apply(
        self, res: Result, cache: dict[str, ProfileState], rec: InRecord, index: int, env: Envelope
    ) -> None:
        """Apply one record: the clock records directly; a profile's record to its state (once:
        redelivered offsets are skipped; merged away: forwarded to the survivor), by its kind."""
        if isinstance(env, WatermarkRecord):
            self._on_watermark(res, rec.partition, env)
            return
        if isinstance(env, IdleRecord):
            self._on_idle(rec.partition, env)
            return
        pid = env.profile_id
        if pid not in cache:
            cache.update(await load_with(self.states, [pid], self.carried))
        state = cache[pid]
        off = rec.offset
        if off < state.applied_offset or (off == state.applied_offset and index <= state.applied_index):
            return  # applied before a crash; its records were produced then
        if isinstance(env, MergeRecord) and (state.merged_into or env.merged_into == pid):
            # Merged away already: a merge announced again (its intake batch was processed again,
            # and identity gave the same answer) changes nothing. Forwarding it would make the
            # survivor merge into itself.
            return
        if state.merged_into and not isinstance(env, EraseRecord):
            self._forward(res, state.merged_into, env)
            return
        state.applied_offset, state.applied_index = off, index
        res.commit.states[pid] = state
        p = rec.partition
        match env:
            case EventRecord():
                self._on_event(res, p, pid, state, env)
            case ExpectRecord():
                self._on_expect(res, p, pid, state, env)
            case MergeRecord():
                self._on_merge(res, cache, p, pid, state, env)
            case HandOffRecord():
                self._on_hand_off(res, p, pid, state, env)
            case EraseRecord():
                self._on_erase(res, cache, p, pid, state, env)
            case _:  # mypy: every kind has its method
                assert_never(env)

    def _on_watermark(self, res: Result, partition: int, rec: WatermarkRecord) -> None:
        if self.event_clock.observe_all(partition, rec.marks):
            res.commit.marks[partition] = self.event_clock.marks(partition)

    def _on_idle(self, partition: int, rec: IdleRecord) -> None:
        self.event_clock.report_idle(partition, rec.source)

    def _on_event(self, res: Result, partition: int, pid: str, state: ProfileState, rec: EventRecord) -> None:
        if state.pending and self.still_waiting(res, partition, pid, state):
            state.buffer.append(rec.to_wire())  # half a person: wait for the announced hand-off
        else:
            self._apply_event(res, partition, pid, state, rec)

    def _on_expect(
        self, res: Result, partition: int, pid: str, state: ProfileState, rec: ExpectRecord
    ) -> None:
        if rec.absorbed not in state.absorbed and rec.absorbed not in state.pending:
            state.pending.append(rec.absorbed)
            if not state.since:
                state.since = self.wall()
                res.commit.wait(partition, pid, state.since)

    def _on_merge(
        self,
        res: Result,
        cache: dict[str, ProfileState],
        partition: int,
        pid: str,
        state: ProfileState,
        rec: MergeRecord,
    ) -> None:
        self._fire_until(res, partition, pid, state, rec.ts)
        self._hand_off(res, partition, pid, state, rec.merged_into, rec.ts)
        cache[pid] = res.commit.states[pid] or state  # the tombstone, for later records of the batch

    def _on_hand_off(
        self, res: Result, partition: int, pid: str, state: ProfileState, rec: HandOffRecord
    ) -> None:
        absorbed = rec.absorbed
        if absorbed in state.absorbed:
            return
        state.absorbed.append(absorbed)
        other = ProfileState.from_json(dumps(rec.state))
        # and what it had absorbed itself: an `expect` for one of those, announced again and
        # forwarded here, must not make this profile wait for a hand-off that came long ago
        state.absorbed += [a for a in other.absorbed if a not in state.absorbed and a != pid]
        if absorbed in state.pending:
            state.pending.remove(absorbed)
        # what the absorbed profile was itself waiting for, it now waits for here
        state.pending += [p for p in other.pending if p not in state.absorbed and p not in state.pending]
        if state.pending and not state.since:
            state.since = self.wall()
            res.commit.wait(partition, pid, state.since)
        state.buffer += other.buffer
        self.emit_effects(res, partition, self.engine.merge(pid, state, other, absorbed, rec.ts), state)
        merged = kpi.facts(state.reach, state.computed)
        if merged.known and merged.last_activity is not None:  # the person's, not one half's
            res.commit.seen(partition, pid, merged.last_activity)
        if not state.pending:
            self._release_buffer(res, partition, pid, state)

    def _on_erase(
        self,
        res: Result,
        cache: dict[str, ProfileState],
        partition: int,
        pid: str,
        state: ProfileState,
        rec: EraseRecord,
    ) -> None:
        erasure = erase_profile(pid, state)
        ops = res.commit.timer_ops(partition)
        set_in_batch = [m for m in ops.schedule if TimerId.parse(m).profile_id == pid]
        ops.then([*sorted(erasure.cancel_timers), *set_in_batch], {})
        for gone in erasure.delete_states:  # the profile, and the tombstones naming it
            res.commit.states[gone] = None
            res.commit.gone(partition, gone)
            cache.pop(gone, None)
        res.commit.unwait(partition, pid)
        cache[pid] = ProfileState()  # a later record of this batch must not bring it back
        if state.merged_into:
            # What this profile forwarded or handed to its survivor (maybe after the survivor's
            # own erase) is ahead of this record on that path: the survivor erases again after it.
            self._forward(res, state.merged_into, rec)

    def still_waiting(self, res: Result, partition: int, pid: str, state: ProfileState) -> bool:
        """Whether the profile still waits for an announced hand-off (asked for each of its events
        and timers). Past the hand-off timeout, or with its buffer full, it stops waiting: what it
        holds is applied now, and a hand-off that arrives later is merged as it comes."""
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
        for wire in held:  # held in their wire form (stored in the state)
            rec = envelope.from_wire(wire)
            if not isinstance(rec, EventRecord):
                raise envelope.EnvelopeError(f"a held {rec.kind!r} record: only events are held")
            self._apply_event(res, partition, pid, state, rec)

    def _apply_event(
        self, res: Result, partition: int, pid: str, state: ProfileState, rec: EventRecord
    ) -> None:
        ev = Event.from_dict(rec.event)
        before = kpi.facts(state.reach, state.computed)
        self.emit_effects(res, partition, self.engine.on_event(pid, state, ev, rec.received_ms), state)
        metrics.count(metrics.EVENTS_RESOLVED, metrics.person_label(state.reach))
        churn = self.engine.policy.measurement.churn_days
        after = kpi.facts(state.reach, state.computed)
        kpi.observe(before, after, ev, churn)
        new_day = not before.known or changed_day(before.last_activity, after.last_activity)
        if after.known and after.last_activity is not None and new_day:
            res.commit.seen(partition, pid, after.last_activity)  # at most once a day each

    def _forward(self, res: Result, merged_into: str, rec: ProfileRecord) -> None:
        value = envelope.readdressed(rec, merged_into)
        res.records.append(envelope.to_profile(self.topics.profiled, merged_into, value, self.partitions))

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
            metrics.count(metrics.TIMERS_FIRED, f.rule.name)
        self.emit_effects(res, partition, eff, state)

    def _hand_off(
        self, res: Result, partition: int, pid: str, state: ProfileState, into: str, ts: int
    ) -> None:
        payload = loads(state.to_json())
        payload.pop("off", None)
        payload.pop("oi", None)
        res.records.append(
            envelope.to_profile(
                self.topics.profiled, into, envelope.handoff_record(into, pid, payload, ts), self.partitions
            )
        )
        ops = res.commit.timer_ops(partition)
        for k in state.timers:  # they travel with the hand-off; none stays here
            m = str(TimerId.from_key(pid, k))
            ops.schedule.pop(m, None)
            ops.cancel.add(m)
        if state.since:  # what it waited for travels in the hand-off: the survivor waits now
            res.commit.unwait(partition, pid)
        # The cached object itself becomes the tombstone: later records of this batch for the
        # absorbed profile must see `into` and be forwarded, not revive the old state.
        state.become_tombstone(into)
        res.commit.states[pid] = state
        res.commit.gone(partition, pid)  # a customer of the survivor's partition from now on

    def emit_effects(
        self, res: Result, partition: int, eff: Effects, state: ProfileState | None = None
    ) -> None:
        """Record what the engine decided (``eff``) in ``res``: timer operations, decision and activation
        records, conversions, metrics. Called after every engine call, by batches and by timers."""
        res.commit.timer_ops(partition).then(eff.cancel_timers, eff.set_timers)
        pv = self.engine.policy.version
        for failure in eff.failures:
            if failure.method != "on_timer":  # timers are retried; fire_due reports the last failure
                self.emit_error_decision(res, failure, state)
        for f in eff.fired:
            dk, dv = records.decision(f, pv)
            res.records.append(OutRecord(self.topics.decisions, dk, dv))
            outcome = f.outcome  # activated, holdout (allowed, held out: not activated) or suppressed
            if outcome == "shadow":  # a rule in shadow: the decision record only (streams.engine.shadow)
                metrics.count(metrics.DECISIONS, f.rule.name, outcome)
                continue
            if state is not None:  # the profile's recent triggers (Profile API), as decided
                tid = records.trigger_id(f.rule.name, f.rule.version, f.spec.key)
                recent.record(state, recent.entry(tid, f, outcome))
            if state is not None:
                chans = [a.channel for a in f.verdict.allowed] + [r.channel for r in f.verdict.refused]
                purposes = {f.rule.purpose, *(self.engine.policy.channels.get(c, "") for c in chans)}
                metrics.count(metrics.DECISION_CONSENT, metrics.statement_label(state.consent, purposes))
            if outcome != "suppressed":
                metrics.count(metrics.MEASURED_TRIGGERS, f.rule.name, "holdout" if f.holdout else "treated")
            if outcome == "activated":
                ak, av, headers = records.activation(f, pv)
                res.records.append(OutRecord(self.topics.activations, ak, av, None, headers))
                for a in f.verdict.allowed:
                    metrics.count(metrics.TRIGGERS, f.rule.name, a.channel)
                if f.origin_rx:
                    res.latencies.append((f.rule.name, f.origin_rx))
            metrics.count(metrics.DECISIONS, f.rule.name, outcome)
            for r in f.verdict.refused:
                metrics.count(metrics.REFUSALS, f.rule.name, r.reason.value)
        for c in eff.conversions:
            ck, cv = records.conversion(c)
            res.records.append(OutRecord(self.topics.conversions, ck, cv))
            metrics.count(metrics.CONVERSIONS, c.rule, c.group)

    # ------------------------------------------------------------------ timers
    def clock_now(self, partition: int) -> int | None:
        """The partition's time that timers are due by: the stage's wall clock (:attr:`wall`), or
        the partition's event clock (``None`` until it has started)."""
        if self.clock_mode == "wall":
            return self.wall()
        return self.event_clock.now(partition)

    async def fire_due(self, partitions: Iterable[int], batch: Result | None = None) -> Result:
        """Claim and run due timers of these partitions (into ``batch``, a batch's result not
        committed yet): :func:`.decide_timers.fire_due`."""
        return await decide_timers.fire_due(self, partitions, batch)

    async def release_waiting(self, partitions: Iterable[int]) -> Result:
        """Profiles that waited longer than the hand-off timeout go on without it, even when
        nothing more arrives for them: :func:`.decide_timers.release_waiting`."""
        return await decide_timers.release_waiting(self, partitions)

    def emit_error_decision(self, res: Result, failure: RuleFailure, state: ProfileState | None) -> None:
        """A ``cx.decisions`` record with outcome ``error`` for a rule that failed. Called by
        :meth:`emit_effects` and for a timer given up."""
        policy = self.engine.policy
        region = policy.region_of(state.country if state is not None else None)
        dk, dv = records.error_decision(failure, policy.version, region)
        res.records.append(OutRecord(self.topics.decisions, dk, dv))
        metrics.DECISIONS.labels(failure.rule.name, "error").inc()

    # ------------------------------------------------------------------ persistence
    async def commit(self, commit: Commit) -> None:
        """Persist, after the produce acks: timer changes, then state, then fired timers done
        (:func:`.decide_commit.commit`)."""
        await decide_commit.commit(self, commit)

    def observe_latency(self, res: Result) -> None:
        now = time.time() * 1000
        for rule, rx in res.latencies:
            metrics.EVENT_TO_TRIGGER_SECONDS.labels(rule).observe(max(0.0, (now - rx) / 1000))

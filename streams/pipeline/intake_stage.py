"""Stage 1, on ``cx.events.raw``: validate, dedupe, resolve identity, re-key by profile.

One call per batch; one Redis script call for dedupe and one for identity per batch.
Never raises on a record. A bad event becomes a dead letter with its code. A record our own
code fails on (anything raised that is not an outage or a configuration error) is
dead-lettered on its own with ``cx-error-code: processing_error``, the stage and the
exception class, and the rest of the batch goes on:

* everything that can fail on a record's content (parsing, limits, pseudonymization,
  serialization of the envelope) runs per record *before* any Redis write;
* if a batch call to Redis fails for a reason other than an outage, the batch is retried
  one record at a time, and only the record that fails is dead-lettered;
* the writes that did happen for a failed record cannot change its retry or replay: dedupe
  markers remember the source coordinate (a redelivery is not a duplicate) and identity
  resolution remembers its result per occurrence (a retry reports the same profile,
  creation and merges).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from streams import metrics
from streams.exceptions import FatalError
from streams.frozen import fast_init
from streams.identity.base import ERASURE_EVENT, IdentityStore, Resolution, ResolveRequest
from streams.identity.pii import HASHED_TYPES, Pseudonymizer
from streams.intake import DeadLetter, ErrorCode, Intake
from streams.intake.dedupe import DedupeStore
from streams.model import Event, Identifier, SourceRef, dumps
from streams.pipeline import envelope
from streams.pipeline.records import InRecord, OutRecord
from streams.sinks import records

log = logging.getLogger(__name__)

__all__ = ["HASHED_TYPES", "IntakeStage", "IntakeTopics", "pseudonymize"]


@dataclass(frozen=True, slots=True, init=False)
class IntakeTopics:
    deadletter: str
    profiled: str
    identity_changes: str

    def __init__(self, deadletter: str, profiled: str, identity_changes: str) -> None:
        object.__setattr__(self, "deadletter", deadletter)
        object.__setattr__(self, "profiled", profiled)
        object.__setattr__(self, "identity_changes", identity_changes)


class Failed:
    """Our code failed on this record: it is dead-lettered on its own. (Not a dataclass: mypyc's
    compiled module cannot give ``dataclasses`` the builtin ``Exception`` of its annotation.)"""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


@dataclass(frozen=True, slots=True, init=False)
class Pending:
    """A parsed event on its way through the stage, with its record and serialized form."""

    rec: InRecord
    ev: Event
    #: ``ev.to_dict()`` serialized once, before any Redis write (it cannot fail later)
    raw: bytes

    def __init__(self, rec: InRecord, ev: Event, raw: bytes) -> None:
        object.__setattr__(self, "rec", rec)
        object.__setattr__(self, "ev", ev)
        object.__setattr__(self, "raw", raw)


@dataclass(frozen=True, slots=True, init=False)
class Erasure:
    """What an erasure request erased: live profile id -> every profile id erased with it."""

    erased: dict[str, list[str]]

    def __init__(self, erased: dict[str, list[str]]) -> None:
        object.__setattr__(self, "erased", erased)


def is_erasure(ev: Event) -> bool:
    return ev.call == "track" and ev.name == ERASURE_EVENT


def _alias_of(ev: Event) -> str:
    """An alias's previousId, as intake typed it (``anonymous_id``, trimmed); '' for other calls."""
    if ev.call != "alias" or not ev.previous_id:
        return ""
    prev = ev.previous_id.strip()
    return prev if Identifier("anonymous_id", prev) in ev.identifiers else ""


def pseudonymize(pepper: bytes, identifier: Identifier, region: str = "US") -> Identifier:
    """The stored form of a normalized identifier (see :mod:`streams.identity.pii`): a keyed hash
    for an email or phone, by type or by value; anything else unchanged."""
    return Pseudonymizer(pepper, region).identifier(identifier)


class IntakeStage:
    def __init__(
        self,
        intake: Intake,
        dedupe: DedupeStore,
        identity: IdentityStore,
        *,
        partitions: int,
        topics: IntakeTopics,
        pepper: bytes | None = None,
    ) -> None:
        self.intake = intake
        self.dedupe = dedupe
        self.identity = identity
        self.partitions = partitions
        self.topics = topics
        self.pepper = pepper
        self._pseudo = None if pepper is None else Pseudonymizer(pepper, intake.config.phone_default_region)
        self.marks: dict[int, int] = {}  # source partition -> highest event time seen
        self.active: dict[int, int] = {}  # source partition -> wall ms it last brought a record

    def _parse(self, rec: InRecord, now_ms: int) -> Event | DeadLetter:
        src = SourceRef(rec.topic, rec.partition, rec.offset)
        try:
            return self.intake.parse(rec.value, rec.key, src, now_ms, rec.timestamp)
        except Exception as exc:  # a bug of ours: keep the event, say so
            return self._failed(rec, exc, "intake.parse")

    def _failed(self, rec: InRecord, exc: Exception, stage: str) -> DeadLetter:
        if isinstance(exc, FatalError):
            raise exc
        name = type(exc).__name__
        log.error(
            "%s failed on %s/%s/%s (%s); dead-lettered, the batch went on",
            stage,
            rec.topic,
            rec.partition,
            rec.offset,
            name,
        )
        return DeadLetter(
            ErrorCode.PROCESSING_ERROR,
            f"{stage} raised {name}",
            rec.key,
            rec.value or b"",
            SourceRef(rec.topic, rec.partition, rec.offset),
            stage=stage,
            exception=name,
        )

    def _dead_letter(self, dl: DeadLetter) -> OutRecord:
        metrics.DEADLETTERED.labels(dl.code.value).inc()
        return OutRecord(self.topics.deadletter, dl.key, dl.value, None, dl.headers())

    def _private(self, ev: Event) -> Event:
        """With a pepper, the event as it may be stored and sent on: every email or phone among its
        identifiers, traits and ``previousId`` a keyed hash, its channel one of the closed set of
        known channels (else ``other``). Everything after intake sees only this form."""
        ps = self._pseudo
        if ps is None:
            return ev
        prev = ev.previous_id
        return dataclasses.replace(
            ev,
            identifiers=ps.identifiers(ev.identifiers),
            traits=ps.traits(ev.traits),
            channel=metrics.channel_label(ev.channel),
            previous_id=ps.value(prev.strip()) if prev else prev,
        )

    def _prepare(self, rec: InRecord, ev: Event) -> Pending:
        """Everything that can fail on the record's content, before anything is written."""
        ev = self._private(ev)
        raw = dumps(ev.to_dict())
        if ev.traits:
            dumps(ev.traits)  # what the identity store sends to Redis
        return Pending(rec, ev, raw)

    async def process(self, batch: Sequence[InRecord], now_ms: int) -> list[OutRecord]:
        out: list[OutRecord] = []
        pending: list[Pending] = []
        seen: dict[int, int] = {}  # source partition -> highest event time in this batch
        for rec in batch:
            self.active[rec.partition] = now_ms
            parsed = self._parse(rec, now_ms)
            if isinstance(parsed, Event):
                try:
                    p = self._prepare(rec, parsed)
                except Exception as exc:
                    parsed = self._failed(rec, exc, "intake")
                else:
                    metrics.count(metrics.EVENTS_IN, metrics.channel_label(parsed.channel), parsed.call)
                    seen[rec.partition] = max(seen.get(rec.partition, parsed.ts), parsed.ts)
                    pending.append(p)
                    continue
            out.append(self._dead_letter(parsed))

        fresh = await self._dedupe(pending)
        kept: list[Pending] = []
        for p, ok in zip(pending, fresh, strict=True):
            if isinstance(ok, Failed):
                out.append(self._dead_letter(self._failed(p.rec, ok.exc, "intake.dedupe")))
            elif ok:
                kept.append(p)
        metrics.DUPLICATES.inc(sum(1 for ok in fresh if ok is False))

        resolutions = await self._resolve(kept)
        released: list[Pending] = []
        for p, res in zip(kept, resolutions, strict=True):
            if isinstance(res, Failed):
                out.append(self._dead_letter(self._failed(p.rec, res.exc, "intake.identity")))
                released.append(p)
                continue
            try:
                recs = self._records(p, res, now_ms)
            except Exception as exc:
                out.append(self._dead_letter(self._failed(p.rec, exc, "intake")))
                released.append(p)
                continue
            out += recs
        if released:  # a replay of them from the dead-letter topic must not be a duplicate
            try:
                await self.dedupe.release([(p.ev.message_id, str(p.ev.source)) for p in released])
            except FatalError:
                raise
            except Exception as exc:
                log.error("could not release dedupe claims of dead letters (%s)", type(exc).__name__)
        # Watermark markers go after the batch's events: on every partition, a marker only
        # follows the events it vouches for. Sent for every source partition the batch read,
        # even without an advance, so a batch that is processed again (a failed produce)
        # sends its markers again. One record per partition carries every source's mark (one
        # per source and partition was 64 records a batch with 8 and 8, issue 13).
        if seen:
            marks: dict[int, int] = {}
            for src, ts in seen.items():
                marks[src] = self.marks[src] = max(self.marks.get(src, ts), ts)
            value = envelope.watermark_record(marks)
            for part in range(self.partitions):
                out.append(OutRecord(self.topics.profiled, None, value, part))
        metrics.flush()  # the batch's per-event counts, once per label set
        return out

    def idle_markers(self, sources: Sequence[int], now_ms: int, quiet_ms: int) -> list[OutRecord]:
        """Idle markers for the source partitions this worker has read to their end and that
        brought no record for ``quiet_ms``, to every repartition partition (the event clock may
        then stop waiting for them; a source that is still busy is not idle anyway)."""
        out: list[OutRecord] = []
        for src in sorted(sources):
            if now_ms - self.active.get(src, -(2**62)) < quiet_ms:
                continue
            value = envelope.idle_record(src)
            out += [OutRecord(self.topics.profiled, None, value, part) for part in range(self.partitions)]
        return out

    def _records(self, p: Pending, res: Resolution | Erasure, now_ms: int) -> list[OutRecord]:
        ev = p.ev
        if isinstance(res, Erasure):
            return self._erasure_records(ev, res)
        out: list[OutRecord] = []
        metrics.count(metrics.IDENTITY_OUTCOMES, res.outcome)
        if res.dropped:
            metrics.count(metrics.IDENTITY_OUTCOMES, "limit_hit")
        if res.created:
            metrics.count(metrics.PROFILE_CHANGES, "created")
            k, v = records.identity_created(res.profile_id, ev.ts, ev.message_id)
            out.append(OutRecord(self.topics.identity_changes, k, v))
        for m in res.merges:
            metrics.PROFILE_CHANGES.labels("merged").inc()
            k, v = records.identity_merged(m, ev.message_id)
            out.append(OutRecord(self.topics.identity_changes, k, v))
            # The survivor's partition learns of the hand-off in-band, before the watermark
            # that follows this batch: it holds the survivor's events and timers until the
            # absorbed state arrives, so no decision is taken on half a person.
            out.append(
                envelope.to_profile(
                    self.topics.profiled,
                    m.survivor,
                    envelope.expect_record(m.survivor, m.absorbed, m.ts),
                    self.partitions,
                )
            )
            out.append(
                envelope.to_profile(
                    self.topics.profiled,
                    m.absorbed,
                    envelope.merge_record(m.absorbed, m.survivor, m.ts),
                    self.partitions,
                )
            )
        out.append(
            envelope.to_profile(
                self.topics.profiled,
                res.profile_id,
                envelope.event_record_raw(res.profile_id, p.raw, now_ms),
                self.partitions,
            )
        )
        return out

    # ------------------------------------------------------------------ Redis, isolated
    async def _dedupe(self, pending: Sequence[Pending]) -> list[bool | Failed]:
        items = [(p.ev.message_id, str(p.ev.source)) for p in pending]
        try:
            return list(await self.dedupe.check(items))
        except FatalError:
            raise
        except Exception as exc:  # not an outage (those are waited out inside): find the record
            log.error("dedupe failed on a batch (%s); checking its records one by one", type(exc).__name__)
        out: list[bool | Failed] = []
        for item in items:
            try:
                out.append((await self.dedupe.check([item]))[0])
            except FatalError:
                raise
            except Exception as exc:
                out.append(Failed(exc))
        return out

    async def _resolve_run(self, run: Sequence[Event]) -> list[Resolution | Failed]:
        reqs = [
            ResolveRequest(
                e.message_id,
                e.ts,
                e.channel,
                e.identifiers,
                e.traits,
                source=str(e.source),
                alias_of=_alias_of(e),
            )
            for e in run
        ]
        try:
            return list(await self.identity.resolve(reqs))
        except FatalError:
            raise
        except Exception as exc:  # not an outage: resolve one by one (results are remembered per
            # occurrence, so the events the failed call did resolve get the same answer again)
            log.error("identity failed on a batch (%s); resolving its events one by one", type(exc).__name__)
        out: list[Resolution | Failed] = []
        for r in reqs:
            try:
                out += await self.identity.resolve([r])
            except FatalError:
                raise
            except Exception as exc:
                out.append(Failed(exc))
        return out

    async def _erase(self, ev: Event) -> Erasure | Failed:
        try:
            erased: dict[str, list[str]] = {}
            for ident in ev.identifiers:  # every profile the requester's identifiers lead to
                pid = await self.identity.lookup(ident)
                if pid is not None and pid not in erased:
                    erased[pid] = await self.identity.forget(pid)
            return Erasure(erased)
        except FatalError:
            raise
        except Exception as exc:
            return Failed(exc)

    # ------------------------------------------------------------------ erasure requests
    async def _resolve(self, kept: Sequence[Pending]) -> list[Resolution | Erasure | Failed]:
        """Resolve in batch order. An erasure request splits the batch: the events before it are
        resolved first (and erased with the profile), the events after it start afresh, whatever
        the batch boundaries. Without erasures this is still one script call per batch."""
        done: list[Resolution | Erasure | Failed] = []
        run: list[Event] = []
        for p in [*kept, None]:
            ev = p.ev if p is not None else None
            if ev is not None and not is_erasure(ev):
                run.append(ev)
                continue
            if run:
                done += await self._resolve_run(run)
                run = []
            if ev is not None:
                done.append(await self._erase(ev))
        return done

    def _erasure_records(self, ev: Event, res: Erasure) -> list[OutRecord]:
        """``erased`` on the changes topic; an ``erase`` envelope to the partition of every erased
        profile (absorbed ones included), so each owner drops its own state and timers."""
        if not res.erased:
            log.info("erasure request %s matched no profile", ev.message_id)
        out: list[OutRecord] = []
        for pid, gone in res.erased.items():
            metrics.IDENTITY_OUTCOMES.labels("erased").inc()
            metrics.PROFILE_CHANGES.labels("erased").inc(len(gone))
            k, v = records.identity_erased(pid, gone, ev.ts, "request")
            out.append(OutRecord(self.topics.identity_changes, k, v))
            for g in gone:
                out.append(
                    envelope.to_profile(self.topics.profiled, g, envelope.erase_record(g), self.partitions)
                )
        return out


# interpreted (no compiler here): a faster __init__; compiled, it is left as written
fast_init(Pending)

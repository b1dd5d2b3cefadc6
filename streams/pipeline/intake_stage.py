"""Stage 1, on ``cx.events.raw``: validate, dedupe, resolve identity, re-key by profile.

One call per batch; one Redis script call for dedupe and one for identity per batch.
Never raises on input: a bad event becomes a dead letter, a bug of ours an ``internal``
dead letter (the event is kept for replay after the fix).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from streams import metrics
from streams.identity.base import ERASURE_EVENT, IdentityStore, Resolution, ResolveRequest
from streams.intake import DeadLetter, ErrorCode, Intake
from streams.intake.dedupe import DedupeStore
from streams.model import Event, Identifier, SourceRef
from streams.pipeline import envelope
from streams.pipeline.records import InRecord, OutRecord
from streams.sinks import records

log = logging.getLogger(__name__)

#: Identifier types hashed when a pepper is set (Redis then holds no raw emails or phones).
HASHED_TYPES = frozenset({"email", "phone"})


@dataclass(frozen=True, slots=True)
class IntakeTopics:
    deadletter: str
    profiled: str
    identity_changes: str


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure request erased: live profile id -> every profile id erased with it."""

    erased: dict[str, list[str]]


def is_erasure(ev: Event) -> bool:
    return ev.call == "track" and ev.name == ERASURE_EVENT


def pseudonymize(pepper: bytes, identifier: Identifier) -> Identifier:
    """Keyed SHA-256 of an email or phone: stable per pepper, not reversible without it."""
    if identifier.type not in HASHED_TYPES:
        return identifier
    digest = hmac.new(pepper, f"{identifier.type}:{identifier.value}".encode(), hashlib.sha256).hexdigest()
    return Identifier(identifier.type, "h:" + digest[:40])


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
        self.marks: dict[int, int] = {}  # source partition -> highest event time seen

    def _parse(self, rec: InRecord, now_ms: int) -> Event | DeadLetter:
        src = SourceRef(rec.topic, rec.partition, rec.offset)
        try:
            return self.intake.parse(rec.value, rec.key, src, now_ms, rec.timestamp)
        except Exception as exc:  # a bug of ours: keep the event, say so
            log.exception("intake failed on %s", src)
            return DeadLetter(
                ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", rec.key, rec.value or b"", src
            )

    def _private(self, ev: Event) -> Event:
        if self.pepper is None:
            return ev
        traits = {k: v for k, v in ev.traits.items() if k not in HASHED_TYPES}
        return dataclasses.replace(
            ev, identifiers=tuple(pseudonymize(self.pepper, i) for i in ev.identifiers), traits=traits
        )

    async def process(self, batch: Sequence[InRecord], now_ms: int) -> list[OutRecord]:
        out: list[OutRecord] = []
        events: list[Event] = []
        advanced: dict[int, int] = {}
        for rec in batch:
            parsed = self._parse(rec, now_ms)
            if isinstance(parsed, DeadLetter):
                metrics.DEADLETTERED.labels(parsed.code.value).inc()
                out.append(
                    OutRecord(self.topics.deadletter, parsed.key, parsed.value, None, parsed.headers())
                )
                continue
            metrics.EVENTS_IN.labels(metrics.channel_label(parsed.channel), parsed.call).inc()
            if parsed.ts > self.marks.get(rec.partition, -(2**62)):
                self.marks[rec.partition] = advanced[rec.partition] = parsed.ts
            events.append(parsed)

        fresh = await self.dedupe.check([(e.message_id, str(e.source)) for e in events])
        kept = [self._private(e) for e, ok in zip(events, fresh, strict=True) if ok]
        metrics.DUPLICATES.inc(len(events) - len(kept))

        resolutions = await self._resolve(kept)
        for ev, res in zip(kept, resolutions, strict=True):
            if isinstance(res, Erasure):
                out += self._erasure_records(ev, res)
                continue
            metrics.IDENTITY_OUTCOMES.labels(res.outcome).inc()
            if res.dropped:
                metrics.IDENTITY_OUTCOMES.labels("limit_hit").inc()
            if res.created:
                metrics.PROFILE_CHANGES.labels("created").inc()
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
                    envelope.event_record(res.profile_id, ev, now_ms),
                    self.partitions,
                )
            )
        # Watermark markers go after the batch's events: on every partition, a marker
        # only follows the events it vouches for.
        for src, wm in sorted(advanced.items()):
            value = envelope.watermark_record(src, wm)
            for p in range(self.partitions):
                out.append(OutRecord(self.topics.profiled, None, value, p))
        return out

    # ------------------------------------------------------------------ erasure requests
    async def _resolve(self, kept: Sequence[Event]) -> list[Resolution | Erasure]:
        """Resolve in batch order. An erasure request splits the batch: the events before it are
        resolved first (and erased with the profile), the events after it start afresh, whatever
        the batch boundaries. Without erasures this is still one script call per batch."""
        done: list[Resolution | Erasure] = []
        run: list[Event] = []
        for ev in [*kept, None]:
            if ev is not None and not is_erasure(ev):
                run.append(ev)
                continue
            if run:
                done += await self.identity.resolve(
                    [ResolveRequest(e.message_id, e.ts, e.channel, e.identifiers, e.traits) for e in run]
                )
                run = []
            if ev is not None:
                erased: dict[str, list[str]] = {}
                for ident in ev.identifiers:  # every profile the requester's identifiers lead to
                    pid = await self.identity.lookup(ident)
                    if pid is not None and pid not in erased:
                        erased[pid] = await self.identity.forget(pid)
                done.append(Erasure(erased))
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

"""Intake: raw Segment bytes in, normalized events or dead letters out.

``normalize`` (validation and normalization, :meth:`Intake.parse`), ``consent`` (the three consent
shapes), ``errors`` (the closed set of dead-letter codes), ``dedupe`` (``messageId`` within a TTL).
"""

from streams.intake.dedupe import DedupeStore, MemoryDedupeStore, RedisDedupeStore
from streams.intake.errors import DeadLetter, ErrorCode
from streams.intake.normalize import (
    CONSENT_EVENT,
    Intake,
    IntakeConfig,
    json_too_deep,
    ms_to_iso,
    parse_time_ms,
)

__all__ = [
    "CONSENT_EVENT",
    "DeadLetter",
    "DedupeStore",
    "ErrorCode",
    "Intake",
    "IntakeConfig",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "json_too_deep",
    "ms_to_iso",
    "parse_time_ms",
]

"""Intake: raw Segment bytes in, normalized events or dead letters out."""

from streams.intake.errors import DeadLetter, ErrorCode
from streams.intake.normalize import CONSENT_EVENT, Intake, IntakeConfig, ms_to_iso, parse_time_ms

__all__ = ["CONSENT_EVENT", "DeadLetter", "ErrorCode", "Intake", "IntakeConfig", "ms_to_iso", "parse_time_ms"]

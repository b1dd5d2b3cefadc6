"""Why an event was dead-lettered: one code per cause.

The code goes into the ``cx-error-code`` header and the ``cxstream_deadletter_total``
metric label, so it is a closed set: adding one is a contract change (schemas/asyncapi).
Every code but ``processing_error`` names something wrong with the message; ``processing_error``
is a failure of ours on a record (``stage`` says where, ``rule`` which rule, ``exception`` the
exception class), and the record is kept so it can be replayed after the fix.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from enum import StrEnum

from streams.model import SourceRef


class ErrorCode(StrEnum):
    TOO_LARGE = "too_large"  # raw bytes over max_event_bytes
    EMPTY = "empty"  # zero bytes
    NOT_JSON = "not_json"  # not UTF-8 JSON
    NOT_OBJECT = "not_object"  # JSON, but not an object
    UNKNOWN_TYPE = "unknown_type"  # "type" missing or not one of the six Segment calls
    MISSING_IDENTITY = "missing_identity"  # no usable userId or anonymousId
    MISSING_FIELD = "missing_field"  # a field the call needs is absent (track.event, alias.previousId)
    WRONG_TYPE = "wrong_type"  # a known field has the wrong JSON type
    BAD_TIMESTAMP = "bad_timestamp"  # a timestamp field is not ISO 8601
    TOO_MANY_PROPERTIES = "too_many_properties"  # properties + traits over max_properties
    TOO_DEEP = "too_deep"  # JSON objects/arrays nested deeper than max_depth
    TOO_MANY_IDENTIFIERS = "too_many_identifiers"  # usable identifiers over max_identifiers_per_event
    PROCESSING_ERROR = "processing_error"  # our code failed on the record; kept for a replay after the fix


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message: the original bytes, untouched, and why.

    ``stage`` (e.g. ``intake.parse``, ``decide``), ``rule`` (the rule that failed) and ``exception``
    (the exception's class name only: its message can carry personal data) say where a
    ``processing_error`` happened; each adds its header only when set.
    """

    code: ErrorCode
    detail: str
    key: bytes | None
    value: bytes
    source: SourceRef
    _: KW_ONLY
    stage: str | None = None
    rule: str | None = None
    exception: str | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("cx-error-code", self.code.value.encode()),
            ("cx-error-detail", self.detail[:1000].encode("utf-8", "replace")),
            ("cx-source-topic", self.source.topic.encode()),
            ("cx-source-partition", str(self.source.partition).encode()),
            ("cx-source-offset", str(self.source.offset).encode()),
        ]
        for name, v in (("stage", self.stage), ("rule", self.rule), ("exception", self.exception)):
            if v is not None:
                out.append((f"cx-error-{name}", v[:200].encode("utf-8", "replace")))
        return out

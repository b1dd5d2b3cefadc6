"""Raw bytes -> :class:`~streams.model.Event` or :class:`~streams.intake.errors.DeadLetter`.

Pure functions: no Kafka, no Redis. :meth:`Intake.parse` is total: whatever the bytes, it
returns exactly one of the two, and a bug of ours becomes a ``processing_error`` dead letter
(stage ``intake.parse``).

The checks, in order (the first failing one names the dead letter's code):

1. size: ``empty``, ``too_large`` (``max_event_bytes``, 32 KB by default)
2. syntax: ``not_json`` (not UTF-8 JSON); ``too_deep`` (objects and arrays nested deeper than
   ``max_depth``, 32 by default: checked right after parsing, before anything else walks the
   document; orjson reads 1,024 levels but writes only 255, so a deeper event would crash
   every ``dumps`` downstream); ``not_object``
3. call: ``unknown_type`` (not one of the six Segment calls)
4. field types: ``wrong_type`` (a Segment field, or one of our ``context`` extensions:
   ``channel``, ``externalIds``, ``traits``, ``device``, ``consent``, ``consentManagement``)
5. size of the payload: ``too_many_properties`` (``properties`` + ``traits`` keys)
6. per call: ``missing_field`` (track ``event``; alias ``userId`` and ``previousId``; the
   consent event's preferences)
7. time: ``bad_timestamp`` (not ISO 8601, or before 1970)
8. identity: ``too_many_identifiers`` (more usable identifiers than ``max_identifiers_per_event``,
   50 by default, after normalization: userId, anonymousId, emails, phones, device id, each
   valid ``externalIds`` entry); ``missing_identity`` (no usable ``userId`` / ``anonymousId``:
   absent, or blocked)
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
import phonenumbers
from pydantic import ValidationError

from streams import metrics
from streams.constants import BLOCKED_IDENTIFIER_VALUES
from streams.identity.pii import canonical_email
from streams.intake import consent as consent_
from streams.intake.consent import CONSENT_EVENT, PURPOSE_ALIASES, purpose_of, snake
from streams.intake.errors import DeadLetter, ErrorCode
from streams.intake.segment import CALLS, SegmentMessage
from streams.model import Event, Identifier, JSONDict, SourceRef

log = logging.getLogger(__name__)

__all__ = [
    "CONSENT_EVENT",
    "MAX_CHANNEL_LEN",
    "PURPOSE_ALIASES",
    "Intake",
    "IntakeConfig",
    "json_too_deep",
    "ms_to_iso",
    "parse_time_ms",
    "purpose_of",
]

#: Identifier types that may label the blocked-identifier metric; any other (an
#: ``externalIds[]`` type the sender chose) is counted as ``external``, so the label set stays closed.
_METRIC_TYPES = frozenset({"user_id", "anonymous_id", "email", "phone", "device_id"})
#: Longest channel name kept: channel names become metric labels and policy keys.
MAX_CHANNEL_LEN = 64
#: Latest event time we can print as RFC 3339 (9999-12-31T23:59:59.999Z).
_MAX_MS = 253_402_300_799_999

#: Segment's own ``channel`` / library names -> our channel names, when ``context.channel`` is absent.
_CHANNEL_HINTS = {"browser": "web", "client": "web", "mobile": "app", "server": "server"}
_LIBRARY_HINTS = (("analytics.js", "web"), ("analytics-ios", "app"), ("analytics-android", "app"))
_ZEROS_RE = re.compile(r"^[0\-\s.:]+$")


def parse_time_ms(s: str) -> int:
    """ISO 8601 (with ``Z`` or an offset; naive means UTC) -> epoch ms. ``ValueError`` if not."""
    try:
        dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    except (OverflowError, OSError) as exc:  # a valid-looking date outside what datetime can hold
        raise ValueError(str(exc)) from None


#: days since the epoch -> their date in ISO form, for :func:`ms_to_iso` (a worker's output
#: times fall on a few days; bounded all the same)
_ISO_DAYS: dict[int, str] = {}
_ISO_DAYS_MAX = 4096
#: the proleptic Gregorian ordinal of 1970-01-01
_EPOCH_ORDINAL = 719_163
#: zero-padded numbers, looked up (format specs are the slow part of an f-string, compiled too)
_TWO = [f"{n:02d}" for n in range(100)]
_THREE = [f"{n:03d}" for n in range(1000)]


def ms_to_iso(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC with millisecond precision (``2026-01-02T03:04:05.678Z``).

    Integer arithmetic: exact at every ms of years 1-9999 (the float division of
    ``datetime.fromtimestamp`` was off by one ms in places past the year 8000), and ~1 µs
    against ~1.7. Out of that range it raises, as ``datetime`` does."""
    days, rem = divmod(ms, 86_400_000)
    day = _ISO_DAYS.get(days)
    if day is None:
        day = date.fromordinal(_EPOCH_ORDINAL + days).isoformat()  # ValueError out of range
        if len(_ISO_DAYS) >= _ISO_DAYS_MAX:
            _ISO_DAYS.clear()
        _ISO_DAYS[days] = day
    secs, milli = divmod(rem, 1000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    return day + "T" + _TWO[hours] + ":" + _TWO[mins] + ":" + _TWO[secs] + "." + _THREE[milli] + "Z"


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    max_event_bytes: int = 32 * 1024
    max_properties: int = 300
    future_tolerance_ms: int = 24 * 3600 * 1000
    phone_default_region: str = "US"
    #: Deepest nesting of objects and arrays accepted (the message itself is level 1).
    max_depth: int = 32
    #: Most usable identifiers in one event, after normalization.
    max_identifiers_per_event: int = 50
    #: Added to :data:`~streams.constants.BLOCKED_IDENTIFIER_VALUES` (compared case-insensitively).
    blocked_values: frozenset[str] = BLOCKED_IDENTIFIER_VALUES


def json_too_deep(doc: Any, limit: int) -> bool:
    """Do objects and arrays in ``doc`` nest deeper than ``limit`` levels (``doc`` itself is level 1)?

    Iterative (no recursion, whatever the depth); it descends only into objects and arrays (as
    orjson builds them: plain ``dict`` and ``list``), never past ``limit``, and stops at the first
    container too deep. Measured (timeit, CPython 3.11, 2 shared cores): ~5 us for a typical
    1.3 KB track event (15 containers, ~60 values; ``orjson.loads`` of it ~4 us, the whole
    ``Intake.parse`` ~32 us), ~5 us for a 1,000-deep one (it stops at level ``limit + 1``).
    """
    d, lst = dict, list
    if type(doc) is not d and type(doc) is not lst:
        return False
    if limit < 1:
        return True
    stack: list[tuple[Any, int]] = [(doc, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        for child in node.values() if type(node) is d else node:
            t = type(child)
            if t is d or t is lst:
                if depth >= limit:
                    return True
                push((child, depth + 1))
    return False


#: SegmentMessage's fields (by alias) -> the rule a wrong value breaks, for ``wrong_type`` details.
_FIELD_RULES = {
    **{
        f: f"{f} must be a string or an integer"
        for f in ("messageId", "anonymousId", "userId", "previousId", "groupId")
    },
    **{f: f"{f} must be a string" for f in ("timestamp", "originalTimestamp", "sentAt", "receivedAt")},
    **{f: f"{f} must be a string" for f in ("event", "name", "channel")},
    **{f: f"{f} must be an object" for f in ("context", "properties", "traits", "integrations")},
}


def _json_kind(doc: Any) -> str:
    """The JSON kind of a parsed document (never its value)."""
    if doc is None:
        return "null"
    if isinstance(doc, bool):
        return "a boolean"
    if isinstance(doc, (int, float)):
        return "a number"
    return "a string" if isinstance(doc, str) else "an array"


def _context_error(ctx: JSONDict) -> str | None:
    """Type errors in the ``context`` fields we read (Segment's own, and our extensions)."""
    ch = ctx.get("channel")
    if ch is not None and not isinstance(ch, str):
        return f"context.channel must be a string, got {type(ch).__name__}"
    for name in ("traits", "device", "location"):
        v = ctx.get(name)
        if v is not None and not isinstance(v, dict):
            return f"context.{name} must be an object, got {type(v).__name__}"
    ext = ctx.get("externalIds")
    if ext is not None:
        if not isinstance(ext, list):
            return f"context.externalIds must be a list of {{id, type}}, got {type(ext).__name__}"
        for n, item in enumerate(ext):
            if not isinstance(item, dict):
                return f"context.externalIds[{n}] must be an object {{id, type}}"
            t, i = item.get("type"), item.get("id")
            if not isinstance(t, str) or not snake(t):
                return f"context.externalIds[{n}].type must be a non-empty name such as 'crm_id'"
            if isinstance(i, bool) or not isinstance(i, (str, int)):
                return f"context.externalIds[{n}].id must be a string or an integer"
    return None


class Intake:
    """Validates and normalizes raw Segment messages."""

    def __init__(self, config: IntakeConfig | None = None) -> None:
        self.config = config or IntakeConfig()
        self._blocked = {v.strip().lower() for v in self.config.blocked_values} | BLOCKED_IDENTIFIER_VALUES

    # ---------------------------------------------------------------- public
    def parse(
        self,
        value: bytes | None,
        key: bytes | None,
        source: SourceRef,
        now_ms: int,
        record_ts: int | None = None,
    ) -> Event | DeadLetter:
        """Return the normalized event, or a dead letter that keeps ``value`` untouched. Never raises."""
        raw = value or b""
        try:
            return self._parse(raw, key, source, now_ms, record_ts)
        except Exception as exc:  # a bug of ours: keep the event for a replay after the fix
            name = type(exc).__name__  # never the message: it can carry personal data
            log.error("intake.parse failed on %s (%s); dead-lettered", source, name)
            return DeadLetter(
                ErrorCode.PROCESSING_ERROR,
                f"intake.parse failed: {name}",
                key,
                raw,
                source,
                stage="intake.parse",
                exception=name,
            )

    def is_blocked(self, value: str) -> bool:
        """Is ``value`` never to be used as an identifier (``null``, ``-1``, all zeros, configured)?"""
        v = value.strip().lower()
        return v in self._blocked or bool(_ZEROS_RE.match(v))

    def normalize_identifier(self, type_: str, value: str) -> str | None:
        """The canonical form of an identifier value, or ``None`` when it is unusable."""
        v = value.strip()
        if not v:
            return None
        if type_ == "email":
            if "%" in v or v[:7].lower() == "mailto:":  # ann.lee%40example.com, mailto:ann.lee@...
                return canonical_email(v)
            v = v.lower()
            local, at, domain = v.rpartition("@")
            return v if at and local and "." in domain.strip(".") and " " not in v else None
        if type_ == "phone":
            try:
                num = phonenumbers.parse(v, self.config.phone_default_region)
            except phonenumbers.NumberParseException:
                return None
            if not phonenumbers.is_possible_number(num):
                return None
            return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
        return v

    # ---------------------------------------------------------------- steps
    def _parse(
        self, raw: bytes, key: bytes | None, source: SourceRef, now_ms: int, record_ts: int | None
    ) -> Event | DeadLetter:
        def dead(code: ErrorCode, detail: str) -> DeadLetter:
            return DeadLetter(code, detail, key, raw, source)

        if not raw:
            return dead(ErrorCode.EMPTY, "message has no bytes")
        if len(raw) > self.config.max_event_bytes:
            return dead(
                ErrorCode.TOO_LARGE,
                f"message is larger than the limit of {self.config.max_event_bytes} bytes",
            )
        limit = self.config.max_depth
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "depth limit" in str(exc) or "ecursion limit" in str(exc):  # orjson reads 1,024 levels
                return dead(ErrorCode.TOO_DEEP, f"message is nested over 1024 levels, the limit is {limit}")
            # never orjson's text: a fixed sentence and the position, no input bytes
            return dead(ErrorCode.NOT_JSON, f"message must be UTF-8 JSON (invalid at byte {exc.pos})")
        # Right after parsing, before pydantic or anything else walks the document. For a message
        # under 4 KB, counting '{' and '[' bytes first (~1.1 us at 1.3 KB, vs ~5 us for the walk)
        # skips the walk when there are too few of them to nest that deep.
        if (len(raw) > 4096 or raw.count(b"{") + raw.count(b"[") > limit) and json_too_deep(doc, limit):
            return dead(
                ErrorCode.TOO_DEEP, f"message has objects and arrays nested deeper than {limit} levels"
            )
        if not isinstance(doc, dict):
            return dead(ErrorCode.NOT_OBJECT, f"message must be a JSON object, not {_json_kind(doc)}")
        call = doc.get("type")
        if not isinstance(call, str) or call not in CALLS:
            return dead(
                ErrorCode.UNKNOWN_TYPE,
                "type must be one of identify, track, page, screen, group, alias",
            )
        try:
            msg = SegmentMessage.model_validate(doc)
        except ValidationError as exc:
            # the field (one of SegmentMessage's, by its alias) and the rule, never pydantic's text
            # (its messages and locations can quote the input)
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "message"
            return dead(ErrorCode.WRONG_TYPE, _FIELD_RULES.get(field, f"{field} has the wrong type"))
        return self._normalize(msg, raw, dead, source, now_ms, record_ts)

    def _normalize(
        self,
        msg: SegmentMessage,
        raw: bytes,
        dead: Callable[[ErrorCode, str], DeadLetter],
        source: SourceRef,
        now_ms: int,
        record_ts: int | None,
    ) -> Event | DeadLetter:
        ctx = msg.context or {}
        props = msg.properties or {}
        is_consent_event = msg.type == "track" and (msg.event or "").strip() == CONSENT_EVENT
        err = _context_error(ctx) or consent_.shape_error(ctx, props, is_consent_event)
        if err:
            return dead(ErrorCode.WRONG_TYPE, err)
        traits = dict(msg.traits or {})
        ctx_traits = ctx.get("traits")
        if isinstance(ctx_traits, dict):
            traits = {**ctx_traits, **traits}
        count = len(props) + len(traits)
        if count > self.config.max_properties:
            return dead(
                ErrorCode.TOO_MANY_PROPERTIES,
                f"properties and traits together must have at most {self.config.max_properties} keys",
            )
        if msg.type == "track" and not (msg.event and msg.event.strip()):
            return dead(ErrorCode.MISSING_FIELD, "track needs a non-empty 'event'")
        if msg.type == "alias" and not (
            msg.user_id and msg.user_id.strip() and msg.previous_id and msg.previous_id.strip()
        ):
            return dead(ErrorCode.MISSING_FIELD, "alias needs both 'userId' and 'previousId'")
        if is_consent_event and not consent_.has_preferences(ctx, props):
            return dead(
                ErrorCode.MISSING_FIELD,
                f"'{CONSENT_EVENT}' needs context.consent.categoryPreferences (or RudderStack's "
                "context.consentManagement)",
            )

        try:
            ts, received = self._event_time(msg, now_ms, record_ts)
        except ValueError as exc:
            return dead(ErrorCode.BAD_TIMESTAMP, str(exc))

        ids, has_identity = self._identifiers(msg, ctx, traits)
        if len(ids) > self.config.max_identifiers_per_event:
            return dead(
                ErrorCode.TOO_MANY_IDENTIFIERS,
                f"more than {self.config.max_identifiers_per_event} usable identifiers (userId, anonymousId, "
                "emails, phones, device id, externalIds)",
            )
        if not has_identity:
            return dead(
                ErrorCode.MISSING_IDENTITY,
                "needs a usable userId or anonymousId (missing, or a blocked value such as 'null')",
            )
        name = msg.event if msg.type == "track" else msg.name
        message_id = msg.message_id if msg.message_id and msg.message_id.strip() else None
        return Event(
            message_id=message_id or "sha256:" + hashlib.sha256(raw).hexdigest(),
            call=msg.type,
            ts=ts,
            channel=self._channel(msg, ctx),
            identifiers=ids,
            name=name.strip() if name else None,
            received_ts=received,
            properties=props,
            traits=traits,
            consent=tuple(consent_.signals(ctx, props, ts, is_consent_event)),
            country=_country(ctx, traits),
            previous_id=msg.previous_id,
            source=source,
        )

    def _event_time(self, msg: SegmentMessage, now_ms: int, record_ts: int | None) -> tuple[int, int]:
        """``timestamp``; else Segment's skew correction ``receivedAt - (sentAt - originalTimestamp)``;
        else ``originalTimestamp``; else ``receivedAt``; else the Kafka record time; else now."""

        def t(field: str, v: str | None) -> int | None:
            if v is None:
                return None
            try:
                ms = parse_time_ms(v)
            except ValueError:
                raise ValueError(f"{field} must be an ISO 8601 time") from None
            if not 0 <= ms <= _MAX_MS:
                raise ValueError(f"{field} must lie within 1970-01-01 .. 9999-12-31")
            return ms

        timestamp = t("timestamp", msg.timestamp)
        original = t("originalTimestamp", msg.original_timestamp)
        sent = t("sentAt", msg.sent_at)
        received = t("receivedAt", msg.received_at)
        kafka_ts = record_ts if record_ts is not None and record_ts > 0 else None
        if timestamp is not None:
            ts = timestamp
        elif original is not None and sent is not None and received is not None:
            ts = received - (sent - original)  # Segment's clock-skew correction
            if ts < 0:
                raise ValueError(
                    "originalTimestamp, sentAt and receivedAt must give an event time after 1970 "
                    "(receivedAt - (sentAt - originalTimestamp))"
                )
        elif original is not None:
            ts = original
        elif received is not None:
            ts = received
        else:
            ts = kafka_ts if kafka_ts is not None else now_ms
        if ts > now_ms + self.config.future_tolerance_ms:
            metrics.FUTURE_CLAMPED.inc()
            ts = now_ms
        return ts, received or kafka_ts or now_ms

    def _identifiers(
        self, msg: SegmentMessage, ctx: JSONDict, traits: JSONDict
    ) -> tuple[tuple[Identifier, ...], bool]:
        """Every usable identifier, and whether a usable ``userId`` / ``anonymousId`` is among them.

        Stops one past ``max_identifiers_per_event`` (the caller then dead-letters the event), so
        1,000 ``externalIds`` cost no more than the limit's worth of normalization."""
        out: dict[tuple[str, str], None] = {}
        cap = self.config.max_identifiers_per_event

        def add(type_: str, value: Any) -> bool:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                return False
            text = str(value)
            norm = self.normalize_identifier(type_, text)
            if norm is None:
                return False
            if self.is_blocked(text) or self.is_blocked(norm):
                metrics.BLOCKED_IDENTIFIERS.labels(type_ if type_ in _METRIC_TYPES else "external").inc()
                return False
            out[(type_, norm)] = None
            return True

        has_identity = False
        if msg.user_id is not None:
            has_identity |= add("user_id", msg.user_id)
        if msg.anonymous_id is not None:
            has_identity |= add("anonymous_id", msg.anonymous_id)
        if msg.type == "alias" and msg.previous_id is not None:
            # Segment's alias links an earlier id (usually the anonymousId) to the userId.
            has_identity |= add("anonymous_id", msg.previous_id)
        add("email", traits.get("email"))
        add("phone", traits.get("phone"))
        device = ctx.get("device")
        if isinstance(device, dict):
            add("device_id", device.get("id"))
        for item in ctx.get("externalIds") or ():
            if len(out) > cap:
                break
            add(snake(item["type"]), item["id"])  # shape checked in _context_error
        return tuple(Identifier(t, v) for t, v in out), has_identity

    def _channel(self, msg: SegmentMessage, ctx: JSONDict) -> str:
        ch = ctx.get("channel")
        if isinstance(ch, str) and snake(ch):
            return snake(ch)[:MAX_CHANNEL_LEN]
        if msg.channel and msg.channel.lower() in _CHANNEL_HINTS:
            return _CHANNEL_HINTS[msg.channel.lower()]
        lib = ctx.get("library")
        if isinstance(lib, dict) and isinstance(lib.get("name"), str):
            for hint, channel in _LIBRARY_HINTS:
                if lib["name"].startswith(hint):
                    return channel
        return "unknown"


def _country(ctx: JSONDict, traits: JSONDict) -> str | None:
    for holder in (ctx.get("location"), traits.get("address")):
        if isinstance(holder, dict):
            c = holder.get("country")
            if isinstance(c, str) and c.strip():
                return c.strip().upper()
    return None

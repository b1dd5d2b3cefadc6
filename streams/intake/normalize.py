"""Raw bytes -> :class:`~streams.model.Event` or :class:`~streams.intake.errors.DeadLetter`.

Pure functions: no Kafka, no Redis. :meth:`Intake.parse` never raises on input; a bug of
ours is caught by the caller and dead-lettered as ``internal``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import phonenumbers
from pydantic import ValidationError

from streams import metrics
from streams.constants import BLOCKED_IDENTIFIER_VALUES
from streams.intake.errors import DeadLetter, ErrorCode
from streams.intake.segment import SegmentMessage
from streams.model import ConsentSignal, Event, Identifier, JSONDict, SourceRef

CONSENT_EVENT = "Segment Consent Preference Updated"

#: Consent category names as tools send them -> our purposes. Unknown ones are kept, lower-cased.
PURPOSE_ALIASES: dict[str, str] = {
    "advertising": "advertising",
    "ads": "advertising",
    "targeting": "advertising",
    "marketing": "marketing",
    "email": "marketing",
    "email_marketing": "marketing",
    "personalization": "personalization",
    "personalisation": "personalization",
    "functional": "personalization",
    "analytics": "analytics",
    "performance": "analytics",
    "statistics": "analytics",
}

#: Segment's own ``channel`` / library names -> our channel names, when ``context.channel`` is absent.
_CHANNEL_HINTS = {"browser": "web", "client": "web", "mobile": "app", "server": "server"}
_LIBRARY_HINTS = (("analytics.js", "web"), ("analytics-ios", "app"), ("analytics-android", "app"))
_TYPE_RE = re.compile(r"[^a-z0-9]+")
_ZEROS_RE = re.compile(r"^[0\-\s.:]+$")


def _snake(s: str) -> str:
    return _TYPE_RE.sub("_", s.strip().lower()).strip("_")


def parse_time_ms(s: str) -> int:
    """ISO 8601 (with ``Z`` or an offset; naive means UTC) -> epoch ms. ``ValueError`` if not."""
    dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def ms_to_iso(ms: int) -> str:
    """Epoch ms -> RFC 3339 UTC with millisecond precision (``2026-01-02T03:04:05.678Z``)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    max_event_bytes: int = 32 * 1024
    max_properties: int = 300
    future_tolerance_ms: int = 24 * 3600 * 1000
    phone_default_region: str = "US"
    blocked_values: frozenset[str] = BLOCKED_IDENTIFIER_VALUES


class Intake:
    """Validates and normalizes raw Segment messages."""

    def __init__(self, config: IntakeConfig | None = None) -> None:
        self.config = config or IntakeConfig()
        self._blocked = {v.lower() for v in self.config.blocked_values} | BLOCKED_IDENTIFIER_VALUES

    # ---------------------------------------------------------------- public
    def parse(
        self,
        value: bytes | None,
        key: bytes | None,
        source: SourceRef,
        now_ms: int,
        record_ts: int | None = None,
    ) -> Event | DeadLetter:
        """Return the normalized event, or a dead letter that keeps ``value`` untouched."""
        raw = value or b""

        def dead(code: ErrorCode, detail: str) -> DeadLetter:
            return DeadLetter(code, detail, key, raw, source)

        if not raw:
            return dead(ErrorCode.EMPTY, "message has no bytes")
        if len(raw) > self.config.max_event_bytes:
            return dead(ErrorCode.TOO_LARGE, f"{len(raw)} bytes, the limit is {self.config.max_event_bytes}")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return dead(ErrorCode.NOT_JSON, f"not UTF-8 JSON: {exc}")
        if not isinstance(doc, dict):
            return dead(ErrorCode.NOT_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
        call = doc.get("type")
        if call not in ("identify", "track", "page", "screen", "group", "alias"):
            return dead(
                ErrorCode.UNKNOWN_TYPE,
                f"type is {call!r}, expected one of identify, track, page, screen, group, alias",
            )
        try:
            msg = SegmentMessage.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            return dead(ErrorCode.WRONG_TYPE, f"{loc}: {err['msg']}")
        return self._normalize(msg, raw, dead, source, now_ms, record_ts)

    # ---------------------------------------------------------------- steps
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
        traits = dict(msg.traits or {})
        ctx_traits = ctx.get("traits")
        if isinstance(ctx_traits, dict):
            traits = {**ctx_traits, **traits}
        props = msg.properties or {}
        count = len(props) + len(traits)
        if count > self.config.max_properties:
            return dead(
                ErrorCode.TOO_MANY_PROPERTIES,
                f"{count} properties and traits, the limit is {self.config.max_properties}",
            )
        if msg.type == "track" and not (msg.event and msg.event.strip()):
            return dead(ErrorCode.MISSING_FIELD, "track needs a non-empty 'event'")
        if msg.type == "alias" and not (msg.user_id and msg.previous_id):
            return dead(ErrorCode.MISSING_FIELD, "alias needs both 'userId' and 'previousId'")

        try:
            ts, received = self._event_time(msg, now_ms, record_ts)
        except ValueError as exc:
            return dead(ErrorCode.BAD_TIMESTAMP, str(exc))

        ids = self._identifiers(msg, ctx, traits)
        if not any(i.type in ("user_id", "anonymous_id") for i in ids):
            return dead(
                ErrorCode.MISSING_IDENTITY,
                "needs a usable userId or anonymousId (missing, or a blocked value such as 'null')",
            )
        channel = self._channel(msg, ctx)
        name = msg.event if msg.type == "track" else msg.name
        consent = tuple(self._consent(ctx, ts))
        message_id = msg.message_id or "sha256:" + hashlib.sha256(raw).hexdigest()
        return Event(
            message_id=message_id,
            call=msg.type,
            ts=ts,
            channel=channel,
            identifiers=ids,
            name=name.strip() if name else None,
            received_ts=received,
            properties=props,
            traits=traits,
            consent=consent,
            country=_country(ctx, traits),
            previous_id=msg.previous_id,
            source=source,
        )

    def _event_time(self, msg: SegmentMessage, now_ms: int, record_ts: int | None) -> tuple[int, int]:
        def t(field: str, v: str | None) -> int | None:
            if v is None:
                return None
            try:
                return parse_time_ms(v)
            except ValueError:
                raise ValueError(f"{field}={v!r} is not an ISO 8601 time") from None

        timestamp = t("timestamp", msg.timestamp)
        original = t("originalTimestamp", msg.original_timestamp)
        sent = t("sentAt", msg.sent_at)
        received = t("receivedAt", msg.received_at)
        if timestamp is not None:
            ts = timestamp
        elif original is not None and sent is not None and received is not None:
            ts = received - (sent - original)  # Segment's clock-skew correction
        elif original is not None:
            ts = original
        elif received is not None:
            ts = received
        else:
            ts = record_ts if record_ts else now_ms
        if ts > now_ms + self.config.future_tolerance_ms:
            metrics.FUTURE_CLAMPED.inc()
            ts = now_ms
        return ts, received or record_ts or now_ms

    def _usable(self, type_: str, value: str) -> bool:
        v = value.strip().lower()
        if v in self._blocked or _ZEROS_RE.match(v):
            metrics.BLOCKED_IDENTIFIERS.labels(type_).inc()
            return False
        return True

    def _identifiers(self, msg: SegmentMessage, ctx: JSONDict, traits: JSONDict) -> tuple[Identifier, ...]:
        out: dict[tuple[str, str], None] = {}

        def add(type_: str, value: Any) -> None:
            if not isinstance(value, str | int) or isinstance(value, bool):
                return
            norm = self.normalize_identifier(type_, str(value))
            if norm is not None and self._usable(type_, norm):
                out[(type_, norm)] = None

        if msg.user_id is not None:
            add("user_id", msg.user_id)
        if msg.anonymous_id is not None:
            add("anonymous_id", msg.anonymous_id)
        if msg.type == "alias" and msg.previous_id is not None:
            # Segment's alias links an earlier id (usually the anonymousId) to the userId.
            add("anonymous_id", msg.previous_id)
        add("email", traits.get("email"))
        add("phone", traits.get("phone"))
        device = ctx.get("device")
        if isinstance(device, dict):
            add("device_id", device.get("id"))
        ext = ctx.get("externalIds")
        if isinstance(ext, list):
            for item in ext:
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    add(_snake(item["type"]), item.get("id"))
        return tuple(Identifier(t, v) for t, v in out)

    def normalize_identifier(self, type_: str, value: str) -> str | None:
        """The canonical form of an identifier value, or ``None`` when it is unusable."""
        v = value.strip()
        if not v:
            return None
        if type_ == "email":
            v = v.lower()
            local, at, domain = v.rpartition("@")
            return v if at and local and "." in domain else None
        if type_ == "phone":
            try:
                num = phonenumbers.parse(v, self.config.phone_default_region)
            except phonenumbers.NumberParseException:
                return None
            if not phonenumbers.is_possible_number(num):
                return None
            return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
        return v

    def _channel(self, msg: SegmentMessage, ctx: JSONDict) -> str:
        ch = ctx.get("channel")
        if isinstance(ch, str) and ch.strip():
            return _snake(ch)
        if msg.channel and msg.channel.lower() in _CHANNEL_HINTS:
            return _CHANNEL_HINTS[msg.channel.lower()]
        lib = ctx.get("library")
        if isinstance(lib, dict) and isinstance(lib.get("name"), str):
            for hint, channel in _LIBRARY_HINTS:
                if lib["name"].startswith(hint):
                    return channel
        return "unknown"

    def _consent(self, ctx: JSONDict, ts: int) -> Iterable[ConsentSignal]:
        consent = ctx.get("consent")
        if isinstance(consent, dict):
            prefs = consent.get("categoryPreferences")
            if isinstance(prefs, dict):
                for cat, granted in prefs.items():
                    if isinstance(granted, bool):
                        yield ConsentSignal(purpose_of(cat), granted, ts, "segment")
        cm = ctx.get("consentManagement")
        if isinstance(cm, dict):
            for field, granted in (("allowedConsentIds", True), ("deniedConsentIds", False)):
                ids = cm.get(field)
                if isinstance(ids, list):
                    for cat in ids:
                        if isinstance(cat, str | int) and not isinstance(cat, bool):
                            yield ConsentSignal(purpose_of(str(cat)), granted, ts, "rudderstack")


def purpose_of(category: str) -> str:
    """A consent category as a tool names it -> our purpose name."""
    key = _snake(category)
    return PURPOSE_ALIASES.get(key, key)


def _country(ctx: JSONDict, traits: JSONDict) -> str | None:
    for holder in (ctx.get("location"), traits.get("address")):
        if isinstance(holder, dict):
            c = holder.get("country")
            if isinstance(c, str) and c.strip():
                return c.strip().upper()
    return None

"""Structured JSON logs: one JSON object per line, for us and for faust/aiokafka alike.

Our modules keep using stdlib ``logging.getLogger(__name__)``; every record, ours or a
library's, goes through structlog's :class:`~structlog.stdlib.ProcessorFormatter`, which adds
the context bound with :func:`bind_batch` (``stage``, ``topic``, ``partition``, ``offset``
of the batch being processed), the level, the logger and an ISO time, and renders JSON.

No raw personal data: the code logs ids and offsets, never event bodies, and aiokafka (whose
debug lines carry record values) is kept at info whatever the level. As a second line of
defence, :func:`redact` masks anything shaped like an email address or a phone number in
every string of the record (the message, its arguments, an exception's text) before it is
written: a library's error message that quotes an input value cannot leak it.
"""

from __future__ import annotations

import logging
import logging.config
import re
from collections.abc import MutableMapping, Sequence
from typing import Any

import orjson
import structlog
from phonenumbers import Leniency, PhoneNumberMatcher

#: ``name@domain.tld``; deliberately loose (a false positive costs a masked word). Unicode
#: letters (IDN domains and local parts: ``ann.lee@exämple.com``) and a URL-encoded ``@``
#: (``ann.lee%40example.com``, also double-encoded ``%2540``) count.
EMAIL_RE = re.compile(r"[\w.%+'-]+(?:@|%(?:25)*40)[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
#: E.164 (``+12065550127``) and the usual written forms (``(206) 555-0127``, ``206.555.0127``,
#: ``+44 20 7946 0958``): a ``+`` or a parenthesised area code, or 3-3-4 digits with separators.
PHONE_RE = re.compile(
    r"\+\d[\d\s().-]{6,18}\d"
    r"|\(\d{2,4}\)\s?\d{3,4}[\s.-]?\d{3,4}"
    r"|\b\d{3}[\s.-]\d{3}[\s.-]\d{4}\b"
)
#: Seven or more digits, possibly with separators: only a line with such a run goes through
#: phonenumbers' matcher (~1 us to look; the matcher costs ~40-120 us a line and region).
DIGIT_RUN_RE = re.compile(r"\d(?:[\s().-]?\d){6,}")
#: Regions whose national spellings (``4155550123``, ``14155550123``, ``020 7946 0958``) are
#: recognised: the matcher accepts only numbers valid there, so epoch times, offsets and ids stay.
PHONE_REGIONS = ("US", "GB")

LEVELS = {"warn": logging.WARNING}


def level_number(level: str) -> int:
    """``debug``/``info``/``warn``/``warning``/``error`` -> the logging level."""
    return LEVELS.get(level.lower(), getattr(logging, level.upper(), logging.INFO))


def mask(text: str) -> str:
    text = PHONE_RE.sub("[phone]", EMAIL_RE.sub("[email]", text))
    for region in PHONE_REGIONS:
        if not DIGIT_RUN_RE.search(text):
            break
        spans = [(m.start, m.end) for m in PhoneNumberMatcher(text, region, leniency=Leniency.VALID)]
        for start, end in reversed(spans):
            text = f"{text[:start]}[phone]{text[end:]}"
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask emails and phone numbers in every value (run after exc_info)."""
    for k, v in list(event_dict.items()):
        if k != "ts":  # our ISO time: a digit run, but never personal (skips the phone matcher)
            event_dict[k] = _scrub(v)
    return event_dict


def _render(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    return orjson.dumps(event_dict, default=str).decode()


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
]


def formatter() -> logging.Formatter:
    """The stdlib formatter that turns any log record into one redacted JSON line."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            _render,
        ],
    )


def dict_config(level: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` config: the root logger writes JSON to stderr.

    Also handed to faust's worker (``logging_config``), which would otherwise install its own
    coloured handler on the root logger.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,  # our module loggers exist before the worker starts
        "formatters": {"json": {"()": formatter}},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"level": level_number(level), "handlers": ["default"]},
        # aiokafka's debug lines dump whole record values (event bodies: names, emails, phones),
        # which no redaction can fully clean: its loggers stay at info even when we debug.
        "loggers": {"aiokafka": {"level": max(level_number(level), logging.INFO)}},
    }


def setup_logging(level: str = "info") -> None:
    """JSON logs on stderr at ``level``, for stdlib loggers and structlog loggers alike."""
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(dict_config(level))


#: the context keys :func:`bind_batch` sets
BATCH_KEYS = ("stage", "topic", "partition", "offset", "last_offset")


def bind_batch(stage: str, records: Sequence[Any]) -> None:
    """Bind ``stage``, ``topic``, ``partition`` and ``offset`` of a batch of faust events to every log
    line the current task writes until its next batch: one partition gives ``offset``..``last_offset``,
    several give ``partition`` as a list and ``offset`` as ``{partition: [first, last]}``.

    Context variables are per asyncio task, so each agent's batches carry their own context and
    other tasks (timers) none of it.
    """
    structlog.contextvars.unbind_contextvars(*BATCH_KEYS)
    if not records:
        return
    msgs = [r.message for r in records]
    parts = sorted({m.partition for m in msgs})
    ctx: dict[str, Any] = {"stage": stage, "topic": msgs[0].topic}
    if len(parts) == 1:
        ctx.update(partition=parts[0], offset=msgs[0].offset, last_offset=msgs[-1].offset)
    else:  # a batch over several partitions: each one's offset range
        ctx["partition"] = parts
        ctx["offset"] = {
            str(p): [min(o), max(o)] for p in parts if (o := [m.offset for m in msgs if m.partition == p])
        }
    structlog.contextvars.bind_contextvars(**ctx)

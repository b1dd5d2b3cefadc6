"""JSON logs: context of the batch, faust-style stdlib lines as JSON, no emails or phone numbers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import structlog

from streams import logs


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own with our JSON formatter (the root logger and pytest's capture are left alone)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter())
    logger = logging.getLogger(f"cxtest.{id(out)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        structlog.contextvars.clear_contextvars()


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def faust_event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


def test_a_stdlib_line_is_one_json_object_with_the_batch_context(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    logs.bind_batch("intake", [faust_event("cx.events.raw", 2, o) for o in (40, 41, 42)])
    logger.warning("redis %s failed (%s); retrying in %.2fs", "dedupe", "ConnectionError", 0.1)
    (rec,) = records(out)
    assert rec["event"] == "redis dedupe failed (ConnectionError); retrying in 0.10s"
    assert rec["level"] == "warning"
    assert rec["logger"] == logger.name
    assert rec["ts"].endswith("Z")
    assert (rec["stage"], rec["topic"], rec["partition"], rec["offset"], rec["last_offset"]) == (
        "intake",
        "cx.events.raw",
        2,
        40,
        42,
    )


def test_a_batch_over_several_partitions_gives_each_ones_offsets(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    batch = [faust_event("t", 0, 5), faust_event("t", 1, 9), faust_event("t", 0, 7)]
    logs.bind_batch("decide", batch)
    logger.info("x")
    logs.bind_batch("decide", [])  # the next (empty) batch clears it
    logger.info("y")
    first, second = records(out)
    assert first["partition"] == [0, 1] and first["offset"] == {"0": [5, 7], "1": [9, 9]}
    assert "partition" not in second and "offset" not in second


def test_emails_and_phones_are_masked_in_messages_arguments_and_tracebacks(
    lines: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = lines
    logger.info("identify from %s / %s", "Ann.Lee+shop@example.co.uk", "+12065550127")
    try:
        raise ValueError("bad phone (206) 555-0199 for ann@example.com")
    except ValueError:
        logger.exception("intake failed on %s", "cx.events.raw/0/17")
    text = out.getvalue()
    for raw in ("Ann.Lee+shop@example.co.uk", "+12065550127", "(206) 555-0199", "ann@example.com"):
        assert raw not in text
    first, second = records(out)
    assert first["event"] == "identify from [email] / [phone]"
    assert "bad phone [phone] for [email]" in second["exception"]
    assert second["event"] == "intake failed on cx.events.raw/0/17"


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-05T10:02:41.284Z",
        "2026-01-05T10:02:41.284+00:00",
        "offset 1234567890 of cx.events.raw/3",
        "7127014f-49d1-4afa-b15d-5e2d7b6eba99",
        "p_d6cdead4d12b88f32a2c6a8f",
        "http://0.0.0.0:9464/metrics",
        "took 0.0123s for 500 events",
    ],
)
def test_ids_times_and_numbers_are_not_mistaken_for_personal_data(text: str) -> None:
    assert logs.mask(text) == text


@pytest.mark.parametrize(
    "raw",
    [
        "4155550123",  # digits only, national (US)
        "14155550123",  # digits only, with the country code, no +
        "020 7946 0958",  # UK national spelling
        "+44 20 7946 0958",
        "ann.lee%40example.com",  # URL-encoded @
        "ann.lee%2540example.com",  # double-encoded
        "ann.lee@exämple.com",  # IDN domain
    ],
)
def test_more_spellings_of_phones_and_emails_are_masked(
    lines: tuple[logging.Logger, io.StringIO], raw: str
) -> None:
    logger, out = lines
    logger.info("lookup of %s failed", raw)
    text = out.getvalue()
    assert raw not in text and raw.encode().decode("unicode_escape", "ignore") not in text
    assert records(out)[0]["event"] in ("lookup of [phone] failed", "lookup of [email] failed")
    assert logs.mask(f"x={raw};") in ("x=[phone];", "x=[email];")


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


#: Bad events, each carrying personal-looking values where the check fails.
BAD_EVENTS: list[dict[str, Any] | list[Any] | str] = [
    {"type": "ivy.j@example.com", "userId": "ivy-77"},
    {"type": ["track"], "userId": "ivy-77"},
    {"type": "track", "userId": True, "event": "Ivy Opened"},
    {"type": "track", "userId": {"ivy": "jones"}, "event": "Ivy Opened"},
    {"type": "identify", "userId": "ivy-77", "traits": ["ivy@example.com"]},
    {"type": "identify", "userId": "ivy-77", "timestamp": 1700000000},
    {"type": "identify", "userId": "ivy-77", "context": "ivy_j_example_com"},
    {"type": "identify", "userId": "ivy-77", "context": {"channel": ["ivy_j_example_com"]}},
    {"type": "identify", "userId": "ivy-77", "context": {"externalIds": {"ivy_loyalty": "L-4155550123"}}},
    {"type": "identify", "userId": "ivy-77", "context": {"externalIds": [{"id": "L-415", "type": "!!"}]}},
    {
        "type": "identify",
        "userId": "ivy-77",
        "context": {"consent": {"categoryPreferences": {"ivy_ads": "yes"}}},
    },
    {"type": "identify", "userId": "ivy-77", "context": {"consent": {"categoryPreferences": {"---": True}}}},
    {"type": "identify", "userId": "ivy-77", "context": {"consentManagement": {"allowedConsentIds": "ivy"}}},
    {"type": "identify", "userId": "ivy-77", "timestamp": "ivy's birthday"},
    {"type": "identify", "userId": "ivy-77", "timestamp": "1969-12-31T00:00:00Z"},
    {
        "type": "identify",
        "userId": "ivy-77",
        "originalTimestamp": "1970-01-01T00:00:01Z",
        "sentAt": "2026-03-01T00:00:00Z",
        "receivedAt": "1970-01-02T00:00:00Z",
    },
    {"type": "track", "userId": "ivy-77"},
    {"type": "alias", "userId": "ivy-77"},
    {"type": "track", "event": "Segment Consent Preference Updated", "userId": "ivy-77"},
    {"type": "track", "event": "Ivy Opened", "userId": "000-000", "traits": {"email": "ivy@example.com"}},
    {
        "type": "track",
        "event": "Ivy Opened",
        "userId": "ivy-77",
        "properties": {f"ivy{i}": i for i in range(400)},
    },
    {
        "type": "track",
        "event": "Ivy Opened",
        "userId": "ivy-77",
        "context": {"externalIds": [{"id": f"ivy-{i}", "type": "crm_id"} for i in range(60)]},
    },
    {"type": "track", "event": "Ivy Opened", "userId": "ivy-77", "properties": {"ivy_deep": [[[["ivy"]]]]}},
    ["ivy@example.com"],
    "ivy@example.com",
]


#: Strings of the corpus that are not input values: field names, the six calls, the consent event.
FIXED = {
    *("identify", "track", "page", "screen", "group", "alias", "Segment Consent Preference Updated"),
    *("userId", "type", "event", "traits", "properties", "context", "channel", "externalIds", "id"),
    *("consent", "categoryPreferences", "consentManagement", "allowedConsentIds"),
    *("timestamp", "originalTimestamp", "sentAt", "receivedAt"),
}


def test_dead_letter_details_name_the_field_never_the_input() -> None:
    from streams.intake import Intake, IntakeConfig
    from streams.intake.errors import DeadLetter
    from streams.model import SourceRef

    intake = Intake(IntakeConfig(max_depth=4))
    codes = set()
    for doc in [*BAD_EVENTS, b"{ivy@example.com", b"\xffivy@example.com"]:
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        dl = intake.parse(raw, b"k", SourceRef("cx.events.raw", 0, 1), 1_772_366_400_000)
        assert isinstance(dl, DeadLetter), doc
        codes.add(dl.code)
        values = set(_strings(doc)) if not isinstance(doc, bytes) else {"ivy@example.com"}
        for v in values - FIXED:  # field names and the calls, which a detail may name
            assert v not in dl.detail, (dl.code, dl.detail, v)
    assert len(codes) >= 10, codes  # the corpus reaches most of the checks


def test_aiokafka_stays_at_info_when_we_debug() -> None:
    """Its debug lines carry whole record values: event bodies with names, emails and phones."""
    config = logs.dict_config("debug")
    assert config["root"]["level"] == logging.DEBUG
    assert config["loggers"]["aiokafka"]["level"] == logging.INFO
    assert logs.dict_config("warn")["loggers"]["aiokafka"]["level"] == logging.WARNING

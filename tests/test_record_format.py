"""The fields every output record carries: times in RFC 3339 UTC, deterministic trigger ids.

Both are computed by hand for speed (``ms_to_iso``, ``uuid5_text``); here they are held to the
standard library's own results, which they replace."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.intake.normalize import ms_to_iso
from streams.sinks.records import ID_NAMESPACE, trigger_id, uuid5_text

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_MS = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
LAST_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)


def exact(ms: int) -> str:
    """The reference: timedelta arithmetic is exact (integers), unlike a float timestamp."""
    return (EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_ms_to_iso_is_exact_for_every_representable_time(ms: int) -> None:
    assert ms_to_iso(ms) == exact(ms)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
        (1767600123456, "2026-01-05T08:02:03.456Z"),
        (951782400000, "2000-02-29T00:00:00.000Z"),
        (LAST_MS, "9999-12-31T23:59:59.999Z"),  # float division made this .998
        (FIRST_MS, "0001-01-01T00:00:00.000Z"),
    ],
)
def test_ms_to_iso_known_values(ms: int, text: str) -> None:
    assert ms_to_iso(ms) == text


def test_ms_to_iso_refuses_what_a_date_cannot_hold() -> None:
    for ms in (LAST_MS + 1, FIRST_MS - 1):
        with pytest.raises((ValueError, OverflowError)):
            ms_to_iso(ms)


@given(st.text(max_size=200))
def test_uuid5_text_is_the_standard_uuid5(name: str) -> None:
    assert uuid5_text(name) == str(uuid.uuid5(ID_NAMESPACE, name))


def test_trigger_ids_did_not_change() -> None:
    # an id a consumer may have stored: the same rule, version and key give it forever
    assert trigger_id("cart_abandoned", 1, "c-1") == str(uuid.uuid5(ID_NAMESPACE, "cart_abandoned|1|c-1"))

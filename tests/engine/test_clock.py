"""The event clock: a source stops holding it back only when its owner says it is read to its end."""

from __future__ import annotations

from streams.engine.clock import IDLE_FRESH_MS, EventClock
from streams.testing import FakeClock

IDLE = 30_000


def clock(sources: int = 2) -> tuple[EventClock, FakeClock]:
    wall = FakeClock(1_000_000)
    return EventClock(sources, IDLE, wall), wall


def test_the_clock_is_the_minimum_over_sources_and_waits_for_unheard_ones() -> None:
    c, _ = clock(3)
    c.observe(0, 0, 500)
    c.observe(0, 1, 300)
    assert c.now(0) is None  # source 2 never heard from: it may hold older events
    c.observe(0, 2, 400)
    assert c.now(0) == 300


def test_a_silent_source_holds_the_clock_however_long_it_is_quiet() -> None:
    """A dead worker's source stops reporting: that must never let the clock run ahead of it."""
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 900)
    wall.advance(10 * IDLE)
    assert c.now(0) == 100


def test_a_source_reported_idle_and_quiet_stops_holding_the_clock() -> None:
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 900)
    wall.advance(IDLE)
    c.report_idle(0, 0)
    assert c.now(0) == 900
    wall.advance(IDLE_FRESH_MS + 1)  # its owner stopped reporting (died): it holds the clock again
    assert c.now(0) == 100


def test_a_caught_up_but_live_source_is_not_idle_before_the_idle_timeout() -> None:
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 900)
    c.report_idle(0, 0)
    assert c.now(0) == 100
    wall.advance(IDLE // 2)
    c.report_idle(0, 0)
    assert c.now(0) == 100


def test_an_advance_after_the_idle_report_makes_the_source_active_again() -> None:
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 900)
    wall.advance(IDLE)
    c.report_idle(0, 0)
    assert c.now(0) == 900
    wall.advance(1)
    c.observe(0, 0, 200)  # a new event came: the report is older than the advance
    assert c.now(0) == 200


def test_a_never_heard_source_reported_idle_does_not_hold_the_clock() -> None:
    c, _ = clock()
    c.observe(0, 0, 100)
    c.report_idle(0, 1)  # an empty source partition, read to its end by its owner
    assert c.now(0) == 100


def test_when_every_source_is_idle_the_clock_is_the_highest_mark() -> None:
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 900)
    wall.advance(IDLE)
    c.report_idle(0, 0)
    c.report_idle(0, 1)
    assert c.now(0) == 900


def test_restored_marks_count_as_just_advanced_and_idleness_must_be_reported_again() -> None:
    c, wall = clock()
    c.restore(0, {0: 100, 1: 900})
    c.report_idle(0, 0)
    assert c.now(0) == 100  # not quiet for the idle timeout yet
    wall.advance(IDLE)
    assert c.now(0) == 100  # quiet, but the report is stale
    c.report_idle(0, 0)
    assert c.now(0) == 900

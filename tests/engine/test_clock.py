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


# ---------------------------------------------------------------------- timer lateness (wall time)
HOUR = 3_600_000


def test_a_replay_jumping_hours_ahead_reports_no_lateness_for_timers_fired_promptly() -> None:
    """The clock jumps 6 h in one batch: timers due anywhere in those 6 h became due just now."""
    c, wall = clock()
    c.observe(0, 0, 1_000)
    c.observe(0, 1, 1_000)
    assert c.now(0) == 1_000
    wall.advance(300)
    c.observe(0, 0, 6 * HOUR)
    c.observe(0, 1, 6 * HOUR)
    assert c.now(0) == 6 * HOUR
    wall.advance(150)  # the next timer tick
    for due in (2_000, HOUR, 5 * HOUR, 6 * HOUR):
        assert c.lateness_ms(0, due) == 150  # not (6 h - due)


def test_a_timer_fired_late_in_wall_time_shows_how_late() -> None:
    c, wall = clock()
    c.observe(0, 0, 10 * HOUR)
    c.observe(0, 1, 10 * HOUR)
    assert c.now(0) == 10 * HOUR
    reached = wall()
    for step in range(1, 100):  # the clock keeps moving on while the timer waits (a starved tick)
        wall.advance(1_000)
        c.observe(0, 0, 10 * HOUR + step * 60_000)
        c.observe(0, 1, 10 * HOUR + step * 60_000)
    wall.advance(500)
    assert c.lateness_ms(0, 10 * HOUR) == wall() - reached == 99_500
    assert c.lateness_ms(0, 10 * HOUR - 5) == 99_500  # due before: reached at the same moment
    assert c.lateness_ms(0, 10 * HOUR + 60_000) == 98_500  # due one step later: reached 1 s later


def test_lateness_counts_from_when_the_minimum_source_passed_due_not_the_fastest() -> None:
    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 5 * HOUR)  # a fast source runs ahead: the clock stays at 100
    wall.advance(60_000)
    assert c.lateness_ms(0, HOUR) == 0  # not due yet
    c.observe(0, 0, 2 * HOUR)  # now the clock passes 1 h
    wall.advance(1_000)
    assert c.lateness_ms(0, HOUR) == 1_000


def test_lateness_is_zero_before_the_clock_reaches_due_and_on_an_unknown_partition() -> None:
    c, wall = clock()
    assert c.lateness_ms(3, 100) == 0
    c.observe(0, 0, 500)
    c.observe(0, 1, 500)
    wall.advance(10_000)
    assert c.lateness_ms(0, 501) == 0


def test_the_history_is_bounded_and_a_timer_older_than_it_still_counts_as_late() -> None:
    from streams.engine.clock import REACHED_HISTORY, REACHED_RESOLUTION_MS

    c, wall = clock()
    start = wall()
    for step in range(1, 3 * REACHED_HISTORY):
        c.observe(0, 0, step * 1_000)
        c.observe(0, 1, step * 1_000)
        wall.advance(REACHED_RESOLUTION_MS)
    assert len(c.parts[0].reached) == REACHED_HISTORY
    span = REACHED_HISTORY * REACHED_RESOLUTION_MS
    # a timer due at the very start fired now: at least the history's span late (a lower bound)
    assert span <= c.lateness_ms(0, 1_000) < wall() - start
    assert span > 60_000 * 6  # over any sane alert threshold


def test_advances_closer_than_the_resolution_share_an_entry_and_overstate_by_less_than_it() -> None:
    from streams.engine.clock import REACHED_RESOLUTION_MS

    c, wall = clock()
    c.observe(0, 0, 100)
    c.observe(0, 1, 100)
    assert c.now(0) == 100
    wall.advance(REACHED_RESOLUTION_MS // 2)
    c.observe(0, 0, 200)
    c.observe(0, 1, 200)
    assert len(c.parts[0].reached) == 1
    # 200 was reached half a resolution after the entry's wall moment: overstated by that
    assert c.lateness_ms(0, 200) == REACHED_RESOLUTION_MS // 2


def test_the_decide_stage_observes_wall_lateness_when_the_event_clock_jumps_two_days() -> None:
    """Through the real stages (in memory): a cart abandoned at 10:00, the next event two days
    later. The clock jumps past the timer by almost two days, but the timer fires at the very
    wall moment the clock reaches it: lateness 0, not 47.5 hours."""
    import asyncio

    from streams import metrics
    from streams.testing import at, run_journey, segment

    def histogram() -> tuple[float, float]:
        samples = {s.name: s.value for s in metrics.TIMER_LATENESS.collect()[0].samples}
        return samples["cxstream_timer_lateness_seconds_count"], samples[
            "cxstream_timer_lateness_seconds_sum"
        ]

    count, total = histogram()
    asyncio.run(
        run_journey(
            [
                segment(
                    "track",
                    at("2026-03-02T10:00:00Z"),
                    event="Product Added",
                    userId="usr_lateness",
                    properties={"product_id": "p-1", "price": 10.0},
                ),
                segment("track", at("2026-03-04T10:00:00Z"), event="Page Viewed", userId="usr_lateness"),
            ]
        )
    )
    fired, late = histogram()
    assert fired > count, "the cart-abandoned timer did not fire"
    assert late - total == 0.0

"""rules.kit: the building blocks, and older stored states that the ported rules still read."""

import orjson

from rules.cart_abandoned import CartAbandoned
from rules.kit import Cooldown, Decided, Timeline, count_in_window, first_text, in_window, schedule
from rules.loan_eligibility_repeat import LoanEligibilityRepeat
from rules.onboarding_stalled import OnboardingStalled
from rules.vehicle_config_repeat import VehicleConfigRepeat
from streams.constants import DAY_MS, HOUR_MS, MINUTE_MS
from streams.state import ProfileState
from streams.testing import at, run_rule, track

T0 = at("2026-05-01")


def test_timeline_dedupes_by_message_id_and_keeps_event_time_order() -> None:
    tl = Timeline()
    assert tl.add(30, "c") and tl.add(10, "a") and tl.add(20, "b", product="p")
    assert not tl.add(99, "a")  # the same messageId again: counted once
    assert [e["id"] for e in tl] == ["a", "b", "c"] and "b" in tl and tl.newest == 30
    assert tl.between(10, 30) == [{"ts": 10, "id": "a"}, {"ts": 20, "id": "b", "product": "p"}]
    tl.prune(10)
    assert [e["id"] for e in tl] == ["b", "c"] and "a" not in tl
    tl.last(1)
    assert tl.dump() == [{"ts": 30, "id": "c"}]


def test_timeline_reads_positional_entries_by_their_legacy_names() -> None:
    tl = Timeline([[20, "b", "x"], {"ts": 10, "id": "a", "product": "y"}], legacy=("ts", "id", "product"))
    assert tl.dump() == [{"ts": 10, "id": "a", "product": "y"}, {"ts": 20, "id": "b", "product": "x"}]


def test_timeline_merge_keeps_each_message_once_in_order() -> None:
    mine = Timeline([{"ts": 10, "id": "a", "side": "mine"}, {"ts": 30, "id": "c"}])
    theirs = Timeline([{"ts": 10, "id": "a", "side": "theirs"}, {"ts": 20, "id": "b"}])
    merged = mine.merged(theirs)
    assert [(e["id"], e.get("side")) for e in merged] == [("a", "mine"), ("b", None), ("c", None)]
    assert "b" in merged and not merged.add(1, "b")


def test_count_in_window_includes_the_end_and_excludes_the_start() -> None:
    entries = [{"ts": t, "id": str(t)} for t in (0, 5, 10)]
    assert count_in_window(entries, 10, 10) == 2  # (0, 10]
    assert [e["ts"] for e in in_window(entries, 10, 11)] == [0, 5, 10]


def test_cooldown_is_per_key_and_looks_both_ways() -> None:
    cd = Cooldown(7)
    cd.note("a", 100)
    assert cd.blocks("a", 94) and cd.blocks("a", 106) and not cd.blocks("a", 107) and not cd.blocks("a", 93)
    assert not cd.blocks("b", 100)  # another product, configuration or application: its own period
    other = Cooldown(7, {"b": [50]})
    assert cd.merged(other).dump() == {"a": [100], "b": [50]}
    cd.prune(106)  # a point after 106 (107) is still blocked by the fire at 100
    assert cd.dump() == {"a": [100]}
    cd.prune(107)  # nothing after 107 can be
    assert cd.dump() == {}


def test_decided_mark_states_the_late_event_policy() -> None:
    d = Decided()
    assert d.is_open(0) and not d.is_late(0)
    d.advance(100)
    d.advance(50)  # never moves back
    assert d.at == 100 and d.is_late(100) and not d.is_open(100) and d.is_open(101)
    assert d.earliest_open([90, 150, 120]) == 120 and d.earliest_open([10]) is None
    assert Decided(40).merged(d).at == 40 and Decided().merged(d).at is None


def test_schedule_sets_or_cancels_the_one_timer() -> None:
    assert schedule({}, "w", 5).set_timers[0].due == 5
    assert schedule({}, "w", None).cancel_timers == ["w"]


def test_first_text() -> None:
    assert first_text({"product_id": "", "sku": 7}, "product_id", "sku") == "7"
    assert first_text({"product_id": True, "sku": None}, "product_id", "sku") is None


# ---------------------------------------------------------------- stored states of the older shape


def _stored(rule: str, state: object, timers: dict[str, int] | None = None) -> ProfileState:
    """A profile state as it sits in Redis today (JSON bytes), with the rule's older positional state."""
    return ProfileState.from_json(orjson.dumps({"off": 3, "rules": {rule: state}, "timers": timers or {}}))


def test_loan_checks_stored_as_lists_still_count() -> None:
    old = {"checks": [[T0, "m1", "personal"], [T0 + DAY_MS, "m2", None]]}
    third = track("Loan Eligibility Checked", T0 + 2 * DAY_MS, properties={"product": "car"})
    run = run_rule(LoanEligibilityRepeat(), [third], state=_stored("loan_eligibility_repeat", old))
    assert [(t.key, t.context["check_count"], t.context["products"]) for t in run.triggers] == [
        (third.message_id, 3, ["car", "personal"])
    ]
    assert run.state.rules["loan_eligibility_repeat"]["checks"][0] == {
        "ts": T0,
        "id": "m1",
        "product": "personal",
    }


def test_vehicle_configurations_stored_in_the_older_shape_keep_views_and_fires() -> None:
    views = [[T0, "v1", "X5", "M"], [T0 + DAY_MS, "v2", "X5", None]]
    old = {"cfg": {"x5": {"v": views, "f": []}, "i4": {"v": [[T0, "w1", "i4", None]], "f": [T0]}}}
    state = _stored("vehicle_config_repeat", old)
    third = track("Configuration Viewed", T0 + 2 * DAY_MS, properties={"configuration_id": "x5"})
    again = [
        track("Configuration Viewed", T0 + d * DAY_MS, properties={"configuration_id": "i4"}) for d in (3, 4)
    ]
    run = run_rule(VehicleConfigRepeat(), [third, *again], state=state)
    # x5 completes its window with the stored views; i4 fired at T0 (stored): no second fire inside 14 days
    assert [(t.key, t.context["view_count"], t.context["model"]) for t in run.triggers] == [
        (third.message_id, 3, "X5")
    ]
    new = run.state.rules["vehicle_config_repeat"]
    assert "cfg" not in new and new["fired"]["i4"] == [T0] and len(new["views"]["x5"]) == 3


def test_a_cart_stored_as_lists_is_still_abandoned_at_its_time() -> None:
    old = {"tl": [[T0, "c", "open-1", {"product_id": "a", "price": 5}]]}
    more = track("Product Added", T0 + MINUTE_MS, properties={"product_id": "b", "price": 2})
    run = run_rule(CartAbandoned(), [more], state=_stored("cart_abandoned", old), until=T0 + HOUR_MS)
    assert [(t.key, t.time, t.context["value"]) for t in run.triggers] == [
        ("open-1", T0 + 31 * MINUTE_MS, 7.0)
    ]


def test_an_onboarding_stored_as_lists_still_stalls_with_its_last_step() -> None:
    old = {
        "tl": [[T0, "s", "start-1", "car", None, None], [T0 + HOUR_MS, "x", "step-1", "car", "documents", 2]],
        "done": [[T0 - 5 * DAY_MS, "old-start"]],
    }
    nudge = track("Onboarding Step Completed", T0 + 2 * HOUR_MS, properties={"product": "other"})
    run = run_rule(
        OnboardingStalled(), [nudge], state=_stored("onboarding_stalled", old), until=T0 + 2 * DAY_MS
    )
    assert [(t.key, t.context["last_step"], t.context["last_step_index"]) for t in run.triggers] == [
        ("start-1", "documents", 2)
    ]


def test_a_segment_stored_in_the_older_shape_keeps_its_membership() -> None:
    from rules.segments import SegmentDef, SegmentRule

    rule = SegmentRule([SegmentDef("buyer", frozenset({"Order Completed"}), 2, 10)])
    # in since the second order at day 1, reported up to day 2
    old = {"buyer": {"ev": [[T0, "o1"], [T0 + DAY_MS, "o2"]], "at": T0 + 2 * DAY_MS, "in": True}}
    stored = _stored("segments", old, {"segments|window": T0 + 10 * DAY_MS})  # o1 leaves the window
    run = run_rule(rule, [], state=stored, until=T0 + 12 * DAY_MS)
    assert [(t.name, t.key, t.time) for t in run.triggers] == [
        ("segment_exited", "buyer/o1/exit", T0 + 10 * DAY_MS)
    ]
    assert run.state.rules["segments"] == {} and run.timers == {}  # both orders left the window


def test_a_test_drive_stored_in_the_older_shape_is_still_reported() -> None:
    from rules.test_drive_silence import TestDriveSilence

    old = {
        "tl": [[T0 + DAY_MS, "a", "visit-1", {}]],
        "head": {"anchor": [T0, "drive-1", {"kind": "completed", "model": "X5"}], "last": T0},
        "set": T0,
    }
    stored = _stored("test_drive_silence", old, {"test_drive_silence|silence": T0 + 183 * DAY_MS + 1})
    run = run_rule(TestDriveSilence(), [], state=stored, until=T0 + 400 * DAY_MS)
    assert [(t.key, t.time, t.context["model"]) for t in run.triggers] == [
        ("drive-1", T0 + 183 * DAY_MS, "X5")
    ]

from rules.vehicle_config_repeat import VehicleConfigRepeat
from streams.constants import DAY_MS
from streams.model import Event
from streams.state import ProfileState
from streams.testing import at, run_rule, track

T0 = at("2026-04-01T12:00:00Z")
VIEW = "Configuration Viewed"


def view(day: float, cfg: str = "x5-m-sport", **kw: object) -> Event:
    props = {"configuration_id": cfg, "model": "X5", "trim": "M Sport"}
    return track(VIEW, T0 + int(day * DAY_MS), properties=props, **kw)  # type: ignore[arg-type]


def test_three_views_within_14_days_fire_once_with_the_configuration() -> None:
    third = view(9)
    run = run_rule(VehicleConfigRepeat(), [view(0), view(4), third])
    assert len(run.triggers) == 1
    t = run.triggers[0]
    assert (t.key, t.time) == (third.message_id, third.ts)
    assert t.context == {
        "configuration_id": "x5-m-sport",
        "model": "X5",
        "trim": "M Sport",
        "view_count": 3,
        "window_days": 14,
        "first_viewed_at": T0,
    }


def test_views_spread_over_more_than_14_days_do_not_fire() -> None:
    run = run_rule(VehicleConfigRepeat(), [view(0), view(10), view(20), view(30)])
    assert run.triggers == []


def test_three_different_configurations_are_not_a_repeat() -> None:
    run = run_rule(VehicleConfigRepeat(), [view(0, "a"), view(1, "b"), view(2, "c"), view(3, "a")])
    assert run.triggers == []


def test_once_per_configuration_per_14_days_but_other_configurations_still_fire() -> None:
    evs = (
        [view(d) for d in (0, 1, 2, 3, 4, 10)]
        + [view(d, "q7") for d in (5, 6, 7)]
        + [view(d) for d in (17, 18)]
    )
    run = run_rule(VehicleConfigRepeat(), evs)
    got = [(t.context["configuration_id"], (t.time - T0) // DAY_MS) for t in run.triggers]
    # x5 fires at day 2; days 3..10 are within its 14 days; day 17 (views 4, 10, 17) is 15 days later
    assert got == [("x5-m-sport", 2), ("q7", 7), ("x5-m-sport", 17)]


def test_the_same_view_delivered_twice_counts_once() -> None:
    first = view(0)
    run = run_rule(VehicleConfigRepeat(), [first, first, view(1)])
    assert run.triggers == []


def test_out_of_order_views_count_by_event_time() -> None:
    run = run_rule(VehicleConfigRepeat(), [view(12), view(0), view(6)])
    assert [t.context["view_count"] for t in run.triggers] == [3]
    # a view 14 days or more before the others does not complete their window
    run = run_rule(VehicleConfigRepeat(), [view(20), view(25), view(6)])
    assert run.triggers == []


def test_a_late_view_never_fires_a_second_time_inside_14_days() -> None:
    late = view(1)
    run = run_rule(VehicleConfigRepeat(), [view(0), view(2), view(5), late])
    # in order, it would have fired at day 2; late, the day-5 fire stands and no second one comes
    assert [(t.time - T0) // DAY_MS for t in run.triggers] == [5]


def test_a_view_without_configuration_id_is_ignored() -> None:
    ev = track(VIEW, T0, properties={"model": "X5"})
    run = run_rule(VehicleConfigRepeat(), [ev, ev, ev])
    assert run.triggers == [] and run.state.rules["vehicle_config_repeat"] == {}


def test_views_of_two_profiles_merged_fire_at_the_next_view() -> None:
    rule = VehicleConfigRepeat()
    anon = run_rule(
        rule, [view(0, user_id=None, anonymous_id="a1"), view(1, user_id=None, anonymous_id="a1")]
    )
    known = run_rule(rule, [view(3, "other")])
    merged = rule.merge(known.state.rules[rule.name], anon.state.rules[rule.name])
    run = run_rule(rule, [view(4)], state=ProfileState(rules={rule.name: merged}))
    assert [(t.context["view_count"], (t.time - T0) // DAY_MS) for t in run.triggers] == [(3, 4)]


def test_merging_keeps_the_fires_of_both_sides() -> None:
    rule = VehicleConfigRepeat()
    fired = run_rule(rule, [view(0), view(1), view(2)])
    assert len(fired.triggers) == 1
    other = run_rule(rule, [view(3), view(4)])
    merged = rule.merge(other.state.rules[rule.name], fired.state.rules[rule.name])
    run = run_rule(rule, [view(5)], state=ProfileState(rules={rule.name: merged}))
    assert run.triggers == []  # within 14 days of the fire at day 2


def test_state_stays_small() -> None:
    evs = [view(d / 4, f"cfg-{d % 30}") for d in range(400)]
    run = run_rule(VehicleConfigRepeat(), evs)
    state = run.state.rules["vehicle_config_repeat"]["views"]
    assert len(state) == 20 and all(len(views) <= 50 for views in state.values())

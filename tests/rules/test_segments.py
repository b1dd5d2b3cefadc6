from pathlib import Path
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.base import TriggerSpec
from rules.segments import DEFAULT_SEGMENTS, SegmentDef, SegmentRule, load_segments
from streams.constants import DAY_MS
from streams.engine import registry
from streams.exceptions import ConfigError
from streams.model import Event
from streams.settings import load_settings
from streams.state import ProfileState
from streams.testing import Deliver, at, run_rule, track

T0 = at("2026-01-01")
BUYER = SegmentDef("frequent_buyer", frozenset({"Order Completed"}), 3, 90)


def order(day: float, **kw: object) -> Event:
    return track("Order Completed", T0 + int(day * DAY_MS), **kw)  # type: ignore[arg-type]


def summary(triggers: list[TriggerSpec]) -> list[tuple[str | None, str, float, int]]:
    return [(t.name, t.context["segment"], (t.time - T0) / DAY_MS, t.context["count"]) for t in triggers]


def test_entered_at_the_third_order_in_90_days_and_exited_when_the_window_slides() -> None:
    evs = [order(0), order(10), order(20)]
    run = run_rule(SegmentRule([BUYER]), evs, until=T0 + 200 * DAY_MS)
    assert summary(run.triggers) == [
        ("segment_entered", "frequent_buyer", 20, 3),
        ("segment_exited", "frequent_buyer", 90, 2),
    ]
    entered, exited = run.triggers
    assert entered.key == f"frequent_buyer/{evs[2].message_id}"
    assert exited.key == f"frequent_buyer/{evs[0].message_id}/exit"
    assert entered.context == {"segment": "frequent_buyer", "count": 3, "threshold": 3, "window_days": 90}
    assert run.fired[0].rule.trigger_name == "segments"  # the rule's default, overridden per trigger
    assert run.timers == {}


def test_staying_above_the_threshold_keeps_the_profile_in() -> None:
    run = run_rule(SegmentRule([BUYER]), [order(d) for d in (0, 10, 20, 50)], until=T0 + 300 * DAY_MS)
    assert summary(run.triggers) == [
        ("segment_entered", "frequent_buyer", 20, 3),
        ("segment_exited", "frequent_buyer", 100, 2),  # day 90: 10, 20, 50 still count
    ]


def test_the_exit_waits_for_the_clock() -> None:
    run = run_rule(SegmentRule([BUYER]), [order(0), order(10), order(20)], until=T0 + 89 * DAY_MS)
    assert [t.name for t in run.triggers] == ["segment_entered"]
    assert list(run.timers.values()) == [T0 + 90 * DAY_MS]


def test_below_the_threshold_nothing_happens() -> None:
    run = run_rule(SegmentRule([BUYER]), [order(0), order(100), order(200)], until=T0 + 400 * DAY_MS)
    assert run.triggers == [] and run.timers == {}


def test_a_redelivered_order_counts_once() -> None:
    ev = order(0)
    run = run_rule(SegmentRule([BUYER]), [ev, ev, order(1), ev], until=T0 + 10 * DAY_MS)
    assert run.triggers == []


def test_one_event_can_enter_several_segments_with_distinct_keys() -> None:
    twice = SegmentDef("returning_buyer", frozenset({"Order Completed"}), 2, 30)
    run = run_rule(SegmentRule([BUYER, twice]), [order(0), order(1), order(2)], until=T0 + 3 * DAY_MS)
    assert sorted(summary(run.triggers)) == [
        ("segment_entered", "frequent_buyer", 2, 3),
        ("segment_entered", "returning_buyer", 1, 2),
    ]
    assert len({t.key for t in run.triggers}) == 2


def test_several_event_names_count_together_and_others_are_not_wanted() -> None:
    rule = SegmentRule([SegmentDef("researcher", frozenset({"A", "B"}), 2, 7)])
    assert not rule.wants(track("C", T0)) and rule.wants(track("A", T0))
    run = run_rule(rule, [track("A", T0), track("C", T0 + 1), track("B", T0 + 2)])
    assert [t.context["count"] for t in run.triggers] == [2]


def test_a_late_order_behind_the_clock_is_reconciled_at_the_clock() -> None:
    rule = SegmentRule([BUYER])
    late = order(50)
    # the clock is at day 110 when the order of day 50 arrives: the count at day 110 is now 3
    run = run_rule(rule, [order(0), order(100), order(110), late], until=T0 + 110 * DAY_MS)
    assert summary(run.triggers) == [("segment_entered", "frequent_buyer", 110, 3)]
    assert run.triggers[0].key == f"frequent_buyer/entered@{T0 + 110 * DAY_MS}"
    # and it counts from then on: the late order leaves the window at day 140
    run = run_rule(rule, [order(0), order(100), order(110), late], until=T0 + 300 * DAY_MS)
    assert summary(run.triggers)[1:] == [("segment_exited", "frequent_buyer", 140, 2)]


def test_merge_counts_both_profiles_at_the_next_timer() -> None:
    rule = SegmentRule([BUYER])
    store = run_rule(rule, [order(0), order(5)], until=T0 + 6 * DAY_MS)
    web = run_rule(rule, [order(7)], until=T0 + 8 * DAY_MS)
    merged = rule.merge(web.state.rules["segments"], store.state.rules["segments"])
    # the engine keeps the earlier of the two profiles' timers (day 90, when the day-0 order leaves)
    timers = {"segments|window": min(store.timers["segments|window"], web.timers["segments|window"])}
    run = run_rule(
        rule, [], until=T0 + 200 * DAY_MS, state=ProfileState(rules={"segments": merged}, timers=timers)
    )
    assert summary(run.triggers) == [
        ("segment_entered", "frequent_buyer", 7, 3),  # true since day 7, when the merged counts say so
        ("segment_exited", "frequent_buyer", 90, 2),
    ]


def test_after_a_merge_the_next_order_reconciles_first() -> None:
    rule = SegmentRule([BUYER])
    store = run_rule(rule, [order(0), order(5)], until=T0 + 6 * DAY_MS)
    web = run_rule(rule, [order(7)], until=T0 + 8 * DAY_MS)
    merged = rule.merge(web.state.rules["segments"], store.state.rules["segments"])
    run = run_rule(rule, [order(8)], until=T0 + 9 * DAY_MS, state=ProfileState(rules={"segments": merged}))
    assert summary(run.triggers) == [("segment_entered", "frequent_buyer", 7, 3)]


def test_a_segment_no_longer_configured_is_dropped() -> None:
    run = run_rule(SegmentRule([BUYER]), [order(0)])
    other = SegmentRule([SegmentDef("x", frozenset({"Order Completed"}), 5, 7)])
    run = run_rule(other, [order(1)], state=run.state)
    assert set(run.state.rules["segments"]) == {"x"}


# --------------------------------------------------------------------------- against a plain reference
def reference(days: list[int], n: int, w: int, until: int) -> list[tuple[str, float, int]]:
    out = []
    member = False
    for t in sorted({d for d in days} | {d + w for d in days}):
        if t > until:
            break
        count = sum(1 for d in days if t - w < d <= t)
        if (count >= n) != member:
            member = not member
            out.append(("segment_entered" if member else "segment_exited", float(t), count))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 120), min_size=1, max_size=14, unique=True),
    st.integers(1, 4),
    st.integers(1, 30),
    st.randoms(use_true_random=False),
)
def test_any_timeline_matches_the_reference_in_order_and_shuffled(
    deliver_then_fire: Deliver, days: list[int], n: int, w: int, rnd: Random
) -> None:
    rule = SegmentRule([SegmentDef("s", frozenset({"Order Completed"}), n, w)])
    evs = [order(d) for d in days]
    want = reference(days, n, w, 150)
    until = T0 + 150 * DAY_MS

    def got(triggers: list[TriggerSpec]) -> list[tuple[str, float, int]]:
        return [(str(t.name), (t.time - T0) / DAY_MS, t.context["count"]) for t in triggers]

    assert got(run_rule(rule, sorted(evs, key=lambda e: e.ts), until=until).triggers) == want
    rnd.shuffle(evs)
    assert got(deliver_then_fire(rule, evs, until)) == want


# --------------------------------------------------------------------------- definitions as data
def test_the_defaults_include_frequent_buyer() -> None:
    assert BUYER in DEFAULT_SEGMENTS and SegmentRule().definitions == DEFAULT_SEGMENTS


def test_the_example_file_loads_and_adds_to_the_defaults() -> None:
    path = Path(__file__).parents[2] / "deploy" / "segments.example.toml"
    defs = {d.name: d for d in load_segments(path)}
    assert {"frequent_buyer", "engaged_browser", "vehicle_researcher", "loan_shopper"} <= set(defs)
    assert defs["loan_shopper"].events == frozenset({"Loan Eligibility Checked", "Loan Application Started"})


def test_a_file_segment_replaces_the_builtin_of_that_name_and_defaults_can_be_dropped(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        '[[segments]]\nname = "frequent_buyer"\nevents = "Order Completed"\nthreshold = 5\nwindow_days = 30\n'
    )
    defs = {d.name: d for d in load_segments(f)}
    assert defs["frequent_buyer"] == SegmentDef("frequent_buyer", frozenset({"Order Completed"}), 5, 30)
    assert len(defs) == len(DEFAULT_SEGMENTS)
    f.write_text("include_defaults = false\n" + f.read_text())
    assert [d.name for d in load_segments(f)] == ["frequent_buyer"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[[segments]\n", "is not valid TOML"),
        ("segment = 1\n", "unknown key 'segment'"),
        ("include_defaults = 'yes'\n", "include_defaults must be true or false"),
        ("segments = 3\n", "segments must be an array of tables"),
        ('[[segments]]\nname = "a b"\n', "name must be letters"),
        ('[[segments]]\nname = "x"\nevents = []\nthreshold = 1\nwindow_days = 1\n', "(x): events must be"),
        (
            '[[segments]]\nname = "x"\nevents = ["A"]\nthreshold = 0\nwindow_days = 1\n',
            "threshold must be a positive",
        ),
        (
            '[[segments]]\nname = "x"\nevents = ["A"]\nthreshold = 1\nwindow_days = 1.5\n',
            "window_days must be",
        ),
        (
            '[[segments]]\nname = "x"\nevents = ["A"]\nthreshold = 1\nwindow_days = 1\nwindow = 2\n',
            "unknown key",
        ),
        (
            '[[segments]]\nname = "x"\nevents = ["A"]\nthreshold = 1\nwindow_days = 1\n'
            '[[segments]]\nname = "x"\nevents = ["B"]\nthreshold = 1\nwindow_days = 1\n',
            "segment 'x' is defined twice",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_file_segment_and_problem(
    tmp_path: Path, body: str, expected: str
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_segments(f)
    msg = str(err.value)
    assert "\n" not in msg and expected in msg and str(f) in msg


def test_the_setting_names_an_existing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXSTREAM_SEGMENTS_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "CXSTREAM_SEGMENTS_FILE" in str(err.value) and "existing segments file" in str(err.value)


def test_the_registry_builds_the_rule_from_the_settings_file(tmp_path: Path) -> None:
    f = tmp_path / "s.toml"
    f.write_text(
        'include_defaults = false\n[[segments]]\nname = "vip"\nevents = ["Order Completed"]\n'
        "threshold = 2\nwindow_days = 10\n"
    )
    (rule,) = registry.load(["segments"], settings=load_settings(segments_file=f))
    assert isinstance(rule, SegmentRule) and [d.name for d in rule.definitions] == ["vip"]
    (rule,) = registry.load(["segments"])
    assert isinstance(rule, SegmentRule) and rule.definitions == DEFAULT_SEGMENTS
    f.write_text('[[segments]]\nname = "vip"\n')
    with pytest.raises(ConfigError, match="vip"):
        registry.load(["segments"], settings=load_settings(segments_file=f))

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.test_drive_silence import TestDriveSilence
from streams.constants import DAY_MS
from streams.model import Event, Identifier
from streams.state import ProfileState
from streams.testing import Deliver, at, page, run_rule, track

T0 = at("2026-01-10T15:00:00Z")
ANN = {"identifiers": [Identifier("email", "ann@example.com")]}


def d(days: float) -> int:
    return T0 + int(days * DAY_MS)


def drive(day: float, name: str = "Test Drive Completed", **kw: object) -> Event:
    props = {"model": "iX3", "dealer_id": "dlr-42"}
    return track(name, d(day), properties=props, **ANN, **kw)  # type: ignore[arg-type]


def visit(day: float, **kw: object) -> Event:
    return page(d(day), **ANN, **kw)  # type: ignore[arg-type]


def buy(day: float, name: str = "Order Completed") -> Event:
    return track(name, d(day), properties={"order_id": "o-1"}, **ANN)  # type: ignore[arg-type]


def days(run: object) -> list[float]:
    return [(t.time - T0) / DAY_MS for t in run.triggers]  # type: ignore[attr-defined]


def test_182_silent_days_after_a_test_drive_fire_one_retention_trigger() -> None:
    td = drive(0)
    run = run_rule(TestDriveSilence(), [td], until=d(400))
    assert days(run) == [182]
    t = run.triggers[0]
    assert t.key == td.message_id
    assert t.context == {
        "test_drive": "completed",
        "test_drive_at": d(0),
        "model": "iX3",
        "dealer": "dlr-42",
        "last_activity_at": d(0),
        "days_silent": 182,
    }
    assert run.timers == {}


def test_it_is_retention_not_another_top_of_funnel_ad() -> None:
    rule = TestDriveSilence()
    assert "ads" not in rule.channels and set(rule.channels) == {"email", "call_center"}
    run = run_rule(rule, [drive(0, consent={"marketing": True})], until=d(200))
    verdict = run.verdicts[0]
    assert [a.channel for a in verdict.allowed] == ["email"]
    assert [(r.channel, r.reason) for r in verdict.refused] == [("call_center", "no_reachable_identifier")]


def test_nothing_fires_before_the_clock_passes_182_days() -> None:
    run = run_rule(TestDriveSilence(), [drive(0)], until=d(182))
    assert run.triggers == [] and list(run.timers.values()) == [d(182) + 1]


def test_activity_restarts_the_six_months() -> None:
    run = run_rule(TestDriveSilence(), [drive(0), visit(100), visit(150), visit(332)], until=d(600))
    assert days(run) == [514]  # activity at exactly 182 days still breaks the silence
    run = run_rule(TestDriveSilence(), [drive(0), visit(100), visit(150)], until=d(332) + 1)
    assert days(run) == [332] and run.triggers[0].context["last_activity_at"] == d(150)


def test_a_purchase_cancels_it() -> None:
    for name in ("Order Completed", "Vehicle Purchased"):
        run = run_rule(TestDriveSilence(), [drive(0), buy(40, name)], until=d(600))
        assert run.triggers == [] and run.timers == {}


def test_a_purchase_after_the_silence_does_not_undo_it() -> None:
    run = run_rule(TestDriveSilence(), [drive(0), buy(200)], until=d(600))
    assert days(run) == [182]


def test_a_request_without_completion_counts_and_a_completion_supersedes_it() -> None:
    req = drive(0, "Test Drive Requested")
    run = run_rule(TestDriveSilence(), [req], until=d(200))
    assert [(t.key, t.context["test_drive"]) for t in run.triggers] == [(req.message_id, "requested")]
    done = drive(5)
    run = run_rule(TestDriveSilence(), [req, done], until=d(400))
    assert [(t.key, t.context["test_drive"], days(run)[0]) for t in run.triggers] == [
        (done.message_id, "completed", 187)
    ]


def test_without_a_test_drive_silence_is_not_this_rule() -> None:
    run = run_rule(TestDriveSilence(), [visit(0), buy(3), visit(10)], until=d(600))
    assert run.triggers == [] and run.timers == {}


def test_one_trigger_per_test_drive_and_a_new_drive_rearms() -> None:
    evs = [drive(0), visit(200), visit(300)]
    assert days(run_rule(TestDriveSilence(), evs, until=d(900))) == [182]
    assert days(run_rule(TestDriveSilence(), [*evs, drive(400)], until=d(900))) == [182, 582]


def test_out_of_order_arrival_gives_the_in_order_outcome() -> None:
    in_order = run_rule(TestDriveSilence(), [drive(0), visit(100)], until=d(400))
    reversed_ = run_rule(TestDriveSilence(), [visit(100), drive(0)], until=d(400))
    assert days(in_order) == days(reversed_) == [282]
    # a purchase seen before the (earlier) test drive still cancels it
    assert run_rule(TestDriveSilence(), [buy(30), drive(0)], until=d(400)).triggers == []


def test_a_redelivered_test_drive_does_not_fire_again() -> None:
    td = drive(0)
    run = run_rule(TestDriveSilence(), [td, visit(190), td, td], until=d(900))
    assert days(run) == [182]


def test_a_late_test_drive_behind_the_clock_still_counts_and_a_late_purchase_cancels_it() -> None:
    late_td = drive(100)
    # the first drive's silence is reported when the visit at day 183 moves the clock past day 182
    run = run_rule(TestDriveSilence(), [drive(0), visit(183), late_td], until=d(900))
    assert days(run) == [182, 365] and run.triggers[1].key == late_td.message_id
    run = run_rule(TestDriveSilence(), [drive(0), visit(183), late_td, buy(120)], until=d(900))
    assert days(run) == [182]


def test_merge_with_a_profile_that_bought_cancels() -> None:
    rule = TestDriveSilence()
    anon = run_rule(rule, [drive(0)], until=d(1))
    known = run_rule(rule, [buy(20)], until=d(21))
    merged = rule.merge(known.state.rules[rule.name], anon.state.rules[rule.name])
    state = ProfileState(rules={rule.name: merged}, timers=dict(anon.timers))
    assert run_rule(rule, [], until=d(600), state=state).triggers == []


def test_merge_takes_the_activity_of_both_profiles() -> None:
    rule = TestDriveSilence()
    dealer = run_rule(rule, [drive(0)], until=d(1))
    web = run_rule(rule, [visit(120)], until=d(121))
    merged = rule.merge(web.state.rules[rule.name], dealer.state.rules[rule.name])
    state = ProfileState(rules={rule.name: merged}, timers=dict(dealer.timers))
    run = run_rule(rule, [], until=d(600), state=state)
    assert days(run) == [302]


def test_the_state_stays_small_over_years_of_activity() -> None:
    evs = [drive(0)] + [visit(w * 7) for w in range(1, 150)]  # ~3 years of weekly visits
    run = run_rule(TestDriveSilence(), evs, until=d(149 * 7 + 200))
    assert days(run) == [149 * 7 + 182]
    assert len(run.state.rules["test_drive_silence"]["tl"]) <= 10
    browsing = run_rule(TestDriveSilence(), [visit(w * 7) for w in range(150)] + [buy(5), buy(500)])
    assert len(browsing.state.rules["test_drive_silence"].get("tl", [])) <= 10 and browsing.timers == {}


# --------------------------------------------------------------------------- against a plain reference
Q = 182 * DAY_MS
RANK = {"a": 0, "t": 1, "p": 2}


def reference(evs: list[tuple[int, str, str]], until: int) -> list[tuple[str, int]]:
    """The definition, walked over the whole timeline: (test drive messageId, time) of each report."""
    anchor: str | None = None
    last = 0
    out = []
    for ts, kind, mid in sorted(evs, key=lambda e: (e[0], RANK[e[1]], e[2])):
        if anchor is not None and ts > last + Q:
            if last + Q <= until:
                out.append((anchor, last + Q))
            anchor = None
        last = ts
        if kind == "t":
            anchor = mid
        elif kind == "p":
            anchor = None
    if anchor is not None and last + Q <= until:
        out.append((anchor, last + Q))
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 700), st.sampled_from("aaattp")),
        min_size=1,
        max_size=25,
        unique_by=lambda x: x[0],
    ),
    st.randoms(use_true_random=False),
)
def test_any_timeline_matches_the_reference_in_order_and_shuffled(
    deliver_then_fire: Deliver, spec: list[tuple[int, str]], rnd: Random
) -> None:
    make = {"a": visit, "t": drive, "p": buy}
    evs = [make[kind](day) for day, kind in spec]
    kinds = {e.message_id: kind for e, (_, kind) in zip(evs, spec, strict=True)}
    until = d(1000)
    want = reference([(e.ts, kinds[e.message_id], e.message_id) for e in evs], until)
    in_order = run_rule(TestDriveSilence(), sorted(evs, key=lambda e: e.ts), until=until)
    assert [(t.key, t.time) for t in in_order.triggers] == want
    rnd.shuffle(evs)
    assert [(t.key, t.time) for t in deliver_then_fire(TestDriveSilence(), evs, until)] == want

from itertools import pairwise
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.inactive_45d import Inactive45d, _periods, _stored
from streams.consent.policy import DEFAULT_POLICY
from streams.constants import DAY_MS
from streams.engine.runner import Engine
from streams.model import Identifier
from streams.state import ProfileState
from streams.testing import Deliver, absorb, at, page, run_rule, track

T0 = at("2026-01-05T10:00:00Z")
KNOWN = {"identifiers": [Identifier("email", "ann@example.com")]}


def test_45_quiet_days_fire_one_trigger_per_spell() -> None:
    evs = [page(T0, **KNOWN), track("Product Viewed", T0 + 100 * DAY_MS, **KNOWN)]
    run = run_rule(Inactive45d(), evs, until=T0 + 200 * DAY_MS)
    assert [(t.time - T0) // DAY_MS for t in run.triggers] == [45, 145]
    assert run.triggers[0].key == evs[0].message_id


def test_activity_within_45_days_resets_the_clock() -> None:
    evs = [page(T0 + d * DAY_MS, **KNOWN) for d in (0, 30, 60)]
    run = run_rule(Inactive45d(), evs, until=T0 + 104 * DAY_MS)
    assert run.triggers == []
    run = run_rule(Inactive45d(), evs, until=T0 + 105 * DAY_MS)
    assert [(t.time - T0) // DAY_MS for t in run.triggers] == [105]


def test_an_anonymous_visitor_is_not_a_known_customer() -> None:
    run = run_rule(Inactive45d(), [page(T0, user_id=None, anonymous_id="a1")], until=T0 + 90 * DAY_MS)
    assert run.triggers == []


def test_activity_leaves_the_timer_where_it_is_and_the_timer_checks_again() -> None:
    """Each activity moves the quiet spell's end later; the timer stays at the first one
    (``keep_earlier``): no timer write per event. Due, it finds no quiet spell and moves on."""
    engine = Engine([Inactive45d()], DEFAULT_POLICY)
    state = ProfileState()
    evs = [page(T0 + d * DAY_MS, **KNOWN) for d in (0, 10, 20, 30)]
    written = [engine.on_event("p_test", state, ev).set_timers for ev in evs]
    assert [len(w) for w in written] == [1, 0, 0, 0]
    assert state.timers == {"inactive_45d|quiet": T0 + 45 * DAY_MS}
    eff = engine.fire_until("p_test", state, T0 + 45 * DAY_MS)  # a re-check: 15 days quiet so far
    assert eff.fired == [] and state.timers == {"inactive_45d|quiet": T0 + 75 * DAY_MS}
    eff = engine.fire_until("p_test", state, T0 + 75 * DAY_MS)
    assert [(f.spec.time - T0) // DAY_MS for f in eff.fired] == [75]
    # an earlier quiet spell (a late event opens one) moves the timer earlier at once
    state = ProfileState()
    engine.on_event("p_test", state, evs[-1])
    assert state.timers == {"inactive_45d|quiet": T0 + 75 * DAY_MS}
    assert engine.on_event("p_test", state, page(T0 - 60 * DAY_MS, **KNOWN)).set_timers
    assert state.timers == {"inactive_45d|quiet": T0 - 15 * DAY_MS}


def test_identify_is_not_activity() -> None:
    from streams.testing import event

    run = run_rule(Inactive45d(), [event("identify", T0, **KNOWN)], until=T0 + 90 * DAY_MS)
    assert run.triggers == [] and run.timers == {}


def test_a_late_event_is_measured_against_the_start_of_the_activity_it_precedes(
    deliver_then_fire: Deliver,
) -> None:
    # The demo's Daniel: POS visits on days 0 and 18 reach the worker only after his app and web
    # activity of days 35-65 (another channel's backlog went first). Day 18 to day 35 is 17
    # quiet days, not 45: no trigger before the quiet spell after day 65.
    days = (35, 37, 41, 65, 0, 18)
    evs = [page(T0 + d * DAY_MS, **KNOWN) for d in days]
    got = deliver_then_fire(Inactive45d(), evs, T0 + 200 * DAY_MS)
    assert [((t.time - T0) // DAY_MS, t.context["last_activity_at"]) for t in got] == [(110, evs[3].ts)]


def test_a_late_event_still_opens_a_quiet_spell_that_was_real(deliver_then_fire: Deliver) -> None:
    evs = [page(T0 + d * DAY_MS, **KNOWN) for d in (100, 0)]  # 100 days apart: two spells
    got = deliver_then_fire(Inactive45d(), evs, T0 + 200 * DAY_MS)
    assert [((t.time - T0) // DAY_MS, t.key) for t in got] == [
        (45, evs[1].message_id),
        (145, evs[0].message_id),
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=16))
def test_an_activity_after_all_others_is_stored_as_the_general_path_stores_it(days: list[int]) -> None:
    """The shortcut for an activity later than every period gives what sorting and joining
    all periods gives, whatever came before (late events, spells, joins)."""
    rule = Inactive45d()
    state = run_rule(rule, [page(T0 + d * DAY_MS + i, **KNOWN) for i, d in enumerate(days)]).state
    stored = state.rules.get("inactive_45d", {})
    last = max((a[0] for a in stored.get("acts", [])), default=T0)
    for gap in (1, 45 * DAY_MS, 45 * DAY_MS + 1, 90 * DAY_MS):
        ev = page(last + gap, **KNOWN)
        got = rule.on_event(dict(stored), ev, None).state  # type: ignore[arg-type]  # unused
        general = _stored(rule._compact([*_periods(stored), [ev.ts, ev.message_id, ev.ts]]))
        assert {k: got.get(k) for k in ("acts", "starts")} == {k: general.get(k) for k in ("acts", "starts")}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_triggers(
    deliver_then_fire: Deliver, days: list[int], rnd: Random
) -> None:
    evs = [page(T0 + d * DAY_MS + i, **KNOWN) for i, d in enumerate(sorted(days))]
    until = T0 + 500 * DAY_MS
    walked = run_rule(Inactive45d(), evs, until=until)  # in time order, the clock moving along
    in_order = [(t.key, t.time, t.context) for t in deliver_then_fire(Inactive45d(), evs, until)]
    rnd.shuffle(evs)
    shuffled = [(t.key, t.time, t.context) for t in deliver_then_fire(Inactive45d(), evs, until)]
    assert shuffled == in_order == [(t.key, t.time, t.context) for t in walked.triggers]
    # one per gap of more than 45 days, and one after the last activity
    ts = sorted(e.ts for e in evs)
    gaps = [a for a, b in pairwise(ts) if b - a > 45 * DAY_MS] + [ts[-1]]
    assert [t for _, t, _ in in_order] == [a + 45 * DAY_MS for a in gaps]


def test_a_period_is_stored_with_its_start_beside_and_a_state_without_starts_still_reads() -> None:
    evs = [page(T0 + d * DAY_MS, **KNOWN) for d in (0, 30)]
    run = run_rule(Inactive45d(), evs, until=T0 + 40 * DAY_MS)
    stored = run.state.rules["inactive_45d"]
    assert stored == {"acts": [[evs[1].ts, evs[1].message_id]], "starts": {evs[1].message_id: evs[0].ts}}
    # written before the start was kept: the latest activity only, a period of one
    old = ProfileState(rules={"inactive_45d": {"acts": [[evs[1].ts, evs[1].message_id]]}})
    late = page(T0 - 20 * DAY_MS, **KNOWN)  # 50 days before the stored activity: a spell of its own
    run = run_rule(Inactive45d(), [late], until=T0 + 100 * DAY_MS, state=old)
    assert [((t.time - T0) // DAY_MS, t.key) for t in run.triggers] == [
        (25, late.message_id),
        (75, evs[1].message_id),
    ]


def test_a_merge_joins_the_periods_of_both_profiles() -> None:
    rule = Inactive45d()
    pos = run_rule(rule, [page(T0 + d * DAY_MS, **KNOWN) for d in (0, 18)], until=T0 + 18 * DAY_MS)
    app = [page(T0 + d * DAY_MS, **KNOWN) for d in (35, 65)]
    run = run_rule(rule, [*app, absorb(pos)], until=T0 + 200 * DAY_MS)
    assert [((t.time - T0) // DAY_MS, t.key) for t in run.triggers] == [(110, app[1].message_id)]

"""browse_abandoned, case by case against its contract text (README, "Built-in rules").

"The same product (``Product Viewed``, ``properties.product_id``, else ``sku``) viewed 3
times within 24 hours with no ``Product Added`` of that product in those 24 hours fires
once, at the end of the 24 hours after the first of those views; at most once per product
per 7 days." Off by default.
"""

import asyncio
from random import Random

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.browse_abandoned import BrowseAbandoned
from streams.constants import DAY_MS, HOUR_MS
from streams.engine import registry
from streams.model import Event
from streams.settings import Settings
from streams.testing import absorb, at, deliver_then_fire, run_journey, run_rule, segment, track

T0 = at("2026-06-01T09:00:00Z")


def view(hours: float, product: str = "sku-1", key: str = "product_id", **kw: object) -> Event:
    return track("Product Viewed", T0 + int(hours * HOUR_MS), properties={key: product}, **kw)  # type: ignore[arg-type]


def added(hours: float, product: str = "sku-1") -> Event:
    return track("Product Added", T0 + int(hours * HOUR_MS), properties={"product_id": product})


def fired(events: list[Event], until_hours: float = 24 * 30) -> list[tuple[str, int, str]]:
    run = run_rule(BrowseAbandoned(), events, until=T0 + int(until_hours * HOUR_MS), strict=True)
    return [(t.key, t.time, t.context["product_id"]) for t in run.triggers]


def test_three_views_within_24h_fire_once_at_24h_after_the_first() -> None:
    first = view(0)
    run = run_rule(BrowseAbandoned(), [first, view(5), view(23)], until=T0 + DAY_MS, strict=True)
    assert [(t.key, t.time) for t in run.triggers] == [(first.message_id, T0 + DAY_MS)]
    assert run.triggers[0].context == {"product_id": "sku-1", "view_count": 3, "first_viewed_at": T0}


def test_it_does_not_fire_before_the_24_hours_are_over() -> None:
    run = run_rule(BrowseAbandoned(), [view(0), view(1), view(2)], until=T0 + DAY_MS - 1)
    assert run.triggers == [] and run.timers == {"browse_abandoned|window": T0 + DAY_MS}


def test_views_spread_over_more_than_24_hours_do_not_fire() -> None:
    assert fired([view(0), view(12), view(24)]) == []  # the third is at exactly 24 h: outside
    assert fired([view(0), view(20), view(30), view(50)]) == []


def test_product_id_else_sku() -> None:
    assert [p for _, _, p in fired([view(0, "A", "sku"), view(1, "A", "sku"), view(2, "A", "sku")])] == ["A"]
    # product_id wins over sku: these are views of three different products
    mixed = [
        track("Product Viewed", T0 + i, properties={"product_id": f"p{i}", "sku": "same"}) for i in range(3)
    ]
    assert fired(mixed) == []
    assert fired([track("Product Viewed", T0 + i, properties={"name": "no id"}) for i in range(3)]) == []


def test_at_most_once_per_product_per_7_days() -> None:
    # a second run of views on day 3 is inside the 7 days of the first trigger; the one on day 9 is not
    days = [0, 0.1, 0.2, 3, 3.1, 3.2, 9, 9.1, 9.2]
    got = fired([view(d * 24) for d in days])
    assert [(t - T0) / DAY_MS for _, t, _ in got] == [1, 10]


def test_views_of_a_and_b_three_each_give_two_triggers() -> None:
    evs = [view(h, p) for h in (0, 1, 2) for p in ("a", "b")]
    assert sorted(p for _, _, p in fired(evs)) == ["a", "b"]


def test_one_view_delivered_three_times_gives_none() -> None:
    once = view(0)
    assert fired([once, once, once]) == []
    assert fired([once, once, once, view(1), view(2)]) == [(once.message_id, T0 + DAY_MS, "sku-1")]


def test_a_product_added_in_the_24_hours_cancels() -> None:
    assert fired([view(0), view(1), added(5), view(6)]) == []
    assert fired([view(0), view(1), view(6), added(23.9)]) == []  # before the end: still in those 24 hours
    # an add of another product, or one before the first view, cancels nothing
    assert len(fired([view(0), view(1), added(2, "other"), view(6)])) == 1
    first = view(6)
    assert fired([added(5), first, view(7), view(8)]) == [(first.message_id, T0 + 30 * HOUR_MS, "sku-1")]


def test_through_a_merge_with_a_pending_timer() -> None:
    anonymous = run_rule(BrowseAbandoned(), [view(0), view(2)], profile_id="p_anon")
    assert anonymous.timers == {"browse_abandoned|window": T0 + DAY_MS}  # pending when the merge comes
    first = anonymous.state.rules["browse_abandoned"]["events"][0]
    run = run_rule(
        BrowseAbandoned(), [view(3), absorb(anonymous, "p_anon")], until=T0 + 2 * DAY_MS, strict=True
    )
    assert [(t.key, t.time, t.context["view_count"]) for t in run.triggers] == [(first["id"], T0 + DAY_MS, 3)]


def test_a_merge_keeps_the_absorbed_profiles_pending_windows_when_the_survivor_decided_further() -> None:
    # the absorbed profile decided up to hour 24 (its first view's window) and has 3 views pending
    pending = [view(30, "x"), view(31, "x"), view(32, "x")]
    absorbed = run_rule(BrowseAbandoned(), [view(0, "y"), *pending], until=T0 + 40 * HOUR_MS)
    assert absorbed.timers == {"browse_abandoned|window": T0 + 54 * HOUR_MS}
    # the survivor's clock went further: it decided up to hour 100
    survivor = run_rule(BrowseAbandoned(), [view(76, "z")], until=T0 + 100 * HOUR_MS)
    run = run_rule(BrowseAbandoned(), [absorb(absorbed)], state=survivor.state, until=T0 + 100 * HOUR_MS)
    assert [(t.key, t.time) for t in run.triggers] == [(pending[0].message_id, T0 + 54 * HOUR_MS)]


def test_a_merge_of_two_profiles_that_both_fired_does_not_fire_again() -> None:
    a = run_rule(BrowseAbandoned(), [view(0), view(1), view(2)], until=T0 + DAY_MS, profile_id="p_a")
    b = run_rule(BrowseAbandoned(), [view(30), view(31), view(32)], until=T0 + 3 * DAY_MS)
    assert len(a.triggers) == len(b.triggers) == 1
    after = run_rule(BrowseAbandoned(), [absorb(a, "p_a")], state=b.state, until=T0 + 9 * DAY_MS)
    assert after.triggers == []


def test_a_late_view_does_not_revise_or_repeat_a_decided_window() -> None:
    first = view(0)
    run = run_rule(BrowseAbandoned(), [first, view(1), view(2), view(40), view(0.5)], until=T0 + 10 * DAY_MS)
    assert [(t.key, t.time) for t in run.triggers] == [(first.message_id, T0 + DAY_MS)]


def test_state_stays_small_and_the_timer_goes_when_nothing_is_pending() -> None:
    evs = [view(h * 7, f"p{h % 5}") for h in range(400)]
    run = run_rule(BrowseAbandoned(), evs, until=T0 + 200 * DAY_MS)
    state = run.state.rules["browse_abandoned"]
    assert state["events"] == [] and run.timers == {}
    assert len(orjson.dumps(state)) < 200


@settings(max_examples=60, deadline=None)
@given(
    spec=st.lists(
        st.tuples(st.integers(0, 24 * 12), st.sampled_from(["a", "b"]), st.booleans()), max_size=14
    ),
    seed=st.integers(0, 2**32),
)
def test_arrival_order_does_not_change_the_triggers(spec: list[tuple[int, str, bool]], seed: int) -> None:
    """Every event before the clock moves, in any order, gives what in-order input gives."""
    evs = [added(h, p) if is_add and h % 3 == 0 else view(h, p) for h, p, is_add in spec]
    until = T0 + 20 * DAY_MS
    in_order = fired(sorted(evs, key=lambda e: (e.ts, e.message_id)), 20 * 24)
    Random(seed).shuffle(evs)
    shuffled = deliver_then_fire(BrowseAbandoned(), evs, until)
    assert sorted((t.key, t.time) for t in shuffled) == sorted((k, t) for k, t, _ in in_order)


def test_off_by_default_and_available_by_name() -> None:
    assert "browse_abandoned" not in Settings().rules
    assert [r.name for r in registry.load(["browse_abandoned"])] == ["browse_abandoned"]


def test_through_the_pipeline() -> None:
    """Raw Segment messages through intake, identity, consent, the rule and its timer (simulate path)."""
    consent = {"consent": {"categoryPreferences": {"marketing": True}}}
    msgs = [segment("identify", T0, userId="u1", traits={"email": "u1@example.com"}, context=consent)]
    for i, h in enumerate((1, 2, 2, 3)):  # the views of hours 2 are one message delivered twice
        props = {"product_id": "sku-9"}
        msgs.append(segment("track", T0 + h * HOUR_MS, userId="u1", event="Product Viewed", properties=props))
        if i == 2:
            msgs[-1]["messageId"] = msgs[-2]["messageId"]
    s = Settings(rules=("browse_abandoned",))
    assert asyncio.run(run_journey(msgs, s)).activations == []  # the clock stops at the last event
    res = asyncio.run(run_journey(msgs, s, until=T0 + 2 * DAY_MS))
    acts = [orjson.loads(a) for a in res.activations]
    assert [(a["type"], a["data"]["context"]["view_count"]) for a in acts] == [
        ("cx.trigger.browse_abandoned", 3)
    ]

from rules.cart_abandoned import CartAbandoned
from streams.constants import MINUTE_MS
from streams.state import ProfileState
from streams.testing import at, run_rule, track

T0 = at("2026-02-10T18:00:00Z")


def add(ts: int, sku: str = "sku-1", price: float = 20.0, qty: int = 1, **kw: object) -> object:
    return track("Product Added", ts, properties={"product_id": sku, "price": price, "quantity": qty}, **kw)


def order(ts: int, **kw: object) -> object:
    return track("Order Completed", ts, properties={"order_id": "o1", "total": 40}, **kw)


def test_a_cart_left_for_30_minutes_fires_once_with_items_and_value() -> None:
    first = add(T0)
    run = run_rule(
        CartAbandoned(), [first, add(T0 + 5 * MINUTE_MS, "sku-2", 15.5, 2)], until=T0 + 3 * 3600_000
    )
    assert len(run.triggers) == 1
    t = run.triggers[0]
    assert t.key == first.message_id  # type: ignore[attr-defined]
    assert t.time == T0 + 35 * MINUTE_MS  # 30 minutes after the last cart activity
    assert t.context["value"] == 51.0
    assert sorted(i["product_id"] for i in t.context["items"]) == ["sku-1", "sku-2"]
    assert run.timers == {}


def test_a_purchase_within_30_minutes_cancels_it() -> None:
    run = run_rule(CartAbandoned(), [add(T0), order(T0 + 20 * MINUTE_MS)], until=T0 + 86400_000)
    assert run.triggers == [] and run.timers == {}


def test_a_purchase_on_another_channel_counts() -> None:
    run = run_rule(
        CartAbandoned(),
        [add(T0, channel="web"), order(T0 + 10 * MINUTE_MS, channel="pos")],
        until=T0 + 7200_000,
    )
    assert run.triggers == []


def test_a_purchase_after_the_30_minutes_does_not_undo_the_abandonment() -> None:
    run = run_rule(CartAbandoned(), [add(T0), order(T0 + 50 * MINUTE_MS)], until=T0 + 7200_000)
    assert [t.time for t in run.triggers] == [T0 + 30 * MINUTE_MS]


def test_an_order_arriving_before_the_earlier_cart_event_still_cancels() -> None:
    run = run_rule(CartAbandoned(), [order(T0 + 10 * MINUTE_MS), add(T0)], until=T0 + 7200_000)
    assert run.triggers == []


def test_nothing_fires_before_the_clock_passes_30_minutes() -> None:
    run = run_rule(CartAbandoned(), [add(T0)], until=T0 + 29 * MINUTE_MS)
    assert run.triggers == [] and list(run.timers.values()) == [T0 + 30 * MINUTE_MS]


def test_two_separate_carts_fire_twice() -> None:
    run = run_rule(CartAbandoned(), [add(T0), add(T0 + 3 * 3600_000)], until=T0 + 6 * 3600_000)
    assert [t.time for t in run.triggers] == [T0 + 30 * MINUTE_MS, T0 + 3 * 3600_000 + 30 * MINUTE_MS]


def test_merge_brings_the_purchase_of_the_other_profile_into_account() -> None:
    rule = CartAbandoned()
    anon = run_rule(rule, [add(T0)], until=T0 + MINUTE_MS)
    known = run_rule(rule, [order(T0 + 10 * MINUTE_MS)], until=T0 + 11 * MINUTE_MS)
    merged = rule.merge(known.state.rules["cart_abandoned"], anon.state.rules["cart_abandoned"])
    state = ProfileState(
        rules={"cart_abandoned": merged}, timers={"cart_abandoned|cart": T0 + 30 * MINUTE_MS}
    )
    run = run_rule(rule, [], until=T0 + 7200_000, state=state)
    assert run.triggers == []

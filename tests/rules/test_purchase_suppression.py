from rules.purchase_suppression import PurchaseSuppression, products_of
from streams.constants import DAY_MS
from streams.model import Event
from streams.state import ProfileState
from streams.testing import at, run_rule, track

T0 = at("2026-03-15T10:00:00Z")


def order(day: float, *skus: str, name: str = "Order Completed", **props: object) -> Event:
    p: dict[str, object] = {
        "order_id": f"o-{day}",
        "products": [{"product_id": s, "price": 10} for s in skus],
    }
    p.update(props)
    return track(name, T0 + int(day * DAY_MS), properties=p)


def test_a_purchase_emits_a_suppression_for_its_products_until_30_days_later() -> None:
    ev = order(0, "sku-2", "sku-1", "sku-1")
    run = run_rule(PurchaseSuppression(), [ev])
    assert len(run.triggers) == 1
    t = run.triggers[0]
    assert (t.key, t.time, t.name) == (ev.message_id, ev.ts, None)
    assert t.context == {
        "products": ["sku-1", "sku-2"],
        "until": ev.ts + 30 * DAY_MS,
        "days": 30,
        "order_id": "o-0",
    }
    rule = PurchaseSuppression()
    assert (rule.purpose, rule.channels) == ("advertising", ("ads",))
    assert run.fired[0].rule.trigger_name == "purchase_suppression"


def test_product_ids_come_from_products_or_the_top_level() -> None:
    assert products_of({"products": [{"sku": "A"}, {"product_id": 7}, "junk", {"name": "x"}]}) == ["7", "A"]
    assert products_of({"product_id": "P1"}) == ["P1"]
    assert products_of({"sku": "S1", "products": []}) == ["S1"]
    assert products_of({"order_id": "o"}) == []


def test_a_purchase_without_products_emits_nothing() -> None:
    run = run_rule(PurchaseSuppression(), [track("Order Completed", T0, properties={"total": 10})])
    assert run.triggers == [] and run.timers == {}


def test_the_lift_comes_when_the_30_days_end() -> None:
    ev = order(0, "sku-1")
    run = run_rule(PurchaseSuppression(), [ev], until=T0 + 29 * DAY_MS)
    assert len(run.triggers) == 1 and list(run.timers.values()) == [T0 + 30 * DAY_MS]
    run = run_rule(PurchaseSuppression(), [ev], until=T0 + 30 * DAY_MS)
    lift = run.triggers[1]
    assert (lift.name, lift.key, lift.time) == (
        "purchase_suppression_lifted",
        f"{ev.message_id}/lifted",
        T0 + 30 * DAY_MS,
    )
    assert lift.context == {"products": ["sku-1"], "suppressed_since": T0}
    assert run.timers == {}


def test_buying_again_extends_the_suppression_and_the_lift_waits_for_it() -> None:
    evs = [order(0, "sku-1", "sku-2"), order(10, "sku-1")]
    run = run_rule(PurchaseSuppression(), evs, until=T0 + 60 * DAY_MS)
    lifts = [(t.context["products"], (t.time - T0) // DAY_MS) for t in run.triggers if t.name]
    assert lifts == [(["sku-2"], 30), (["sku-1"], 40)]


def test_a_vehicle_purchase_suppresses_the_model() -> None:
    ev = track("Vehicle Purchased", T0, properties={"product_id": "ix3-2026", "vin": "WBY1"})
    assert run_rule(PurchaseSuppression(), [ev]).triggers[0].context["products"] == ["ix3-2026"]


def test_a_redelivered_purchase_emits_once() -> None:
    ev = order(0, "sku-1")
    run = run_rule(PurchaseSuppression(), [ev, ev, order(1, "sku-9"), ev], until=T0 + 90 * DAY_MS)
    assert [t.key for t in run.triggers if t.name is None] == [ev.message_id, run.triggers[1].key]
    assert len([t for t in run.triggers if t.name]) == 2


def test_a_late_earlier_purchase_does_not_shorten_a_later_suppression() -> None:
    run = run_rule(PurchaseSuppression(), [order(10, "sku-1"), order(0, "sku-1")], until=T0 + 90 * DAY_MS)
    lifts = [(t.time - T0) // DAY_MS for t in run.triggers if t.name]
    assert lifts == [40] and len(run.triggers) == 3


def test_merge_keeps_the_latest_end_per_product() -> None:
    rule = PurchaseSuppression()
    a = run_rule(rule, [order(0, "sku-1", "sku-2")])
    b = run_rule(rule, [order(5, "sku-1")])
    merged = rule.merge(a.state.rules[rule.name], b.state.rules[rule.name])
    timers = {"purchase_suppression|lift": T0 + 30 * DAY_MS}
    run = run_rule(
        rule, [], until=T0 + 90 * DAY_MS, state=ProfileState(rules={rule.name: merged}, timers=timers)
    )
    assert [(t.context["products"], (t.time - T0) // DAY_MS) for t in run.triggers] == [
        (["sku-2"], 30),
        (["sku-1"], 35),
    ]

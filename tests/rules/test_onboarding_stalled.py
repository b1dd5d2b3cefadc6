from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.onboarding_stalled import OnboardingStalled
from streams.constants import HOUR_MS, MINUTE_MS
from streams.model import Event
from streams.state import ProfileState
from streams.testing import Deliver, at, run_rule, track

T0 = at("2026-06-01T09:00:00Z")


def h(hours: float) -> int:
    return T0 + int(hours * HOUR_MS)


def start(hours: float, product: str | None = "home_insurance", **kw: object) -> Event:
    props = {"product": product} if product else {}
    return track("Onboarding Started", h(hours), properties=props, **kw)  # type: ignore[arg-type]


def step(hours: float, name: str, index: int, product: str | None = "home_insurance") -> Event:
    props: dict[str, object] = {"step_name": name, "step_index": index}
    if product:
        props["product"] = product
    return track("Onboarding Step Completed", h(hours), properties=props)


def complete(hours: float, product: str | None = "home_insurance") -> Event:
    return track("Onboarding Completed", h(hours), properties={"product": product} if product else {})


def test_no_completion_within_24h_nudges_at_the_last_step() -> None:
    s = start(0)
    evs = [s, step(0.1, "identity", 1), step(0.3, "property_details", 2)]
    run = run_rule(OnboardingStalled(), evs, until=h(48))
    assert len(run.triggers) == 1
    t = run.triggers[0]
    assert (t.key, t.time) == (s.message_id, h(24))
    assert t.context == {
        "product": "home_insurance",
        "started_at": h(0),
        "last_step": "property_details",
        "last_step_index": 2,
        "steps_completed": 2,
        "stalled_after_hours": 24,
    }
    assert run.timers == {}


def test_completion_within_24h_cancels_and_exactly_at_24h_is_in_time() -> None:
    assert run_rule(OnboardingStalled(), [start(0), complete(23)], until=h(72)).triggers == []
    assert run_rule(OnboardingStalled(), [start(0), complete(24)], until=h(72)).triggers == []
    late = run_rule(OnboardingStalled(), [start(0), complete(24.01)], until=h(72))
    assert [t.time for t in late.triggers] == [h(24)]


def test_nothing_fires_before_the_clock_passes_24h() -> None:
    run = run_rule(OnboardingStalled(), [start(0)], until=h(24) - MINUTE_MS)
    assert run.triggers == [] and list(run.timers.values()) == [h(24) + 1]


def test_no_step_yet_gives_an_empty_step() -> None:
    run = run_rule(OnboardingStalled(), [start(0)], until=h(30))
    assert run.triggers[0].context["last_step"] is None and run.triggers[0].context["steps_completed"] == 0


def test_steps_after_the_24h_do_not_count_and_step_may_be_a_number() -> None:
    s2 = track("Onboarding Step Completed", h(1), properties={"product": "home_insurance", "step": 3})
    run = run_rule(OnboardingStalled(), [start(0), s2, step(30, "late", 4)], until=h(72))
    ctx = run.triggers[0].context
    assert (ctx["last_step"], ctx["last_step_index"], ctx["steps_completed"]) == (None, 3, 1)


def test_products_are_separate_onboardings_and_a_completion_without_product_closes_all() -> None:
    evs = [start(0), start(1, "car_insurance"), complete(2, "car_insurance")]
    run = run_rule(OnboardingStalled(), evs, until=h(72))
    assert [t.context["product"] for t in run.triggers] == ["home_insurance"]
    run = run_rule(OnboardingStalled(), [start(0), start(1, "car_insurance"), complete(2, None)], until=h(72))
    assert run.triggers == []


def test_a_restart_continues_the_open_onboarding_and_a_start_after_completion_is_new() -> None:
    first = start(0)
    run = run_rule(OnboardingStalled(), [first, start(10)], until=h(72))
    assert [(t.key, t.time) for t in run.triggers] == [(first.message_id, h(24))]
    again = start(5)
    run = run_rule(OnboardingStalled(), [start(0), complete(2), again], until=h(72))
    assert [(t.key, t.time) for t in run.triggers] == [(again.message_id, h(29))]


def test_redelivered_start_fires_once() -> None:
    s = start(0)
    run = run_rule(OnboardingStalled(), [s, s, step(30, "x", 1), s], until=h(100))
    assert len(run.triggers) == 1


def test_a_completion_arriving_before_its_start_still_cancels() -> None:
    assert run_rule(OnboardingStalled(), [complete(5), start(0)], until=h(72)).triggers == []


def test_merge_takes_the_completion_of_the_other_profile() -> None:
    rule = OnboardingStalled()
    app = run_rule(rule, [start(0)], until=h(1))
    web = run_rule(rule, [step(2, "documents", 3), complete(3)], until=h(4))
    merged = rule.merge(web.state.rules[rule.name], app.state.rules[rule.name])
    state = ProfileState(rules={rule.name: merged}, timers=dict(app.timers))
    assert run_rule(rule, [], until=h(72), state=state).triggers == []


def test_events_running_ahead_of_the_clock_do_not_drop_an_undecided_onboarding(
    deliver_then_fire: Deliver,
) -> None:
    first = start(0)
    got = deliver_then_fire(OnboardingStalled(), [first, start(80, "car_insurance")], h(200))
    assert [t.key for t in got][:1] == [first.message_id] and len(got) == 2


def test_pruning_never_turns_a_restart_into_a_new_onboarding() -> None:
    evs = [start(0), start(22), start(92.5, "car_insurance"), complete(93, "car_insurance")]
    run = run_rule(OnboardingStalled(), evs, until=h(300))
    assert [t.key for t in run.triggers] == [evs[0].message_id]


def test_the_timeline_keeps_three_days() -> None:
    evs = [start(d * 24.0, f"p{d}") for d in range(30)]
    run = run_rule(OnboardingStalled(), evs, until=h(30 * 24) + 1)
    assert len(run.triggers) == 30
    assert len(run.state.rules["onboarding_stalled"]["tl"]) <= 5  # three days and one window


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 71), st.sampled_from("sssxxc"), st.sampled_from(["a", "b", ""])),
        min_size=1,
        max_size=15,
    ),
    st.randoms(use_true_random=False),
)
def test_arrival_order_does_not_change_the_triggers(
    deliver_then_fire: Deliver, spec: list[tuple[int, str, str]], rnd: Random
) -> None:
    make = {
        "s": lambda hr, p: start(hr, p or None),
        "x": lambda hr, p: step(hr, f"step{hr}", hr, p or None),
        "c": lambda hr, p: complete(hr, p or None),
    }
    evs = [make[k](hr, p) for hr, k, p in spec]
    until = h(200)
    in_order = [(t.key, t.time, t.context) for t in deliver_then_fire(OnboardingStalled(), evs, until)]
    walked = run_rule(OnboardingStalled(), sorted(evs, key=lambda e: e.ts), until=until)
    rnd.shuffle(evs)
    shuffled = [(t.key, t.time, t.context) for t in deliver_then_fire(OnboardingStalled(), evs, until)]
    assert shuffled == in_order
    assert sorted((t.key, t.time) for t in walked.triggers) == sorted((k, t) for k, t, _ in in_order)

from rules.loan_eligibility_repeat import LoanEligibilityRepeat
from streams.constants import DAY_MS
from streams.testing import at, run_rule, track

CHECK = "Loan Eligibility Checked"


def test_three_checks_in_a_week_fire_once_at_the_third() -> None:
    t0 = at("2026-03-02T09:00:00Z")
    third = track(CHECK, t0 + 5 * DAY_MS)
    run = run_rule(LoanEligibilityRepeat(), [track(CHECK, t0), track(CHECK, t0 + 2 * DAY_MS), third])
    assert [(t.key, t.time, t.context["check_count"]) for t in run.triggers] == [
        (third.message_id, third.ts, 3)
    ]


def test_checks_spread_over_more_than_a_week_do_not_fire() -> None:
    t0 = at("2026-03-02")
    run = run_rule(LoanEligibilityRepeat(), [track(CHECK, t0 + d * 4 * DAY_MS) for d in range(4)])
    assert run.triggers == []


def test_a_fourth_check_in_the_cooldown_does_not_fire_again_but_after_it_can() -> None:
    t0 = at("2026-03-02")
    days = [0, 1, 2, 3, 10, 11, 12]
    run = run_rule(LoanEligibilityRepeat(), [track(CHECK, t0 + d * DAY_MS) for d in days])
    assert [(t.time - t0) // DAY_MS for t in run.triggers] == [2, 12]


def test_the_same_check_delivered_twice_counts_once() -> None:
    t0 = at("2026-03-02")
    first = track(CHECK, t0)
    run = run_rule(LoanEligibilityRepeat(), [first, first, track(CHECK, t0 + DAY_MS)])
    assert run.triggers == []


def test_out_of_order_checks_are_counted_by_event_time() -> None:
    t0 = at("2026-03-02")
    run = run_rule(
        LoanEligibilityRepeat(),
        [track(CHECK, t0 + 6 * DAY_MS), track(CHECK, t0), track(CHECK, t0 + 3 * DAY_MS)],
    )
    assert len(run.triggers) == 1 and run.triggers[0].context["check_count"] == 3


def test_other_events_are_ignored() -> None:
    t0 = at("2026-03-02")
    run = run_rule(LoanEligibilityRepeat(), [track("Product Viewed", t0 + i) for i in range(5)])
    assert run.triggers == [] and run.state.rules == {}

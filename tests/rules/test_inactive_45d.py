from rules.inactive_45d import Inactive45d
from streams.constants import DAY_MS
from streams.model import Identifier
from streams.testing import at, page, run_rule, track

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


def test_identify_is_not_activity() -> None:
    from streams.testing import event

    run = run_rule(Inactive45d(), [event("identify", T0, **KNOWN)], until=T0 + 90 * DAY_MS)
    assert run.triggers == [] and run.timers == {}

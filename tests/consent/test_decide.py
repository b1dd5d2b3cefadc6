"""The decision step: per channel, allowed with a consent basis or refused with the first failing reason."""

from __future__ import annotations

from typing import Any, ClassVar

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from rules.cart_abandoned import CartAbandoned
from streams.consent.decide import Reason, Verdict, decide
from streams.consent.policy import DEFAULT_POLICY, Region
from streams.constants import DAY_MS, HOUR_MS
from streams.model import Identifier
from streams.state import ProfileState
from streams.testing import at, run_rule, track

T0 = at("2026-03-02T09:00:00Z")
EMAIL = Identifier("email", "ann@example.com")
PHONE = Identifier("phone", "+4915112345678")
DEVICE = Identifier("device_id", "dev-1")


class Ping(Rule):
    """Fires on every ``Ping``: lets a test look at the decision step alone."""

    name = "ping"
    events = frozenset({"Ping"})
    purpose = "marketing"
    channels: ClassVar[tuple[str, ...]] = ("email", "sms", "push", "ads", "web", "fax")

    def on_event(self, state: dict[str, object], event: object, ctx: RuleContext) -> Outcome:
        assert hasattr(event, "message_id") and hasattr(event, "ts")
        return Outcome(state, [TriggerSpec(key=event.message_id, time=event.ts)])


class LoanNews(Ping):
    name = "loan_news"
    topic = "loans"


def _reasons(v: Verdict) -> dict[str, str]:
    return {r.channel: r.reason.value for r in v.refused}


def _ping(ts: int, **kw: Any) -> list[Verdict]:
    return run_rule(Ping(), [track("Ping", ts, **kw)]).verdicts


def test_each_channel_gets_its_first_failing_reason() -> None:
    (v,) = _ping(T0, country="DE", identifiers=[EMAIL], consent={"marketing": True})
    assert [a.channel for a in v.allowed] == ["email"]
    assert v.allowed[0].destinations == ("esp-eu",)
    assert _reasons(v) == {
        "sms": "no_reachable_identifier",  # no phone
        "push": "no_reachable_identifier",  # no device
        "ads": "no_consent",  # advertising never granted, EU is opt-in
        "web": "no_consent",  # personalization never granted
        "fax": "unknown_channel",
    }
    assert v.region == "EU" and v.activated


def test_every_refusal_has_a_detail_naming_what_failed() -> None:
    (v,) = _ping(T0, country="DE", identifiers=[EMAIL], consent={"marketing": False})
    details = {r.channel: r.detail for r in v.refused}
    assert details["email"] == "marketing consent withdrawn (source test)"
    # the channel's own purpose is checked first, then the rule's
    assert details["ads"] == "no advertising consent, and advertising is opt-in in region EU"
    assert details["fax"] == f"policy {DEFAULT_POLICY.version} has no channel fax"
    assert not v.activated


def test_opt_in_region_unknown_means_no_and_opt_out_region_unknown_means_yes() -> None:
    (eu,) = _ping(T0, country="FR", identifiers=[EMAIL])
    assert eu.allowed == () and _reasons(eu)["email"] == "no_consent"
    assert next(r.detail for r in eu.refused if r.channel == "email") == (
        "no marketing consent, and marketing is opt-in in region EU"
    )
    (us,) = _ping(T0, country="US", identifiers=[EMAIL])
    assert [a.channel for a in us.allowed] == ["email", "ads", "web"]
    assert us.allowed[0].basis == {"marketing": {"basis": "opt_out_regime", "region": "US"}}
    assert us.allowed[0].destinations == ("esp-us",)
    (withdrawn,) = _ping(T0, country="US", identifiers=[EMAIL], consent={"marketing": False})
    assert _reasons(withdrawn)["email"] == "no_consent"


def test_unknown_country_falls_in_the_default_region_and_regime() -> None:
    (v,) = _ping(T0, identifiers=[EMAIL])
    assert v.region == "OTHER" and _reasons(v)["email"] == "no_consent"


def test_a_per_purpose_regime_override_applies_to_that_purpose_only() -> None:
    us = DEFAULT_POLICY.regions["US"].model_copy(update={"purpose_regimes": {"advertising": "opt_in"}})
    policy = DEFAULT_POLICY.model_copy(update={"regions": {**DEFAULT_POLICY.regions, "US": us}})
    assert isinstance(us, Region)
    state = ProfileState(country="US", reach=["email"])
    v = decide(policy, state, "marketing", ("email", "ads"), T0)
    assert [a.channel for a in v.allowed] == ["email"]
    assert [(r.channel, r.reason, r.detail) for r in v.refused] == [
        ("ads", Reason.NO_CONSENT, "no advertising consent, and advertising is opt-in in region US")
    ]
    v = decide(DEFAULT_POLICY, state, "marketing", ("email", "ads"), T0)
    assert [a.channel for a in v.allowed] == ["email", "ads"]


def test_the_consent_basis_names_purpose_source_and_time() -> None:
    (v,) = _ping(
        T0,
        country="DE",
        identifiers=[EMAIL, DEVICE],
        consent={"marketing": True, "personalization": True},
    )
    by = {a.channel: a.basis for a in v.allowed}
    assert by["email"] == {"marketing": {"basis": "consent", "source": "test", "at": T0}}
    assert by["web"] == {
        "personalization": {"basis": "consent", "source": "test", "at": T0},
        "marketing": {"basis": "consent", "source": "test", "at": T0},
    }


def test_residency_an_eu_profile_never_gets_a_destination_not_allowed_for_eu_data() -> None:
    (v,) = _ping(
        T0,
        country="IT",
        identifiers=[EMAIL, PHONE, DEVICE],
        consent={"marketing": True, "advertising": True, "personalization": True},
    )
    for a in v.allowed:
        for d in a.destinations:
            regions = DEFAULT_POLICY.destinations[d].regions
            assert "EU" in regions or "*" in regions
    assert _reasons(v)["ads"] == "region_not_allowed"  # the only ads destination is US/other data
    (us,) = _ping(T0, country="US", identifiers=[EMAIL, PHONE, DEVICE], consent={"advertising": True})
    assert {a.channel: a.destinations for a in us.allowed}["ads"] == ("ads-us",)


def test_preferred_channels_refuse_the_others_with_reason_preference() -> None:
    (v,) = _ping(
        T0,
        country="US",
        identifiers=[EMAIL, PHONE],
        traits={"preferred_channels": ["sms"]},
    )
    assert [a.channel for a in v.allowed] == ["sms"]
    assert _reasons(v)["email"] == "preference"
    assert next(r.detail for r in v.refused if r.channel == "email") == "customer chose channels: sms"


def test_consent_is_checked_before_preference() -> None:
    (v,) = _ping(
        T0,
        country="US",
        identifiers=[EMAIL],
        consent={"marketing": False},
        traits={"preferred_channels": ["sms"]},
    )
    assert _reasons(v)["email"] == "no_consent"


def test_topics_a_rule_about_a_topic_the_customer_did_not_choose_is_refused() -> None:
    run = run_rule(
        LoanNews(),
        [
            track("Ping", T0, country="US", identifiers=[EMAIL], traits={"topics": ["savings"]}),
            track("Ping", T0 + 1, country="US", identifiers=[EMAIL], traits={"topics": ["savings", "loans"]}),
        ],
    )
    first, second = run.verdicts
    assert not first.activated and _reasons(first)["email"] == "preference"
    assert "customer chose topics: savings; not loans" in {r.detail for r in first.refused}
    assert [a.channel for a in second.allowed] == ["email", "ads", "web"]


def test_the_fourth_email_within_seven_days_is_refused_with_frequency_cap() -> None:
    events = [
        track("Ping", T0 + i * DAY_MS, country="DE", identifiers=[EMAIL], consent={"marketing": True})
        for i in range(4)
    ]
    verdicts = run_rule(Ping(), events).verdicts
    assert [[a.channel for a in v.allowed] for v in verdicts] == [["email"]] * 3 + [[]]
    cap = next(r for r in verdicts[3].refused if r.channel == "email")
    assert cap.reason is Reason.FREQUENCY_CAP and cap.detail == "3 of 3 email activations in 7d"
    # a week after the first, there is room again
    late = track("Ping", T0 + 7 * DAY_MS, country="DE", identifiers=[EMAIL])
    run = run_rule(Ping(), [*events, late])
    assert [a.channel for a in run.verdicts[-1].allowed] == ["email"]


def test_a_refused_channel_does_not_count_against_its_cap() -> None:
    state = ProfileState(country="DE", reach=["email"])
    for i in range(3):
        assert not decide(DEFAULT_POLICY, state, "marketing", ("email",), T0 + i).activated  # no consent
    assert "email" not in state.caps


def test_the_fourth_cart_email_in_a_week_is_capped_but_push_still_goes() -> None:
    carts = []
    for day in range(4):
        t = T0 + day * DAY_MS
        carts += [
            track(
                "Product Added",
                t,
                country="DE",
                identifiers=[EMAIL, DEVICE],
                consent={"marketing": True},
                properties={"product_id": f"p{day}", "price": 10},
            ),
            track("Ping", t + 2 * HOUR_MS),  # moves the clock past the 30 minutes
        ]
    run = run_rule(CartAbandoned(), carts)
    assert [[a.channel for a in v.allowed] for v in run.verdicts] == [["email", "push"]] * 3 + [["push"]]
    assert _reasons(run.verdicts[3]) == {"email": "frequency_cap", "ads": "no_consent"}


def test_a_late_trigger_cannot_squeeze_a_fourth_email_between_three_later_ones() -> None:
    state = ProfileState(country="US", reach=["email"])
    for day in (2, 3, 4):
        assert decide(DEFAULT_POLICY, state, "marketing", ("email",), T0 + day * DAY_MS).activated
    late = decide(DEFAULT_POLICY, state, "marketing", ("email",), T0)
    assert [r.reason for r in late.refused] == [Reason.FREQUENCY_CAP]
    early = decide(DEFAULT_POLICY, state, "marketing", ("email",), T0 - 5 * DAY_MS)
    assert early.activated  # a week before the last three: its own window


def test_caps_of_merged_profiles_add_up() -> None:
    from streams.engine.runner import Engine

    engine = Engine([Ping()], DEFAULT_POLICY)
    a = ProfileState(country="US", reach=["email"])
    b = ProfileState(country="US", reach=["email"])
    for i in range(2):
        decide(DEFAULT_POLICY, a, "marketing", ("email",), T0 + i)
        decide(DEFAULT_POLICY, b, "marketing", ("email",), T0 + 10 + i)
    engine.merge("pa", a, b)
    assert [r.reason for r in decide(DEFAULT_POLICY, a, "marketing", ("email",), T0 + 30).refused] == [
        Reason.FREQUENCY_CAP
    ]

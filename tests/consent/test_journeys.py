"""Consent enforced on the whole pipeline: raw Segment messages in, activations and decisions out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from streams.consent.policy import DEFAULT_POLICY
from streams.constants import DAY_MS, MINUTE_MS
from streams.intake.consent import CONSENT_EVENT
from streams.model import JSONDict
from streams.settings import Settings
from streams.simulate import SimResult
from streams.testing import at, run_journey, segment

T0 = at("2026-03-02T09:00:00Z")
CHECK = "Loan Eligibility Checked"
ANN_CONTEXT: JSONDict = {"channel": "web", "location": {"country": "DE"}}
ANN: JSONDict = {"userId": "ann", "context": ANN_CONTEXT}


def _run(messages: list[JSONDict], settings: Settings | None = None) -> SimResult:
    return asyncio.run(run_journey(messages, settings))


def _decisions(res: SimResult, rule: str) -> list[JSONDict]:
    return [d for d in map(orjson.loads, res.decisions) if d["rule"]["name"] == rule]


def _activations(res: SimResult, rule: str) -> list[JSONDict]:
    return [a for a in map(orjson.loads, res.activations) if a["data"]["rule"]["name"] == rule]


def _identify(ts: int, **extra: Any) -> JSONDict:
    ctx = {**ANN_CONTEXT, **extra.pop("context", {})}
    traits = extra.pop("traits", {"email": "ann@example.com"})
    return segment("identify", ts, userId="ann", traits=traits, context=ctx, **extra)


def _check(ts: int) -> JSONDict:
    return segment("track", ts, event=CHECK, properties={"product": "personal_loan"}, **ANN)


def _consent_event(ts: int, marketing: bool) -> JSONDict:
    ctx = {**ANN_CONTEXT, "consent": {"categoryPreferences": {"marketing": marketing, "analytics": True}}}
    return segment("track", ts, event=CONSENT_EVENT, userId="ann", context=ctx)


def test_loan_checks_three_times_in_a_week_with_consent_is_an_activation() -> None:
    res = _run(
        [
            _identify(T0, context={"consent": {"categoryPreferences": {"marketing": True}}}),
            _check(T0 + DAY_MS),
            _check(T0 + 3 * DAY_MS),
            _check(T0 + 5 * DAY_MS),
        ]
    )
    (dec,) = _decisions(res, "loan_eligibility_repeat")
    (act,) = _activations(res, "loan_eligibility_repeat")
    assert dec["outcome"] == "activated" and dec["id"] == act["id"]
    assert dec["policyVersion"] == DEFAULT_POLICY.version and dec["region"] == "EU"
    assert act["type"] == "cx.trigger.loan_eligibility_repeat"
    data = act["data"]
    assert data["context"]["check_count"] == 3
    assert data["channels"] == [{"channel": "email", "destinations": ["esp-eu"]}]
    assert data["consent"]["email"]["marketing"] == {"basis": "consent", "source": "segment", "at": T0}
    assert data["policyVersion"] == DEFAULT_POLICY.version


def test_loan_checks_with_marketing_withdrawn_in_between_are_suppressed_not_emailed() -> None:
    res = _run(
        [
            _identify(T0, context={"consent": {"categoryPreferences": {"marketing": True}}}),
            _check(T0 + DAY_MS),
            _check(T0 + 3 * DAY_MS),
            _consent_event(T0 + 4 * DAY_MS, marketing=False),
            _check(T0 + 5 * DAY_MS),
        ]
    )
    assert _activations(res, "loan_eligibility_repeat") == []
    (dec,) = _decisions(res, "loan_eligibility_repeat")
    assert dec["outcome"] == "suppressed" and dec["allowed"] == []
    email = next(r for r in dec["refused"] if r["channel"] == "email")
    assert email == {
        "channel": "email",
        "reason": "no_consent",
        "detail": "marketing consent withdrawn (source segment)",
    }
    assert all(r["reason"] for r in dec["refused"]) and {r["channel"] for r in dec["refused"]} == {
        "email",
        "push",
        "call_center",
    }


def test_a_check_that_arrives_late_is_decided_on_the_consent_of_its_own_time() -> None:
    # the withdrawal is at day 4; the third check happened at day 3 but arrives last
    res = _run(
        [
            _identify(T0, context={"consent": {"categoryPreferences": {"marketing": True}}}),
            _check(T0 + DAY_MS),
            _check(T0 + 2 * DAY_MS),
            _consent_event(T0 + 4 * DAY_MS, marketing=False),
            _check(T0 + 3 * DAY_MS),
        ]
    )
    (dec,) = _decisions(res, "loan_eligibility_repeat")
    assert dec["outcome"] == "activated" and dec["time"].startswith("2026-03-05")


def _cart(withdraw_after_min: int | None, form: str = "rudderstack") -> SimResult:
    ctx = {"channel": "web", "location": {"country": "DE"}}
    msgs = [
        _identify(T0, context={"consent": {"categoryPreferences": {"marketing": True}}}),
        segment(
            "track",
            T0 + MINUTE_MS,
            event="Product Added",
            userId="ann",
            properties={"product_id": "p1", "price": 40},
            context=ctx,
        ),
    ]
    if withdraw_after_min is not None:
        ts = T0 + (1 + withdraw_after_min) * MINUTE_MS
        if form == "rudderstack":
            wctx = {**ctx, "consentManagement": {"deniedConsentIds": ["marketing"], "allowedConsentIds": []}}
            msgs.append(segment("page", ts, userId="ann", name="Privacy", context=wctx))
        else:
            msgs.append(
                segment(
                    "page",
                    ts,
                    userId="ann",
                    context={**ctx, "consent": {"categoryPreferences": {"email": False}}},
                )
            )
    msgs.append(segment("page", T0 + 2 * 60 * MINUTE_MS, userId="ann", name="Home", context=ctx))
    return _run(msgs)


def test_cart_timer_with_consent_still_in_force_activates() -> None:
    (act,) = _activations(_cart(None), "cart_abandoned")
    assert [c["channel"] for c in act["data"]["channels"]] == ["email"]


def test_consent_withdrawn_before_the_cart_timer_fires_suppresses_it() -> None:
    for form in ("rudderstack", "segment"):
        res = _cart(10, form)
        assert _activations(res, "cart_abandoned") == [], form
        (dec,) = _decisions(res, "cart_abandoned")
        assert dec["outcome"] == "suppressed"
        email = next(r for r in dec["refused"] if r["channel"] == "email")
        assert email["reason"] == "no_consent" and "marketing consent withdrawn" in email["detail"]


def test_consent_withdrawn_after_the_cart_was_abandoned_does_not_undo_the_trigger() -> None:
    # abandoned at +31 min; the withdrawal at +41 min is later than the trigger's own time
    (dec,) = _decisions(_cart(40), "cart_abandoned")
    assert dec["outcome"] == "activated"


def test_an_anonymous_denial_wins_when_the_device_turns_out_to_be_a_known_customer() -> None:
    ctx = {"channel": "app", "location": {"country": "US"}, "device": {"id": "dev-9"}}
    msgs = [
        # US is opt-out: the known customer may get email without a statement...
        _identify(T0, context={"location": {"country": "US"}}),
        # ...but on the app, anonymously, the same person said no to marketing
        segment(
            "page",
            T0 + DAY_MS,
            anonymousId="anon-9",
            context={**ctx, "consent": {"categoryPreferences": {"marketing": False}}},
        ),
        # logging in on the app proves it is ann: the profiles merge
        segment("identify", T0 + 2 * DAY_MS, userId="ann", anonymousId="anon-9", context=ctx),
        _check(T0 + 3 * DAY_MS),
        _check(T0 + 4 * DAY_MS),
        _check(T0 + 5 * DAY_MS),
    ]
    res = _run(msgs)
    assert any(orjson.loads(c)["change"] == "merged" for c in res.identity_changes)
    (dec,) = _decisions(res, "loan_eligibility_repeat")
    assert dec["outcome"] == "suppressed"
    assert {r["reason"] for r in dec["refused"]} == {"no_consent"}


def test_with_consent_merge_latest_the_later_statement_wins(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "deploy" / "policy.example.toml").read_text()
    policy = tmp_path / "policy.toml"
    policy.write_text(text.replace('consent_merge = "most_restrictive"', 'consent_merge = "latest"'))
    ctx = {"channel": "app", "location": {"country": "DE"}, "device": {"id": "dev-9"}}
    msgs = [
        segment(
            "page",
            T0,
            anonymousId="anon-9",
            context={**ctx, "consent": {"categoryPreferences": {"marketing": False}}},
        ),
        _identify(T0 + DAY_MS, context={"consent": {"categoryPreferences": {"marketing": True}}}),
        segment("identify", T0 + 2 * DAY_MS, userId="ann", anonymousId="anon-9", context=ctx),
        _check(T0 + 3 * DAY_MS),
        _check(T0 + 4 * DAY_MS),
        _check(T0 + 5 * DAY_MS),
    ]
    (latest,) = _decisions(_run(msgs, Settings(policy_file=policy)), "loan_eligibility_repeat")
    assert latest["outcome"] == "activated" and latest["policyVersion"] == "example-2026-11"
    (strict,) = _decisions(_run(msgs), "loan_eligibility_repeat")
    assert strict["outcome"] == "suppressed"


def test_preferred_channels_trait_is_enforced_end_to_end() -> None:
    msgs = [
        _identify(
            T0,
            traits={
                "email": "ann@example.com",
                "phone": "+4915112345678",
                "preferred_channels": ["call_center"],
            },
            context={"consent": {"categoryPreferences": {"marketing": True}}},
        ),
        _check(T0 + DAY_MS),
        _check(T0 + 2 * DAY_MS),
        _check(T0 + 3 * DAY_MS),
    ]
    (dec,) = _decisions(_run(msgs), "loan_eligibility_repeat")
    assert [a["channel"] for a in dec["allowed"]] == ["call_center"]
    assert {r["channel"]: r["reason"] for r in dec["refused"]}["email"] == "preference"

"""Holdouts and conversions through the pipeline's own stages (the simulate path: in-memory
stores, the same classes the worker runs), plus redelivery on real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from measure.journeys import HOLDOUT_PERCENT, binomial_range, check, outcome, plan, policy_file

from streams.measure import report
from streams.measure.command import format_report
from streams.settings import Settings
from streams.testing import at, run_journey


def _loads(values: list[bytes]) -> list[dict[str, object]]:
    return [orjson.loads(v) for v in values]


def test_replayed_journeys_give_each_conversion_once_in_its_group(tmp_path: Path) -> None:
    p = plan(600, at("2026-03-01T00:00:00Z"))
    s = Settings(rules=("loan_eligibility_repeat",), policy_file=policy_file(tmp_path))
    res = asyncio.run(run_journey(p.messages, s, batch=200))
    decisions, conversions = _loads(res.decisions), _loads(res.conversions)
    o = outcome(p, decisions, conversions, _loads(res.identity_changes))
    hand = check(p, o)
    held = hand["holdout"]["triggers"]
    lo, hi = binomial_range(len(p.users), HOLDOUT_PERCENT)
    assert lo <= held <= hi, f"{held} of {len(p.users)} held out"
    # held-out triggers are not activated; treated ones are
    assert len(res.activations) == hand["treated"]["triggers"]
    (r,) = report.uplift(decisions, conversions)
    for g in ("treated", "holdout"):
        assert (r.groups[g].triggers, r.groups[g].conversions) == (
            hand[g]["triggers"],
            hand[g]["conversions"],
        )
    t, h = hand["treated"], hand["holdout"]
    pt, ph = t["conversions"] / t["triggers"], h["conversions"] / h["triggers"]
    assert r.uplift is not None and r.uplift[0] == pytest.approx(pt - ph)
    assert r.relative_uplift is not None and r.relative_uplift[0] == pytest.approx(pt / ph - 1)
    text = format_report(decisions, conversions)
    assert f"{100 * pt:.2f}%" in text and f"{100 * ph:.2f}%" in text
    assert f"{100 * (pt - ph):+.2f} pp" in text


def test_the_same_input_replayed_gives_the_same_conversion_records(tmp_path: Path) -> None:
    p = plan(80, at("2026-03-01T00:00:00Z"), seed=3)
    s = Settings(rules=("loan_eligibility_repeat",), policy_file=policy_file(tmp_path))
    one = asyncio.run(run_journey(p.messages, s, batch=7))
    two = asyncio.run(run_journey(p.messages, s, batch=50))
    assert one.conversions and sorted(one.conversions) == sorted(two.conversions)
    assert sorted(one.decisions) == sorted(two.decisions)


def _policy(tmp: Path, percent: float, window_days: float = 7) -> Path:
    path = policy_file(tmp)
    text = path.read_text()
    text = text.replace(f"holdout_percent = {HOLDOUT_PERCENT}", f"holdout_percent = {percent}")
    text = text.replace("conversion_window_days = 7", f"conversion_window_days = {window_days}")
    path.write_text(text)
    return path


@pytest.mark.parametrize(("percent", "group"), [(0, "treated"), (100, "holdout")])
def test_an_exposure_follows_a_merge_with_the_group_it_was_opened_in(
    tmp_path: Path, percent: float, group: str
) -> None:
    """Anonymous checks fire the trigger; then the person logs in (their older account survives the
    merge) and applies: one conversion, under the survivor's id, in the exposure's group."""
    t = at("2026-03-01T09:00:00Z")
    day = 86_400_000
    msgs: list[dict[str, object]] = [
        {
            "type": "identify",
            "userId": "kim",
            "messageId": "kim-id",
            "timestamp": _iso(t),
            "traits": {"email": "kim@example.com"},
        },
    ]
    for k in range(3):
        msgs.append(
            {
                "type": "track",
                "event": "Loan Eligibility Checked",
                "anonymousId": "a-kim",
                "messageId": f"chk{k}",
                "timestamp": _iso(t + (k + 1) * day),
                "context": {
                    "device": {"id": "dev-kim"},
                    "location": {"country": "US"},
                    "consent": {"categoryPreferences": {"marketing": True}},
                },
            }
        )
    msgs.append(
        {
            "type": "identify",
            "userId": "kim",
            "anonymousId": "a-kim",
            "messageId": "login",
            "timestamp": _iso(t + 4 * day),
        }
    )
    msgs.append(
        {
            "type": "track",
            "event": "Loan Application Submitted",
            "userId": "kim",
            "messageId": "apply",
            "timestamp": _iso(t + 5 * day),
        }
    )
    s = Settings(rules=("loan_eligibility_repeat",), policy_file=_policy(tmp_path, percent))
    res = asyncio.run(run_journey(msgs, s))
    (d,) = _loads(res.decisions)
    assert d["outcome"] == ("activated" if group == "treated" else "holdout")
    created = {
        c["messageId"]: c["profileId"] for c in _loads(res.identity_changes) if c["change"] == "created"
    }
    assert d["profileId"] == created["chk0"]  # the anonymous profile was exposed
    (c,) = _loads(res.conversions)
    assert c["group"] == group and c["profileId"] == created["kim-id"]  # the survivor converted
    assert c["triggerId"] == d["triggerId"] and c["messageId"] == "apply"
    assert c["lagSeconds"] == 2 * 86_400


def test_a_conversion_after_the_window_does_not_count(tmp_path: Path) -> None:
    t = at("2026-03-01T09:00:00Z")
    day = 86_400_000
    msgs: list[dict[str, object]] = [
        {
            "type": "identify",
            "userId": "lee",
            "messageId": "lee-id",
            "timestamp": _iso(t),
            "traits": {"email": "lee@example.com"},
            "context": {"location": {"country": "US"}},
        },
    ]
    msgs += [
        {
            "type": "track",
            "event": "Loan Eligibility Checked",
            "userId": "lee",
            "messageId": f"c{k}",
            "timestamp": _iso(t + (k + 1) * day),
        }
        for k in range(3)
    ]
    fired = t + 3 * day
    msgs += [  # 2 days is the window: one second too late, then (too late as well) a day later
        {
            "type": "track",
            "event": "Loan Application Submitted",
            "userId": "lee",
            "messageId": "late",
            "timestamp": _iso(fired + 2 * day + 1000),
        },
        {
            "type": "track",
            "event": "Loan Application Submitted",
            "userId": "lee",
            "messageId": "later",
            "timestamp": _iso(fired + 3 * day),
        },
    ]
    s = Settings(rules=("loan_eligibility_repeat",), policy_file=_policy(tmp_path, 0, window_days=2))
    res = asyncio.run(run_journey(msgs, s))
    assert [orjson.loads(d)["outcome"] for d in res.decisions] == ["activated"]  # US: opt-out regime
    assert res.conversions == []
    # the same journey with the application on the window's last millisecond counts
    msgs[-2]["timestamp"] = _iso(fired + 2 * day)
    res = asyncio.run(run_journey(msgs, s))
    assert [orjson.loads(c)["messageId"] for c in res.conversions] == ["late"]


def _iso(ms: int) -> str:
    from streams.intake import ms_to_iso

    return ms_to_iso(ms)


def test_a_held_out_trigger_counts_against_the_frequency_cap_like_an_activation(tmp_path: Path) -> None:
    """Four abandoned carts in four days, everyone held out: the first three would have gone out
    on email (cap: 3 in 7 days), the fourth is refused email for the cap, exactly as if all had
    been sent (it is still held out: ads would carry it)."""
    path = tmp_path / "policy.toml"
    path.write_text(
        policy_file(tmp_path).read_text().split("\n[measurement]")[0]
        + "\n[measurement.rules.cart_abandoned]\nholdout_percent = 100\n"
        + 'conversion_events = ["Order Completed"]\n'
    )
    t = at("2026-03-01T09:00:00Z")
    day = 86_400_000
    msgs: list[dict[str, object]] = [
        {
            "type": "identify",
            "userId": "max",
            "messageId": "max-id",
            "timestamp": _iso(t),
            "traits": {"email": "max@example.com"},
            "context": {
                "location": {"country": "US"},
                "consent": {"categoryPreferences": {"marketing": True}},
            },
        },
    ]
    msgs += [
        {
            "type": "track",
            "event": "Product Added",
            "userId": "max",
            "messageId": f"cart{k}",
            "timestamp": _iso(t + k * day + 60_000),
            "properties": {"product_id": f"sku{k}", "price": 10},
        }
        for k in range(4)
    ]
    s = Settings(rules=("cart_abandoned",), policy_file=path)
    res = asyncio.run(run_journey(msgs, s, until=t + 5 * day))
    decisions = sorted(_loads(res.decisions), key=lambda d: str(d["time"]))
    assert [d["outcome"] for d in decisions] == ["holdout"] * 4
    email = [
        [r["reason"] for r in d["refused"] if r["channel"] == "email"]  # type: ignore[attr-defined]
        + [a["channel"] for a in d["allowed"] if a["channel"] == "email"]  # type: ignore[attr-defined]
        for d in decisions
    ]
    assert email == [["email"], ["email"], ["email"], ["frequency_cap"]]
    assert res.activations == []

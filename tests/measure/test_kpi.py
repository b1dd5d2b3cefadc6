"""Program KPIs: the per-event counters (through the pipeline's stages) and the exact report
from the repartition topic's records (against a hand count)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from streams.intake import ms_to_iso
from streams.measure.kpi_report import kpis, render
from streams.settings import Settings
from streams.testing import at, run_journey

DAY = 86_400_000
T0 = at("2026-01-01T00:00:00Z")


def _counts() -> dict[str, float]:
    out: dict[str, float] = {}
    for name, label, values in (
        ("cxstream_events_identified_total", "by", ("event", "profile", "anonymous")),
        (
            "cxstream_profile_milestones_total",
            "milestone",
            ("known", "cross_channel", "first_purchase", "repeat_purchase"),
        ),
        ("cxstream_customer_returns_total", "gap", ("under_30d", "30d_to_90d", "over_90d", "after_churn")),
    ):
        for v in values:
            out[v] = REGISTRY.get_sample_value(name, {label: v}) or 0.0
    return out


def _seg(call: str, ts: int, **kw: Any) -> dict[str, Any]:
    return {"type": call, "timestamp": ms_to_iso(ts), **kw}


def test_the_counters_follow_one_person_through_the_pipeline() -> None:
    msgs = [
        _seg("page", T0, anonymousId="a1", messageId="m1", context={"channel": "web"}),  # anonymous
        _seg(
            "identify", T0 + 1000, anonymousId="a1", userId="u1", messageId="m2", context={"channel": "web"}
        ),
        _seg("page", T0 + 2000, anonymousId="a1", messageId="m3", context={"channel": "web"}),  # via profile
        _seg(
            "track",
            T0 + 10 * DAY,
            userId="u1",
            event="Order Completed",
            messageId="m4",
            properties={"total": 10},
            context={"channel": "app"},
        ),  # second channel, first purchase
        _seg(
            "track",
            T0 + 50 * DAY,
            userId="u1",
            event="Order Completed",
            messageId="m5",
            properties={"total": 12},
            context={"channel": "pos"},
        ),  # repeat, after 40 days
        _seg(
            "track",
            T0 + 200 * DAY,
            userId="u1",
            event="Survey Answered",
            messageId="m6",
            properties={"survey": "nps", "score": 9},
            context={"channel": "email"},
        ),  # back after churn
    ]
    before = _counts()
    res = asyncio.run(run_journey(msgs, Settings(rules=("inactive_45d",))))
    assert res.deadletters == 0, "a Survey Answered event is an ordinary track event"
    after = _counts()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {
        "event": 4,
        "profile": 1,
        "anonymous": 1,
        "known": 1,
        "cross_channel": 1,
        "first_purchase": 1,
        "repeat_purchase": 1,
        "under_30d": 2,
        "30d_to_90d": 1,
        "over_90d": 1,
        "after_churn": 1,
    }


def _ev(
    pid: str,
    mid: str,
    ts: int,
    *,
    call: str = "track",
    name: str | None = None,
    channel: str = "web",
    ids: list[list[str]] | None = None,
    **props: Any,
) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "messageId": mid,
        "call": call,
        "ts": ts,
        "channel": channel,
        "identifiers": ids or [["anonymous_id", f"a-{pid}"]],
    }
    if name:
        ev["name"] = name
    if props:
        ev["properties"] = props
    return {"k": "ev", "pid": pid, "ev": ev, "rx": 0}


def _decision(pid: str, rule: str, ts: int, outcome: str, kind: str = "", **ctx: Any) -> dict[str, Any]:
    return {
        "profileId": pid,
        "rule": {"name": rule, "version": 1},
        "time": ms_to_iso(ts),
        "outcome": outcome,
        "type": f"cx.trigger.{kind or rule}",
        "context": ctx,
    }


def test_the_kpi_report_matches_a_hand_count() -> None:
    now = T0 + 200 * DAY
    user = [["user_id", "x"]]
    profiled = [
        {"k": "wm", "src": 0, "wm": now},
        # A: known, web + app, two orders, active 10 days ago; answered the survey twice
        _ev("A", "a1", T0, ids=user),
        _ev("A", "a2", now - 20 * DAY, name="Order Completed", channel="app"),
        _ev("A", "a3", now - 10 * DAY, name="Order Completed"),
        _ev("A", "a3", now - 10 * DAY, name="Order Completed"),  # processed twice: one event
        _ev("A", "a4", now - 5 * DAY, name="Survey Answered", survey="nps", score=9),
        # B: anonymous, then merged into C (known, email); active 60 days ago; one order
        _ev("B", "b1", now - 100 * DAY, channel="email"),
        _ev("C", "c1", now - 60 * DAY, name="Order Completed", ids=user, channel="pos"),
        {"k": "merge", "pid": "B", "into": "C", "ts": now - 60 * DAY},
        {"k": "merge", "pid": "B", "into": "C", "ts": now - 60 * DAY},  # announced again
        _ev("C", "b2", now - 59 * DAY, call="identify", channel="unknown"),  # not activity, no channel
        _ev("C", "c2", now - 2 * DAY, name="Survey Answered", survey="nps", score=3, channel="unknown"),
        # D: known, quiet for 120 days: churned
        _ev("D", "d1", now - 120 * DAY, call="page", ids=user),
        # E: anonymous, one web page now (the latest event: "now")
        _ev("E", "e1", now, call="page"),
        # F: erased
        _ev("F", "f1", now - DAY, ids=user, channel="app"),
        {"k": "erase", "pid": "F"},
    ]
    decisions = [
        _decision("A", "segments", now - 30 * DAY, "activated", "segment_entered", segment="vip"),
        _decision("A", "cart_abandoned", now - 7 * DAY, "holdout"),
        _decision("B", "cart_abandoned", now - 80 * DAY, "activated"),  # B is C now
        _decision("A", "segments", now - 6 * DAY, "suppressed", "segment_exited", segment="vip"),
        _decision("C", "segments", now - 70 * DAY, "suppressed", "segment_entered", segment="vip"),
    ]
    k = kpis(profiled, decisions, churn_days=90)
    assert k["asOf"] == now
    assert (k["people"], k["customers"]) == (4, 3)  # A, C(+B), D, E; F erased
    # events: A 4 (a1-a4), C 4 (b1, c1, b2, c2), D 1 known; E 1 anonymous -> 9 of 10
    assert k["knownEventShare"] == pytest.approx(9 / 10)
    # channels: A web+app, C email+pos, D web, E web -> 2 of 4
    assert k["crossChannelReach"] == pytest.approx(2 / 4)
    # last activity: A now-5d, C now-2d, D now-120d -> 30 days: A, C; 90 days: A, C
    assert k["active30dShare"] == pytest.approx(2 / 3) and k["active90dShare"] == pytest.approx(2 / 3)
    assert k["churned"] == 1  # D
    assert k["repeatPurchaseRate"] == pytest.approx(1 / 2)  # A 2 orders, C 1
    nps = k["surveys"]["nps"]
    assert nps["answers"] == 2 and nps["meanScore"] == pytest.approx(6.0)
    # A answered after leaving vip (now-6d < now-5d): none; C entered vip as B's survivor
    assert nps["bySegment"] == {
        "(none)": {"answers": 1, "meanScore": 9.0},
        "vip": {"answers": 1, "meanScore": 3.0},
    }
    assert nps["byRuleExposure"]["cart_abandoned"] == {
        "holdout": {"answers": 1, "meanScore": 9.0},
        "treated": {"answers": 1, "meanScore": 3.0},
    }
    text = render(k)
    assert "cross-channel reach (2+)     50.0%" in text and "Survey nps: 2 answers, mean score 6.00" in text
    assert orjson.loads(orjson.dumps(k)) == k  # JSON-ready

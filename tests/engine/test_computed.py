"""Computed traits: what the events imply, exactly once, whatever the order, merges and replays."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.base import Outcome, Rule, RuleContext, TriggerSpec
from streams.api.lookup import segments_of
from streams.constants import DAY_MS, HOUR_MS
from streams.engine import computed, recent
from streams.model import Event, JSONDict
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.state import ProfileState
from streams.testing import absorb, at, event, page, run_rule, segment, track

T0 = at("2026-04-01")


def _fold(events: list[Event]) -> JSONDict:
    c: JSONDict = {}
    for e in events:
        c = computed.update(c, e)
    return c


def test_orders_revenue_and_times() -> None:
    c = _fold(
        [
            page(T0, channel="web"),
            track("Order Completed", T0 + DAY_MS, properties={"total": 19.99, "revenue": 15}, channel="pos"),
            track("Order Completed", T0 + 3 * DAY_MS, properties={"revenue": 80}, channel="web"),
            track("Order Completed", T0 + 2 * DAY_MS, properties={"total": "12"}, channel="app"),  # late
            event("identify", T0 + 5 * DAY_MS, channel="crm"),  # not activity
        ]
    )
    assert c["orders"] == 3
    assert c["rev"] == 1999 + 8000  # total wins over revenue; a string is no amount
    assert (c["first"], c["last"]) == (T0 + DAY_MS, T0 + 3 * DAY_MS)
    assert c["act"] == T0 + 3 * DAY_MS
    assert c["ch"] == {
        "web": T0 + 3 * DAY_MS,
        "pos": T0 + DAY_MS,
        "app": T0 + 2 * DAY_MS,
        "crm": T0 + 5 * DAY_MS,
    }


@pytest.mark.parametrize(
    ("props", "minor"),
    [
        ({"total": 19.99}, 1999),  # hundredths (19.99 * 100 is 1998.99... as a float: rounded)
        ({"total": -5, "revenue": 7}, 700),  # a negative total is no amount: revenue
        ({"total": float("nan")}, 0),
        ({"total": True}, 0),
        ({"total": 1e300}, 10**15),  # bounded
        ({}, 0),
    ],
)
def test_order_amount(props: JSONDict, minor: int) -> None:
    assert computed.order_amount(props) == minor


def test_view_derives_at_read_time() -> None:
    c = _fold(
        [
            track("Order Completed", T0, properties={"total": 300}, channel="pos"),
            track("Order Completed", T0 + DAY_MS, properties={"total": 300}, channel="web"),
            page(T0 + 2 * DAY_MS, channel="email"),
        ]
    )
    now = T0 + 40 * DAY_MS + HOUR_MS
    v = computed.view(c, now)
    assert v["orderCount"] == 2 and v["revenue"] == 600.0 and v["averageOrderValue"] == 300.0
    assert v["daysSinceLastActivity"] == 38
    assert v["channelsLast30Days"] == {}  # all 38+ days old
    # recency 39 days (<= 90: 4), 2 orders (2), 600 (>= 500: 4)
    assert v["rfm"] == {"recency": 4, "frequency": 2, "monetary": 4, "score": "424"}
    fresh = computed.view(c, T0 + 3 * DAY_MS)
    assert list(fresh["channelsLast30Days"]) == ["email", "web", "pos"]  # most recent first
    assert computed.view({}, now)["rfm"] is None
    assert computed.view({}, now)["averageOrderValue"] is None


def test_channels_are_bounded() -> None:
    c = _fold([page(T0 + i, channel=f"ch{i}") for i in range(computed.MAX_CHANNELS + 5)])
    assert len(c["ch"]) == computed.MAX_CHANNELS
    assert "ch0" not in c["ch"] and f"ch{computed.MAX_CHANNELS + 4}" in c["ch"]  # the oldest went


_events = st.lists(
    st.builds(
        lambda call, name, ts, total, ch: event(
            call, ts, name=name if call == "track" else None, properties={"total": total}, channel=ch
        ),
        st.sampled_from(["track", "page", "identify", "screen"]),
        st.sampled_from(["Order Completed", "Product Viewed"]),
        st.integers(T0, T0 + 400 * DAY_MS),
        st.floats(0, 10_000, allow_nan=False),
        st.sampled_from(["web", "app", "pos", "email", "crm"]),
    ),
    max_size=30,
)


@given(_events, _events)
@settings(max_examples=200, deadline=None)
def test_merge_equals_one_history(a: list[Event], b: list[Event]) -> None:
    """Two profiles' traits merged == one profile that saw both histories, in any order."""
    one = _fold(a + b)
    assert computed.merge(_fold(a), _fold(b)) == one
    assert computed.merge(_fold(b), _fold(a)) == one
    assert _fold(list(reversed(a + b))) == one


class Sees(Rule):
    """Fires with what it sees in ``ctx.computed``, and tries to change it."""

    name = "sees"
    events: ClassVar[frozenset[str]] = frozenset({"Order Completed"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        seen = {"orders": ctx.computed.get("orders"), "rev": ctx.computed.get("rev")}
        return Outcome(state, [TriggerSpec(event.message_id, event.ts, seen)])


class Meddles(Rule):
    name = "meddles"
    events: ClassVar[frozenset[str]] = frozenset({"Order Completed"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        ctx.computed["orders"] = 999  # type: ignore[index]  # read-only: raises
        return Outcome(state)


def test_rules_see_the_event_counted_and_cannot_change_it() -> None:
    orders = [track("Order Completed", T0 + i, properties={"total": 10}) for i in range(2)]
    run = run_rule(Sees(), orders)
    assert [t.context for t in run.triggers] == [{"orders": 1, "rev": 1000}, {"orders": 2, "rev": 2000}]
    bad = run_rule(Meddles(), orders)
    assert [f.exception for f in bad.failures] == ["TypeError", "TypeError"]
    assert bad.state.computed["orders"] == 2


def test_run_rule_merge_combines_computed() -> None:
    other = run_rule(Sees(), [track("Order Completed", T0, properties={"total": 5}, user_id="u2")])
    run = run_rule(Sees(), [track("Order Completed", T0 + 1, properties={"total": 7}), absorb(other)])
    assert run.state.computed["orders"] == 2 and run.state.computed["rev"] == 1200


def test_recent_triggers_bounded_and_merged() -> None:
    s = ProfileState()
    for i in range(recent.KEEP + 5):
        recent.record(s, {"id": f"t{i}", "time": T0 + i})
    recent.record(s, {"id": f"t{recent.KEEP + 4}", "time": T0 + recent.KEEP + 4})  # redelivered: once
    assert [e["id"] for e in s.recent] == [f"t{i}" for i in range(5, recent.KEEP + 5)]
    merged = recent.merge([{"id": "a", "time": T0 + 100}], [{"id": "b", "time": T0 + 1}])
    assert [e["id"] for e in merged] == ["b", "a"]


# ------------------------------------------------------------------ through the pipeline

RULES = ("loan_eligibility_repeat", "segments")


def _journey(user: str = "u1", anon: str = "a1") -> list[JSONDict]:
    web = {"channel": "web"}
    msgs = [
        segment("page", T0, anonymousId=anon, name="Home", context=web),
        segment(
            "track",
            T0 + HOUR_MS,
            event="Order Completed",
            anonymousId=anon,
            properties={"total": 30.5},
            context={"channel": "pos"},
        ),
        segment("identify", T0 + 2 * HOUR_MS, anonymousId=anon, userId=user, context={"channel": "crm"}),
    ]
    for i in range(3):
        msgs.append(
            segment(
                "track",
                T0 + DAY_MS + i * HOUR_MS,
                event="Order Completed",
                userId=user,
                properties={"revenue": 10 + i},
                context={"channel": "web"},
            )
        )
        msgs.append(
            segment("track", T0 + 2 * DAY_MS + i, event="Loan Eligibility Checked", userId=user, context=web)
        )
    return msgs


async def _states(messages: list[JSONDict], *, twice: bool = False) -> dict[str, ProfileState]:
    pipe = LocalPipeline(Settings(rules=RULES, partitions=1, clock="event"))
    raw = [orjson.dumps(m) for m in messages]
    await pipe.feed(raw)
    if twice:  # redelivered whole (a producer retry): every messageId is a duplicate
        await pipe.feed(raw)
    await pipe.finish()
    data: dict[str, bytes] = pipe.runtime.stores.states.data  # type: ignore[attr-defined]
    return {p: ProfileState.from_json(v) for p, v in data.items()}


def _live(states: dict[str, ProfileState]) -> list[ProfileState]:
    return [s for s in states.values() if not s.merged_into]


def test_journey_computed_exactly_once_and_on_replay() -> None:
    msgs = _journey()
    first = _live(asyncio.run(_states(msgs)))
    assert len(first) == 1
    c = first[0].computed
    assert c["orders"] == 4 and c["rev"] == 3050 + 1000 + 1100 + 1200
    assert c["first"] == T0 + HOUR_MS and c["last"] == T0 + DAY_MS + 2 * HOUR_MS
    assert c["act"] == T0 + 2 * DAY_MS + 2
    assert set(c["ch"]) == {"web", "pos", "crm"}
    # the same input again, and the same input delivered twice: the same values
    again = _live(asyncio.run(_states(msgs)))
    doubled = _live(asyncio.run(_states(msgs, twice=True)))
    assert again[0].computed == c == doubled[0].computed
    # the recent triggers: the segment entered (3 orders) and the loan trigger, once each; no
    # consent was given (opt-in by default): suppressed, and the reasons say so
    kinds = [(t["rule"], t["outcome"]) for t in first[0].recent]
    assert sorted(kinds) == [("loan_eligibility_repeat", "suppressed"), ("segments", "suppressed")]
    assert {r["reason"] for t in first[0].recent for r in t["refused"]} >= {"no_consent"}
    assert first[0].recent == again[0].recent == doubled[0].recent
    assert "frequent_buyer" in segments_of(first[0])


def test_merged_profiles_equal_one_history() -> None:
    """Two people's histories (web cookie, store card) merged by a later event == one profile."""
    card: dict[str, Any] = {"externalIds": [{"id": "L-1", "type": "loyalty_id"}]}
    split = [
        segment("page", T0, anonymousId="a9", context={"channel": "web"}),
        segment(
            "track",
            T0 + 1,
            event="Order Completed",
            anonymousId="a9",
            properties={"total": 20},
            context={"channel": "web"},
        ),
        segment(
            "track",
            T0 + 2,
            event="Order Completed",
            anonymousId="pos-1",
            properties={"total": 99.99},
            context={"channel": "pos", **card},
        ),
        # the link: the web cookie signs in with the card
        segment("identify", T0 + HOUR_MS, anonymousId="a9", context={"channel": "web", **card}),
    ]
    states = asyncio.run(_states(split))
    live = _live(states)
    assert len(live) == 1 and len(states) == 2  # one absorbed, one survivor
    # the same events as one person from the start
    same = [dict(m, anonymousId="a9", context={**m["context"], **card}) for m in split]
    one = _live(asyncio.run(_states(same)))
    assert live[0].computed == one[0].computed
    assert live[0].computed["orders"] == 2 and live[0].computed["rev"] == 2000 + 9999


def test_held_out_trigger_is_recent_without_channels(tmp_path: Path) -> None:
    """A trigger in the rule's holdout (contract section 12) is shown as ``holdout``, on no channel."""
    example = Path(__file__).parents[2] / "deploy" / "policy.example.toml"
    policy = tmp_path / "policy.toml"
    policy.write_text(
        example.read_text().split("\n# Measurement")[0]
        + "\n[measurement.rules.loan_eligibility_repeat]\nholdout_percent = 100\n"
    )
    consent = {"consent": {"categoryPreferences": {"marketing": True}}}
    web: JSONDict = {"channel": "web"}
    email = {"email": "u7@example.com"}
    msgs = [segment("identify", T0, userId="u7", traits=email, context={**web, **consent})]
    msgs += [
        segment("track", T0 + i + 1, event="Loan Eligibility Checked", userId="u7", context=web)
        for i in range(3)
    ]

    async def run() -> list[ProfileState]:
        pipe = LocalPipeline(Settings(rules=RULES, partitions=1, clock="event", policy_file=policy))
        await pipe.feed([orjson.dumps(m) for m in msgs])
        await pipe.finish()
        data: dict[str, bytes] = pipe.runtime.stores.states.data  # type: ignore[attr-defined]
        return [ProfileState.from_json(v) for v in data.values()]

    (state,) = asyncio.run(run())
    (t,) = state.recent
    assert (t["rule"], t["outcome"], t["channels"]) == ("loan_eligibility_repeat", "holdout", [])

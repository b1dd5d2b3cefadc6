"""Property, on the whole pipeline: raw Segment messages with consent in all three forms, identity
merges and loan checks; no activation names a channel its profile had not consented to at that
moment, and every suppressed decision carries its reasons.

People are anonymous devices with an email each; a "link" is an ``identify`` of one device
with another person's email, which makes intake merge the two profiles. The expected consent
uses the same independent merge-tree model as ``test_invariants`` (loan decisions are made
when their check is processed, so the profile then is the group of people linked so far).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from consent.model import Node, allowed_by_model
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.consent.policy import DEFAULT_POLICY
from streams.constants import DAY_MS, HOUR_MS
from streams.intake.consent import CONSENT_EVENT
from streams.intake.normalize import parse_time_ms
from streams.model import JSONDict
from streams.sinks.records import trigger_id
from streams.testing import at, run_journey, segment

PEOPLE = 3
PURPOSES = ("marketing", "advertising", "personalization")
T0 = at("2026-03-02T09:00:00Z")
RULE = "loan_eligibility_repeat"
CHANNELS = ("email", "push", "call_center")

person = st.integers(0, PEOPLE - 1)
statement = st.dictionaries(st.sampled_from(PURPOSES), st.booleans(), min_size=1, max_size=3)
form = st.sampled_from(["context", "event", "rudderstack"])
op = st.one_of(
    st.tuples(st.just("consent"), person, statement, form),
    st.tuples(st.just("check"), person),
    st.tuples(st.just("check"), person),
    st.tuples(st.just("link"), person, person),
)
stream = st.lists(st.tuples(st.sampled_from([HOUR_MS, DAY_MS, 2 * DAY_MS]), op), min_size=1, max_size=25)


def _context(p: int, country: str | None) -> JSONDict:
    ctx: JSONDict = {"channel": "web", "device": {"id": f"dev-{p}"}}
    if country:
        ctx["location"] = {"country": country}
    return ctx


def _consent(ts: int, p: int, said: dict[str, bool], how: str, ctx: JSONDict) -> JSONDict:
    anon = f"anon-{p}"
    if how == "context":
        return segment(
            "page", ts, anonymousId=anon, context={**ctx, "consent": {"categoryPreferences": said}}
        )
    if how == "event":
        props = {"categoryPreferences": said}
        return segment("track", ts, anonymousId=anon, event=CONSENT_EVENT, properties=props, context=ctx)
    cm = {
        "allowedConsentIds": [k for k, v in said.items() if v],
        "deniedConsentIds": [k for k, v in said.items() if not v],
    }
    return segment("page", ts, anonymousId=anon, context={**ctx, "consentManagement": cm})


@settings(max_examples=100, deadline=None)
@given(stream, st.sampled_from(["DE", "US", "GB", None]))
def test_no_activation_without_consent_through_the_whole_pipeline(
    ops: list[tuple[int, tuple[Any, ...]]], country: str | None
) -> None:
    root = {p: p for p in range(PEOPLE)}
    nodes = {p: Node(person=p) for p in range(PEOPLE)}
    ts = T0
    msgs = [
        segment(
            "identify",
            ts,
            anonymousId=f"anon-{p}",
            traits={"email": f"p{p}@example.com"},
            context=_context(p, country),
        )
        for p in range(PEOPLE)
    ]
    expect: dict[str, Node] = {}  # trigger id of each check -> the profile's merge tree then
    for i, (dt, o) in enumerate(ops):
        ts += dt
        kind, p = o[0], o[1]
        ctx = _context(p, country)
        if kind == "consent":
            msgs.append(_consent(ts, p, o[2], o[3], ctx))
            for purpose, granted in o[2].items():
                nodes[root[p]].said[purpose].append((ts, i, granted))
        elif kind == "check":
            m = segment("track", ts, anonymousId=f"anon-{p}", event="Loan Eligibility Checked", context=ctx)
            msgs.append(m)
            expect[trigger_id(RULE, 1, m["messageId"])] = nodes[root[p]]
        else:
            q = o[2]
            msgs.append(
                segment(
                    "identify",
                    ts,
                    anonymousId=f"anon-{p}",
                    traits={"email": f"p{q}@example.com"},
                    context=ctx,
                )
            )
            a, b = root[p], root[q]
            if a != b:
                nodes[a] = Node(children=(nodes[a], nodes.pop(b)))
                root = {x: a if r == b else r for x, r in root.items()}

    res = asyncio.run(run_journey(msgs))
    assert res.deadletters == 0
    decisions = [d for d in map(orjson.loads, res.decisions) if d["rule"]["name"] == RULE]
    activations = {
        a["id"]: a for a in map(orjson.loads, res.activations) if a["data"]["rule"]["name"] == RULE
    }
    region = DEFAULT_POLICY.region_of(country)
    for d in decisions:
        node = expect[d["id"]]
        t = parse_time_ms(d["time"])
        assert d["region"] == region and d["policyVersion"] == DEFAULT_POLICY.version
        decided = [a["channel"] for a in d["allowed"]] + [r["channel"] for r in d["refused"]]
        assert sorted(decided) == sorted(CHANNELS)
        for r in d["refused"]:
            assert r["reason"] and r["detail"]
        if d["outcome"] == "suppressed":
            assert d["allowed"] == [] and d["refused"] and d["id"] not in activations
        else:
            act = activations[d["id"]]
            assert [c["channel"] for c in act["data"]["channels"]] == [a["channel"] for a in d["allowed"]]
            assert set(act["data"]["consent"]) == {a["channel"] for a in d["allowed"]}
        for ch in CHANNELS:
            ok = all(
                allowed_by_model(node, DEFAULT_POLICY, region, p, t)
                for p in {DEFAULT_POLICY.channels[ch], "marketing"}
            )
            if ch in {a["channel"] for a in d["allowed"]}:
                assert ok, (ch, d)
                for dest in next(a for a in d["allowed"] if a["channel"] == ch)["destinations"]:
                    assert {region, "*"} & set(DEFAULT_POLICY.destinations[dest].regions)
            else:
                reason = next(r["reason"] for r in d["refused"] if r["channel"] == ch)
                assert (reason == "no_consent") == (not ok), (ch, reason, d)
    assert set(activations) <= {d["id"] for d in decisions}

"""Loan journeys with conversions, for the measurement tests: who converts is chosen by a seeded
random draw, independently of the holdout (which hashes the profile id the pipeline assigns)."""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.intake import ms_to_iso

DAY = 86_400_000
CONVERSION = "Loan Application Submitted"
WINDOW_DAYS = 7
HOLDOUT_PERCENT = 30

POLICY_TAIL = f"""
[measurement]
holdout_percent = 5

[measurement.rules.loan_eligibility_repeat]
holdout_percent = {HOLDOUT_PERCENT}
conversion_events = ["{CONVERSION}"]
conversion_window_days = {WINDOW_DAYS}
"""


def policy_file(tmp: Path) -> Path:
    """The shipped example policy plus a ``[measurement]`` table."""
    example = Path(__file__).parents[2] / "deploy" / "policy.example.toml"
    text = example.read_text()
    text = text.split("\n# Measurement")[0]  # the example's (commented) table: the test's instead
    path = tmp / "policy.toml"
    path.write_text(text + POLICY_TAIL)
    tomllib.loads(path.read_text())
    return path


@dataclass
class Plan:
    messages: list[dict[str, Any]] = field(default_factory=list)
    #: user -> messageId of the event that should count as the conversion
    converts: dict[str, str] = field(default_factory=dict)
    #: users whose only conversion events are outside the window (before the trigger, or late)
    outside: set[str] = field(default_factory=set)
    users: list[str] = field(default_factory=list)
    #: user -> NPS score answered (``Survey Answered``) two days after the trigger
    scores: dict[str, int] = field(default_factory=dict)


def plan(people: int, start: int, seed: int = 17) -> Plan:
    """Each person: identify (email, consent), three loan checks a day apart (the third fires
    ``loan_eligibility_repeat``), then by a seeded draw: convert within the window (about 40%,
    sometimes twice: only the first counts), convert only too late or only before the trigger
    (about 20%), or not at all. Messages are sorted by time (a replay in time order)."""
    rnd = random.Random(seed)
    p = Plan()
    for i in range(people):
        u = f"u{i:04d}"
        p.users.append(u)
        t0 = start + rnd.randrange(0, 30 * DAY)
        p.messages.append(
            {
                "type": "identify",
                "messageId": f"{u}-id",
                "userId": u,
                "timestamp": ms_to_iso(t0),
                "traits": {"email": f"{u}@example.com"},
                "context": {
                    "channel": "web",
                    "location": {"country": "US"},
                    "consent": {"categoryPreferences": {"marketing": True}},
                },
            }
        )
        for k in range(3):
            p.messages.append(
                {
                    "type": "track",
                    "event": "Loan Eligibility Checked",
                    "messageId": f"{u}-check-{k}",
                    "userId": u,
                    "timestamp": ms_to_iso(t0 + (k + 1) * DAY),
                    "properties": {"product": "personal_loan", "amount": 12000},
                    "context": {"channel": "web"},
                }
            )
        fired = t0 + 3 * DAY
        if rnd.random() < 0.3:
            p.scores[u] = rnd.randint(0, 10)
            p.messages.append(
                {
                    "type": "track",
                    "event": "Survey Answered",
                    "messageId": f"{u}-nps",
                    "userId": u,
                    "timestamp": ms_to_iso(fired + 2 * DAY),
                    "properties": {"survey": "nps", "score": p.scores[u]},
                    "context": {"channel": "email"},
                }
            )
        draw = rnd.random()
        if draw < 0.4:
            first = fired + rnd.randrange(60_000, WINDOW_DAYS * DAY)
            p.converts[u] = f"{u}-conv"
            p.messages.append(_conv(u, "conv", first))
            if rnd.random() < 0.3:  # a second application: not a second conversion
                p.messages.append(_conv(u, "conv2", min(first + DAY, fired + WINDOW_DAYS * DAY)))
        elif draw < 0.5:
            p.outside.add(u)
            p.messages.append(_conv(u, "late", fired + WINDOW_DAYS * DAY + rnd.randrange(60_000, 5 * DAY)))
        elif draw < 0.6:
            p.outside.add(u)
            p.messages.append(_conv(u, "early", t0 + DAY + 3_600_000))  # between checks: before the trigger
    p.messages.sort(key=lambda m: (m["timestamp"], m["messageId"]))
    return p


def _conv(u: str, tag: str, ts: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": CONVERSION,
        "messageId": f"{u}-{tag}",
        "userId": u,
        "timestamp": ms_to_iso(ts),
        "properties": {"product": "personal_loan"},
        "context": {"channel": "app"},
    }


@dataclass
class Outcome:
    group: dict[str, str]  # user -> treated | holdout
    conversions: dict[str, list[dict[str, Any]]]  # user -> conversion records


def outcome(
    p: Plan, decisions: list[dict[str, Any]], conversions: list[dict[str, Any]], created: list[dict[str, Any]]
) -> Outcome:
    """Map the pipeline's records back to the plan's users, checking each user got one decision."""
    user_of = {
        c["profileId"]: c["messageId"].removesuffix("-id") for c in created if c["change"] == "created"
    }
    group: dict[str, str] = {}
    for d in decisions:
        assert d["rule"]["name"] == "loan_eligibility_repeat"
        u = user_of[d["profileId"]]
        assert u not in group, f"{u} decided twice"
        assert d["outcome"] in ("activated", "holdout"), d["outcome"]
        group[u] = "treated" if d["outcome"] == "activated" else "holdout"
    conv: dict[str, list[dict[str, Any]]] = {}
    for c in conversions:
        conv.setdefault(user_of[c["profileId"]], []).append(c)
    return Outcome(group, conv)


def check(p: Plan, o: Outcome) -> dict[str, dict[str, int]]:
    """Every planned conversion recorded once with the right group, none outside the window;
    returns the hand count per group: {group: {triggers, conversions}}."""
    assert sorted(o.group) == sorted(p.users), "every person triggered once"
    assert sorted(o.conversions) == sorted(p.converts), "exactly the in-window converters converted"
    for u, recs in o.conversions.items():
        assert len(recs) == 1, f"{u} converted {len(recs)} times"
        (c,) = recs
        assert c["messageId"] == p.converts[u], "the first conversion event in the window counts"
        assert c["group"] == o.group[u]
        assert c["event"] == CONVERSION and c["rule"] == "loan_eligibility_repeat"
        assert 0 < c["lagSeconds"] <= WINDOW_DAYS * 86_400
    assert not (set(o.conversions) & p.outside)
    hand = {g: {"triggers": 0, "conversions": 0} for g in ("treated", "holdout")}
    for u, g in o.group.items():
        hand[g]["triggers"] += 1
        hand[g]["conversions"] += u in p.converts
    return hand


def binomial_range(n: int, pct: float, sds: float = 4.0) -> tuple[float, float]:
    """n*p +- ``sds`` standard deviations: a wrong share fails, chance alone (1 in ~16,000) does not."""
    mean = n * pct / 100
    sd = (n * pct / 100 * (1 - pct / 100)) ** 0.5
    return mean - sds * sd, mean + sds * sd

"""Property: no activation without consent, every suppression has a reason, EU data stays in EU destinations.

Random streams of consent flips, preference changes, loan checks, carts, orders and merges
drive the real :class:`~streams.engine.runner.Engine` (timers fired as the clock passes
them). The expected consent is computed here, independently, from the generated stream:

* a person's statement about a purpose holds from its event time until their next one;
* when two profiles merge, up to the merge a denial by either side wins (and a grant on one
  side with nothing on the other is a grant); statements made after the merge are the one
  merged person's, and the latest wins;
* nothing said means no in an opt-in region, yes in an opt-out one.

The model is in ``consent/model.py``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from consent.model import Node, allowed_by_model
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.cart_abandoned import CartAbandoned
from rules.loan_eligibility_repeat import LoanEligibilityRepeat
from streams.consent.decide import Reason, Verdict
from streams.consent.policy import DEFAULT_POLICY, Policy
from streams.constants import DAY_MS, HOUR_MS, MINUTE_MS
from streams.engine.effects import Fired
from streams.engine.runner import Engine
from streams.model import Identifier
from streams.state import ProfileState
from streams.testing import at, event

PURPOSES = ("marketing", "advertising", "personalization")
PEOPLE = 3
T0 = at("2026-03-02T09:00:00Z")


# ---------------------------------------------------------------- the generated stream

person = st.integers(0, PEOPLE - 1)
gap = st.sampled_from([MINUTE_MS, 20 * MINUTE_MS, HOUR_MS, 12 * HOUR_MS, DAY_MS, 2 * DAY_MS])
statement = st.dictionaries(st.sampled_from(PURPOSES), st.booleans(), min_size=1, max_size=3)
op = st.one_of(
    st.tuples(st.just("consent"), person, statement),
    st.tuples(st.just("check"), person),
    st.tuples(st.just("check"), person),
    st.tuples(st.just("cart"), person),
    st.tuples(st.just("order"), person),
    st.tuples(st.just("prefs"), person, st.none() | st.lists(st.sampled_from(["email", "push", "ads"]))),
    st.tuples(st.just("merge"), person, person),
)
stream = st.lists(st.tuples(gap, op), min_size=1, max_size=40)
country = st.sampled_from(["DE", "FR", "US", "GB", "BR", None])
merge_mode = st.sampled_from(["most_restrictive"])


def _ids(p: int) -> list[Identifier]:
    return [
        Identifier("email", f"p{p}@example.com"),
        Identifier("phone", f"+4915100000{p}"),
        Identifier("device_id", f"dev-{p}"),
    ]


@dataclass
class Harness:
    policy: Policy
    country: str | None
    engine: Engine = field(init=False)
    root: dict[int, int] = field(default_factory=lambda: {p: p for p in range(PEOPLE)})
    states: dict[int, ProfileState] = field(
        default_factory=lambda: {p: ProfileState() for p in range(PEOPLE)}
    )
    nodes: dict[int, Node] = field(default_factory=lambda: {p: Node(person=p) for p in range(PEOPLE)})
    #: root -> channel -> event ms of activations decided for that profile (merged along)
    acts: dict[int, dict[str, list[int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    checked: list[tuple[Fired, Node]] = field(default_factory=list)
    clock: int = T0

    def __post_init__(self) -> None:
        self.engine = Engine([LoanEligibilityRepeat(), CartAbandoned()], self.policy)

    def run(self, ops: list[tuple[int, tuple[Any, ...]]]) -> None:
        for i, (dt, o) in enumerate(ops):
            self.clock += dt
            self.step(i, self.clock, o)
            self.fire(self.clock)
        self.fire(self.clock + 30 * DAY_MS)

    def step(self, i: int, ts: int, o: tuple[Any, ...]) -> None:
        kind, p = o[0], o[1]
        r = self.root[p]
        kw: dict[str, Any] = dict(user_id=None, identifiers=_ids(p), country=self.country)
        if kind == "merge":
            self.merge(r, self.root[o[2]])
            return
        if kind == "consent":
            ev = event("identify", ts, consent=o[2], **kw)
            for purpose, granted in o[2].items():
                self.nodes[r].said[purpose].append((ts, i, granted))
        elif kind == "check":
            ev = event("track", ts, name="Loan Eligibility Checked", **kw)
        elif kind == "cart":
            ev = event("track", ts, name="Product Added", properties={"product_id": "p", "price": 5}, **kw)
        elif kind == "order":
            ev = event("track", ts, name="Order Completed", **kw)
        else:
            ev = event("identify", ts, traits={"preferred_channels": o[2]}, **kw)
        self.observe(r, self.engine.on_event(f"p{r}", self.states[r], ev).fired)

    def merge(self, a: int, b: int) -> None:
        if a == b:
            return
        survivor, absorbed = min(a, b), max(a, b)
        self.engine.merge(f"p{survivor}", self.states[survivor], self.states.pop(absorbed))
        self.nodes[survivor] = Node(children=(self.nodes[survivor], self.nodes.pop(absorbed)))
        for ch, stamps in self.acts.pop(absorbed, {}).items():
            self.acts[survivor][ch] += stamps
        for p, r in self.root.items():
            if r == absorbed:
                self.root[p] = survivor

    def fire(self, upto: int) -> None:
        while True:
            due = sorted((d, r, k) for r, s in self.states.items() for k, d in s.timers.items() if d <= upto)
            if not due:
                return
            d, r, key = due[0]
            rule, name = key.split("|", 1)
            eff = self.engine.on_timer(f"p{r}", self.states[r], f"p{r}|{rule}|{name}", d, {})
            self.observe(r, eff.fired)

    def observe(self, r: int, fired: list[Fired]) -> None:
        for f in fired:
            check_verdict(self.policy, f, self.nodes[r], self.country, self.acts[r])
            for a in f.verdict.allowed:
                self.acts[r][a.channel].append(f.spec.time)
            self.checked.append((f, self.nodes[r]))
        for s in self.states.values():
            for hist in s.consent.values():
                assert [e[1] for e in hist] == sorted(e[1] for e in hist)


def check_verdict(
    policy: Policy, f: Fired, node: Node, country: str | None, acts: dict[str, list[int]]
) -> None:
    v: Verdict = f.verdict
    t = f.spec.time
    region = policy.region_of(country)
    assert v.region == region
    # every channel of the rule is decided exactly once: allowed, or refused with a reason
    assert sorted([a.channel for a in v.allowed] + [r.channel for r in v.refused]) == sorted(f.rule.channels)
    for r in v.refused:
        assert isinstance(r.reason, Reason) and r.detail
    if not v.activated:
        assert v.refused
    for ch in f.rule.channels:
        needed = {policy.channels[ch], f.rule.purpose}
        consent_ok = all(allowed_by_model(node, policy, region, p, t) for p in needed)
        allowed = next((a for a in v.allowed if a.channel == ch), None)
        refused = next((r for r in v.refused if r.channel == ch), None)
        if allowed is not None:
            # THE invariant: no activation names a channel whose purposes were not allowed at t
            assert consent_ok, (ch, t, needed)
            assert set(allowed.basis) == needed
            # residency: every destination may receive this region's data
            for d in allowed.destinations:
                assert {region, "*"} & set(policy.destinations[d].regions), (d, region)
            cap = policy.frequency_caps.get(ch)
            if cap is not None:
                assert sum(1 for x in acts[ch] if t - cap.window_ms < x <= t) < cap.max
        else:
            assert refused is not None
            # and no suppression for want of consent when the model says it was there
            assert (refused.reason is Reason.NO_CONSENT) == (not consent_ok), (ch, refused, t)


@settings(max_examples=300, deadline=None)
@given(stream, country)
def test_no_activation_without_consent_at_its_event_time(
    ops: list[tuple[int, tuple[Any, ...]]], c: str | None
) -> None:
    Harness(DEFAULT_POLICY, c).run(ops)


def test_the_property_is_not_vacuous() -> None:
    """A fixed stream through the same harness: activations, suppressions, a merge, a timer."""
    h = Harness(DEFAULT_POLICY, "DE")
    ops: list[tuple[int, tuple[Any, ...]]] = [
        (0, ("consent", 0, {"marketing": True})),
        (HOUR_MS, ("consent", 1, {"marketing": False})),
        (HOUR_MS, ("cart", 0)),
        (HOUR_MS, ("check", 0)),
        (DAY_MS, ("check", 0)),
        (DAY_MS, ("check", 0)),  # activated: marketing granted
        (DAY_MS, ("merge", 1, 0)),  # person 1 said no before: most restrictive
        (HOUR_MS, ("cart", 1)),
        (HOUR_MS, ("order", 2)),
    ]
    h.run(ops)
    outcomes = [(f.rule.name, f.verdict.activated) for f, _ in h.checked]
    assert outcomes == [
        ("cart_abandoned", True),
        ("loan_eligibility_repeat", True),
        ("cart_abandoned", False),
    ]
    assert {r.reason for r in h.checked[-1][0].verdict.refused} == {Reason.NO_CONSENT}

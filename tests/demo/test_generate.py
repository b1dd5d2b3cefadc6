"""The bundled demo data set: it matches its generator, every line is a valid Segment call,
and the journeys hold the cases the demo is meant to show (contract section 9).

People are found the way identity resolution finds them: identifiers seen on the same
call belong to the same person (a small union-find over the file, independent of the
engine). Counts below are computed from the file, not taken from the generator.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from itertools import pairwise
from typing import Any

import pytest

from streams.demo import DEMO_FILE
from streams.demo.generate import generate, render

MINUTE = 60_000
DAY = 24 * 60 * MINUTE
START = "2026-01-05T00:00:00.000Z"
END = "2026-09-30T23:59:59.999Z"
END_MS = int(datetime(2026, 9, 30, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)

CHANNELS = {"web", "app", "email", "pos", "crm", "call_center"}
COUNTRIES = {"US", "DE", "FR", "GB", "NL", "ES"}
CONSENT_EVENT = "Segment Consent Preference Updated"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EMAIL_RE = re.compile(r"^[a-z0-9.]+@example\.(com|org|net)$")
#: Fictional phone ranges: NANP 555-01xx, Berlin 555, Ofcom drama 020 7946 0xxx, ARCEP 01 99 00.
PHONE_RE = re.compile(r"^(\+1\d{3}55501\d\d|\+4930555\d{4}|\+442079460\d{3}|\+3319900\d{4})$")
ACTIVITY = {"track", "page", "screen"}
CART = {"Product Added", "Checkout Started"}
ORDER = "Order Completed"

REQUIRED_PROPERTIES = {
    "Product Viewed": {"product_id", "sku", "name", "price", "category", "currency"},
    "Product Added": {"product_id", "sku", "name", "price", "quantity", "category", "currency"},
    "Checkout Started": {"value", "currency", "products"},
    "Order Completed": {"order_id", "total", "revenue", "currency", "products"},
    "Loan Eligibility Checked": {"product", "amount"},
    "Configuration Viewed": {"model", "configuration_id", "trim"},
    "Test Drive Requested": {"model", "dealer_id"},
    "Test Drive Completed": {"dealer_id"},
    "Lead Submitted": {"lead_type"},
    "Onboarding Started": {"product"},
    "Onboarding Step Completed": {"step", "step_index"},
    "Onboarding Completed": {"policy_id"},
}


# --------------------------------------------------------------------------- the file, read once
@cache
def events() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(line) for line in DEMO_FILE.read_text(encoding="utf-8").splitlines())


def ms(ev: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp() * 1000)


def identifiers(ev: dict[str, Any]) -> list[str]:
    """The identifiers of one call, ``type:value``, as contract section 6 lists them."""
    ctx = ev.get("context", {})
    traits = {**ctx.get("traits", {}), **ev.get("traits", {})}
    out = []
    if ev.get("userId"):
        out.append("user_id:" + ev["userId"])
    if ev.get("anonymousId"):
        out.append("anonymous_id:" + ev["anonymousId"])
    if ev["type"] == "alias":
        out.append("anonymous_id:" + ev["previousId"])
    if traits.get("email"):
        out.append("email:" + traits["email"].lower())
    if traits.get("phone"):
        out.append("phone:" + traits["phone"])
    if ctx.get("device", {}).get("id"):
        out.append("device_id:" + ctx["device"]["id"])
    for ext in ctx.get("externalIds", []):
        out.append(f"{ext['type']}:{ext['id']}")
    return out


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        for other in ids[1:]:
            a, b = self.find(ids[0]), self.find(other)
            if a != b:
                self.parent[b] = a


@cache
def people() -> dict[str, list[int]]:
    """Person (final union-find root) -> indexes of their calls, in file order."""
    uf = UnionFind()
    for ev in events():
        uf.union(identifiers(ev))
    out: dict[str, list[int]] = defaultdict(list)
    for i, ev in enumerate(events()):
        out[uf.find(identifiers(ev)[0])].append(i)
    return dict(out)


@cache
def person_of() -> dict[int, str]:
    return {i: pid for pid, idx in people().items() for i in idx}


def calls(pid: str) -> list[dict[str, Any]]:
    return [events()[i] for i in people()[pid]]


def person_ids(pid: str) -> set[str]:
    return {x for ev in calls(pid) for x in identifiers(ev)}


def known(pid: str) -> bool:
    return any(not x.startswith(("anonymous_id:", "device_id:")) for x in person_ids(pid))


def tracks(pid: str, name: str) -> list[dict[str, Any]]:
    return [ev for ev in calls(pid) if ev["type"] == "track" and ev["event"] == name]


# --------------------------------------------------------------------------- the file itself
def test_checked_in_file_is_the_generator_output() -> None:
    assert DEMO_FILE.read_bytes() == render(generate()).encode("utf-8"), (
        "streams/demo/journeys.jsonl drifted: run `python -m streams.demo.generate`"
    )


def test_generation_is_deterministic() -> None:
    assert render(generate(7)) == render(generate(7))
    assert render(generate(8)) != render(generate(7))


def test_size_and_scale() -> None:
    assert DEMO_FILE.stat().st_size < 3_000_000
    assert 4000 <= len(events()) <= 8000
    assert 250 <= len(people()) <= 350
    lines = DEMO_FILE.read_text(encoding="utf-8").splitlines()
    assert all(line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
               for line in lines)  # fmt: skip


def test_sorted_by_event_time_within_the_period() -> None:
    stamps = [ev["timestamp"] for ev in events()]
    assert stamps == sorted(stamps)
    assert stamps[0] >= START and stamps[-1] <= END


def test_message_ids_are_unique_and_in_file_order() -> None:
    ids = [ev["messageId"] for ev in events()]
    assert len(set(ids)) == len(ids)
    assert ids == [f"demo-{i:06d}" for i in range(1, len(ids) + 1)]


# --------------------------------------------------------------------------- every line is a Segment call
def check_call(ev: dict[str, Any]) -> None:
    assert ev["type"] in {"identify", "track", "page", "screen", "alias"}
    assert TS_RE.match(ev["timestamp"])
    assert ev.get("userId") or ev.get("anonymousId")
    for key in ("userId", "anonymousId"):
        assert key not in ev or (isinstance(ev[key], str) and ev[key])
    ctx = ev["context"]
    channel = ctx["channel"]
    assert channel in CHANNELS
    assert ctx["location"]["country"] in COUNTRIES
    traits = {**ctx.get("traits", {}), **ev.get("traits", {})}
    if "email" in traits:
        assert EMAIL_RE.match(traits["email"]), traits["email"]
    if "phone" in traits:
        assert PHONE_RE.match(traits["phone"]), traits["phone"]
    if channel == "app":
        assert ctx["device"]["id"]
    ext_types = {e["type"] for e in ctx.get("externalIds", [])}
    if channel == "pos":
        assert ext_types == {"loyalty_id"}
    if channel == "crm":
        assert ext_types == {"crm_id"} and ev["userId"] == ctx["externalIds"][0]["id"]
    if ev["type"] == "identify" or ev.get("event") == CONSENT_EVENT:
        prefs = ctx["consent"]["categoryPreferences"]
        assert set(prefs) == {"marketing", "advertising", "personalization", "analytics"}
        assert all(isinstance(v, bool) for v in prefs.values())
        assert prefs["personalization"] and prefs["analytics"]
    if ev["type"] == "identify":
        assert traits.get("email") and traits.get("name")
    elif ev["type"] == "track":
        assert isinstance(ev["event"], str) and ev["event"]
        assert isinstance(ev["properties"], dict)
        missing = REQUIRED_PROPERTIES.get(ev["event"], set()) - set(ev["properties"])
        assert not missing, (ev["event"], missing)
        if ev["event"] in ("Checkout Started", ORDER):
            assert ev["properties"]["products"]
    elif ev["type"] in ("page", "screen"):
        assert isinstance(ev["name"], str) and ev["name"]
        assert isinstance(ev["properties"], dict)
    else:
        assert ev["previousId"] and ev["userId"]


def test_every_line_is_a_valid_segment_call() -> None:
    for ev in events():
        try:
            check_call(ev)
        except (AssertionError, KeyError) as exc:
            pytest.fail(f"{ev['messageId']}: {exc!r}")


def test_intake_accepts_every_line() -> None:
    from streams.intake.errors import DeadLetter
    from streams.intake.normalize import Intake
    from streams.model import SourceRef

    intake = Intake()
    raw = DEMO_FILE.read_bytes().splitlines()
    for offset, line in enumerate(raw):
        out = intake.parse(line, None, SourceRef("demo", 0, offset), now_ms=END_MS)
        assert not isinstance(out, DeadLetter), (offset, out)
        assert out.channel in CHANNELS


def test_no_two_people_share_an_identity() -> None:
    """Within the identity limits (one userId, loyalty_id, crm_id a person): nothing to drop or split."""
    for pid in people():
        counts = Counter(x.split(":", 1)[0] for x in person_ids(pid))
        assert counts["user_id"] <= 1 and counts["loyalty_id"] <= 1 and counts["crm_id"] <= 1, pid
        assert counts["email"] <= 2, pid


def test_the_industries_are_all_there() -> None:
    names = Counter(ev.get("event") for ev in events())
    by_channel = Counter(ev["context"]["channel"] for ev in events())
    assert set(by_channel) == CHANNELS
    assert names["Product Added"] > 250 and names[ORDER] > 150
    assert names["Loan Eligibility Checked"] > 100
    assert names["Configuration Viewed"] > 100
    assert names["Onboarding Started"] >= 25
    assert sum(1 for ev in events() if ev["type"] == "alias") >= 10


# --------------------------------------------------------------------------- retail: carts
@cache
def carts() -> list[dict[str, Any]]:
    """Carts the way the cart rule sees them: per person, the run of cart activity since the
    last order; abandoned at last activity + 30 min unless an order or more cart activity came."""
    out = []
    for pid in people():
        cart: list[dict[str, Any]] = []
        for ev in [*calls(pid), None]:
            t = ms(ev) if ev is not None else END_MS + DAY
            if cart and t > ms(cart[-1]) + 30 * MINUTE:
                out.append({"pid": pid, "events": cart, "outcome": "abandoned", "order": None})
                cart = []
            if ev is None or ev["type"] != "track":
                continue
            if ev["event"] == ORDER:
                if cart:
                    out.append({"pid": pid, "events": cart, "outcome": "converted", "order": ev})
                cart = []
            elif ev["event"] in CART:
                cart.append(ev)
    return out


def converted_across_channels() -> list[dict[str, Any]]:
    return [
        c
        for c in carts()
        if c["outcome"] == "converted"
        and c["order"]["context"]["channel"] not in {e["context"]["channel"] for e in c["events"]}
    ]


def test_abandoned_carts() -> None:
    abandoned = [c for c in carts() if c["outcome"] == "abandoned"]
    known_abandoned = [c for c in abandoned if known(c["pid"])]
    assert len(abandoned) >= 40
    assert len(known_abandoned) >= 28
    # Some buy after the 30 minutes anyway: a late order the same day, or days later.
    later = 0
    for c in known_abandoned:
        last = ms(c["events"][-1])
        orders = [ms(o) for o in tracks(c["pid"], ORDER)]
        later += any(last + 30 * MINUTE < t <= last + 10 * DAY for t in orders)
    assert later >= 15


def test_carts_converted_within_30_minutes() -> None:
    converted = [c for c in carts() if c["outcome"] == "converted"]
    same = [c for c in converted if c not in converted_across_channels()]
    assert len(same) >= 100
    for c in converted:
        assert ms(c["order"]) - ms(c["events"][-1]) <= 30 * MINUTE


def test_cart_converted_on_another_channel_after_identity_is_linked() -> None:
    across = converted_across_channels()
    pos = [c for c in across if c["order"]["context"]["channel"] == "pos"]
    assert len(across) >= 25
    assert len(pos) >= 14
    # The link must exist before the order: replay the union-find in file order.
    wanted = {c["order"]["messageId"]: c["events"][0] for c in across}
    uf = UnionFind()
    linked = 0
    for ev in events():
        ids = identifiers(ev)
        if ev["messageId"] in wanted:
            cart_ids = identifiers(wanted[ev["messageId"]])
            # the order's own identifiers must already belong to the cart's person
            assert any(uf.find(x) == uf.find(cart_ids[0]) for x in ids if x in uf.parent), ev["messageId"]
            linked += 1
        uf.union(ids)
    assert linked == len(across)
    # POS orders carry the loyalty card, linked to the online account by an app identify
    # that carried both the userId and the loyalty_id.
    for c in pos:
        loyalty = next(x for x in identifiers(c["order"]) if x.startswith("loyalty_id:"))
        linking = [
            ev
            for ev in calls(c["pid"])
            if ev["type"] == "identify"
            and ev["context"]["channel"] == "app"
            and loyalty in identifiers(ev)
            and ev.get("userId")
            and ms(ev) < ms(c["order"])
        ]
        assert linking, c["order"]["messageId"]


def test_one_customer_under_two_names_and_emails() -> None:
    """The loyalty record's email differs from the online one, linked by the loyalty id."""
    two = [pid for pid in people() if sum(x.startswith("email:") for x in person_ids(pid)) == 2]
    assert len(two) >= 10
    for pid in two:
        assert any(x.startswith("loyalty_id:") for x in person_ids(pid))


def test_in_store_first_then_linked_online() -> None:
    n = 0
    for pid in people():
        cs = calls(pid)
        pos = [ms(e) for e in cs if e["context"]["channel"] == "pos" and e.get("event") == ORDER]
        online = [ms(e) for e in cs if e["context"]["channel"] in ("web", "app") and e.get("userId")]
        if pos and online and pos[0] < online[0]:
            n += 1
    assert n >= 12


# --------------------------------------------------------------------------- inactivity
def gaps(pid: str) -> list[tuple[int, int]]:
    acts = [ms(ev) for ev in calls(pid) if ev["type"] in ACTIVITY]
    return list(pairwise(acts))


def test_quiet_for_45_days_then_back() -> None:
    quiet_after_purchase = 0
    for pid in people():
        if not known(pid):
            continue
        orders = {ms(o) for o in tracks(pid, ORDER)}
        for a, b in gaps(pid):
            if b - a >= 45 * DAY and any(a - DAY <= t <= a for t in orders):
                quiet_after_purchase += 1
                break
    assert quiet_after_purchase >= 35


def test_back_within_30_days_after_a_purchase() -> None:
    """The quiet spell after their purchase ends before 45 days: no trigger for it."""
    soon = 0
    for pid in people():
        if not known(pid) or not tracks(pid, ORDER):
            continue
        orders = [ms(o) for o in tracks(pid, ORDER)]
        soon += any(DAY <= b - a < 30 * DAY and any(a - DAY <= t <= a for t in orders) for a, b in gaps(pid))
    assert soon >= 40


# --------------------------------------------------------------------------- financial services
def loan_checks(pid: str) -> list[int]:
    return [ms(ev) for ev in tracks(pid, "Loan Eligibility Checked")]


def loan_fires(checks: list[int]) -> list[int]:
    """When 'Loan Eligibility Checked 3+ times within 7 days' fires, with a 7-day cooldown."""
    fires: list[int] = []
    for i, t in enumerate(checks):
        window = [c for c in checks[: i + 1] if t - 7 * DAY < c <= t]
        if len(window) >= 3 and (not fires or t >= fires[-1] + 7 * DAY):
            fires.append(t)
    return fires


def test_loan_eligibility_checks() -> None:
    by_count = Counter()
    triple = spread = twice = 0
    for pid in people():
        checks = loan_checks(pid)
        if not checks:
            continue
        by_count[min(len(checks), 4)] += 1
        fires = loan_fires(checks)
        triple += bool(fires)
        twice += len(fires) >= 2
        spread += len(checks) >= 3 and not fires and checks[-1] - checks[0] >= 10 * DAY
    assert by_count[1] >= 10 and by_count[2] >= 8 and by_count[3] >= 15 and by_count[4] >= 12
    assert triple >= 25
    assert spread >= 8
    assert twice >= 3


def test_marketing_consent_withdrawn_between_loan_checks() -> None:
    withdrawn = fires_after = 0
    for pid in people():
        checks = loan_checks(pid)
        for ev in tracks(pid, CONSENT_EVENT):
            prefs = ev["context"]["consent"]["categoryPreferences"]
            if prefs["marketing"] is False and checks and checks[0] < ms(ev) < checks[-1]:
                withdrawn += 1
                # a third check within 7 days after it: a trigger that consent must suppress
                fires_after += any(t > ms(ev) for t in loan_fires(checks))
                break
    assert withdrawn >= 5
    assert fires_after >= 4
    assert sum(1 for ev in events() if ev.get("event") == CONSENT_EVENT) >= 15


# --------------------------------------------------------------------------- automotive
def test_same_configuration_three_times() -> None:
    within = spread = 0
    for pid in people():
        views: dict[str, list[int]] = defaultdict(list)
        for ev in tracks(pid, "Configuration Viewed"):
            views[ev["properties"]["configuration_id"]].append(ms(ev))
        triples = [v for v in views.values() if len(v) >= 3]
        hit = any(v[i + 2] - v[i] <= 14 * DAY for v in triples for i in range(len(v) - 2))
        within += hit
        spread += bool(triples) and not hit
    assert within >= 20
    assert spread >= 6


def test_dealer_crm_record_linked_by_email() -> None:
    linked = 0
    for pid in people():
        cs = calls(pid)
        emails: dict[str, set[str]] = defaultdict(set)
        for e in cs:
            emails[e["context"]["channel"]].update(x for x in identifiers(e) if x.startswith("email:"))
        if any(e["context"]["channel"] == "crm" for e in cs) and any(
            e["context"]["channel"] == "web" for e in cs
        ):
            assert emails["crm"] & emails["web"], pid
            linked += 1
    assert linked >= 25


def test_test_drive_then_six_months_of_silence() -> None:
    silent = returned = 0
    for pid in people():
        for td in tracks(pid, "Test Drive Completed"):
            t = ms(td)
            later = [ms(e) for e in calls(pid) if e["type"] in ACTIVITY and ms(e) > t]
            if not later and END_MS - t >= 180 * DAY:
                silent += 1
            elif later and later[0] - t >= 180 * DAY:
                returned += 1
    assert silent >= 8
    assert returned >= 6


def test_vehicle_bought_after_a_test_drive() -> None:
    n = sum(
        1
        for pid in people()
        if tracks(pid, "Test Drive Completed")
        and any(o["context"]["channel"] == "crm" for o in tracks(pid, ORDER))
    )
    assert n >= 5


# --------------------------------------------------------------------------- insurance
def test_policy_onboarding() -> None:
    started = completed = dropped = resumed = 0
    for pid in people():
        if not tracks(pid, "Onboarding Started"):
            continue
        started += 1
        done = tracks(pid, "Onboarding Completed")
        steps = [ms(e) for e in tracks(pid, "Onboarding Step Completed")]
        completed += bool(done)
        dropped += not done
        resumed += bool(done) and any(b - a >= DAY for a, b in pairwise(steps))
        indexes = [e["properties"]["step_index"] for e in tracks(pid, "Onboarding Step Completed")]
        assert indexes == list(range(1, len(indexes) + 1)), pid
    assert started >= 25
    assert completed >= 15
    assert dropped >= 10
    assert resumed >= 5

"""Shadow runs (CXSTREAM_SHADOW_RULES): decisions with outcome ``shadow``, nothing else touched."""

import asyncio
import sys
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import orjson
import pytest
from click.testing import CliRunner

from rules.browse_abandoned import BrowseAbandoned
from streams.cli import main
from streams.consent.policy import DEFAULT_POLICY
from streams.constants import DAY_MS, HOUR_MS
from streams.engine import registry
from streams.engine.runner import Engine
from streams.engine.shadow_diff import diff
from streams.exceptions import RuleError
from streams.model import Identifier
from streams.settings import Settings
from streams.state import ProfileState
from streams.testing import at, event, segment, track
from streams.testing import run_journey as journey

T0 = at("2026-06-01T09:00:00Z")


class BrowseAbandonedV2(BrowseAbandoned):
    """A second version of the same rule: two views are enough."""

    version = 2
    views: ClassVar[int] = 2


@pytest.fixture
def v2_importable(monkeypatch: pytest.MonkeyPatch) -> str:
    """``BrowseAbandonedV2`` under an importable name, as ``module:Class`` in CXSTREAM_SHADOW_RULES."""
    module = ModuleType("cx_shadow_test_rules")
    module.BrowseAbandonedV2 = BrowseAbandonedV2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return "cx_shadow_test_rules:BrowseAbandonedV2"


def _consenting() -> ProfileState:
    state = ProfileState()
    identify = event(
        "identify", T0, identifiers=[Identifier("email", "a@example.com")], consent={"marketing": True}
    )
    Engine([], DEFAULT_POLICY).on_event("p1", state, identify)
    return state


def _views(engine: Engine, state: ProfileState, product: str = "sku-1") -> list[object]:
    fired = []
    for h in (0, 1, 2):
        fired += engine.on_event(
            "p1", state, track("Product Viewed", T0 + h * HOUR_MS, properties={"product_id": product})
        ).fired
    fired += engine.fire_until("p1", state, T0 + 2 * DAY_MS).fired
    return fired


def test_a_shadow_decides_but_touches_no_caps_cooldowns_or_other_state() -> None:
    live, shadow = _consenting(), _consenting()
    live_fired = _views(Engine([BrowseAbandoned()], DEFAULT_POLICY), live)
    shadow_fired = _views(Engine([], DEFAULT_POLICY, [BrowseAbandoned()]), shadow)
    assert [f.outcome for f in live_fired] == ["activated"]  # type: ignore[attr-defined]
    assert [f.outcome for f in shadow_fired] == ["shadow"]  # type: ignore[attr-defined]
    assert shadow_fired[0].verdict.allowed == live_fired[0].verdict.allowed  # type: ignore[attr-defined]
    assert live.caps and not shadow.caps  # the live trigger counted against the email cap; the shadow not
    assert set(shadow.rules) == {"browse_abandoned@1"} and shadow.timers == {} and shadow.cooldowns == {}


def test_a_shadow_runs_beside_the_live_rule_under_its_own_key() -> None:
    state = _consenting()
    engine = Engine([BrowseAbandoned()], DEFAULT_POLICY, [BrowseAbandonedV2()])
    state_rules: list[str] = []
    for h in (0, 1):
        engine.on_event(
            "p1", state, track("Product Viewed", T0 + h * HOUR_MS, properties={"product_id": "a"})
        )
        state_rules = sorted(state.rules)
    assert state_rules == ["browse_abandoned", "browse_abandoned@2"]
    assert sorted(state.timers) == ["browse_abandoned@2|window", "browse_abandoned|window"]
    fired = engine.fire_until("p1", state, T0 + 2 * DAY_MS).fired
    # two views: only the shadow v2 fires, and says so
    assert [(f.rule.name, f.rule.version, f.outcome) for f in fired] == [("browse_abandoned", 2, "shadow")]


def test_shadow_decisions_through_the_pipeline_and_shadow_diff(v2_importable: str, tmp_path: Path) -> None:
    consent = {"consent": {"categoryPreferences": {"marketing": True}}}
    msgs = [segment("identify", T0, userId="u1", traits={"email": "u1@example.com"}, context=consent)]
    for product, hours in (("a", (0, 1, 2)), ("b", (3, 4))):
        for h in hours:
            props = {"product_id": product}
            msgs.append(
                segment("track", T0 + h * HOUR_MS, userId="u1", event="Product Viewed", properties=props)
            )
    s = Settings(rules=("browse_abandoned",), shadow_rules=("browse_abandoned", v2_importable))
    res = asyncio.run(journey(msgs, s, until=T0 + 3 * DAY_MS))
    acts = [orjson.loads(a) for a in res.activations]
    assert [a["data"]["context"]["product_id"] for a in acts] == ["a"]  # the shadows activate nothing
    decisions = [orjson.loads(d) for d in res.decisions]
    outcomes = sorted((d["rule"]["version"], d["outcome"], d["context"]["product_id"]) for d in decisions)
    assert outcomes == [(1, "activated", "a"), (1, "shadow", "a"), (2, "shadow", "a"), (2, "shadow", "b")]
    ids = [d["id"] for d in decisions]
    assert len(set(ids)) == len(ids)  # a shadow of the same version does not reuse the live decision id
    same = [d for d in decisions if d["rule"]["version"] == 1]
    assert len({d["triggerId"] for d in same}) == 1  # ... but names the same trigger

    report = diff(decisions, "browse_abandoned", version=2)
    assert (report.live, report.shadow, report.both, len(report.only_shadow)) == (1, 2, 1, 1)
    assert diff(decisions, "browse_abandoned", version=2, since=T0 + 27 * HOUR_MS).as_dict()["live"] == 0

    file = tmp_path / "decisions.jsonl"
    file.write_bytes(b"\n".join(res.decisions) + b"\n")
    out = CliRunner().invoke(
        main, ["shadow-diff", "browse_abandoned", "--version", "2", "--file", str(file), "--json"]
    )
    assert out.exit_code == 0, out.output
    got = orjson.loads(out.output)
    assert (got["live"], got["shadow"], got["both"], got["onlyShadow"]) == (1, 2, 1, 1)


def test_a_shadow_named_twice_stops_start_up(v2_importable: str) -> None:
    with pytest.raises(RuleError, match="browse_abandoned@2"):
        registry.load_shadow([v2_importable, v2_importable], [])
    with pytest.raises(RuleError, match="browse_abandoned@1"):
        registry.load_shadow(["browse_abandoned"], [BrowseAbandonedV2(), _Named()])


class _Named(BrowseAbandoned):
    name = "browse_abandoned@1"  # not a valid live name, but enough to collide


def test_shadow_rules_setting_is_a_comma_list() -> None:
    assert Settings(shadow_rules="a, b").shadow_rules == ("a", "b")  # type: ignore[arg-type]
    assert Settings().shadow_rules == ()

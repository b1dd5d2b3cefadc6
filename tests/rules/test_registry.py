import sys
import uuid
from pathlib import Path
from typing import ClassVar

import pytest

from rules.base import Outcome, Rule, RuleContext
from streams.engine import registry
from streams.exceptions import RuleError
from streams.model import Event, JSONDict
from streams.settings import load_settings


class Fine(Rule):
    name = "fine"
    events = frozenset({"X"})

    def on_event(self, state: JSONDict, event: Event, ctx: RuleContext) -> Outcome:
        return Outcome(state)


class NoEvents(Fine):
    name = "no_events"
    events = frozenset()


class NoChannels(Fine):
    name = "no_channels"
    channels: ClassVar[tuple[str, ...]] = ()


class BadVersion(Fine):
    name = "bad_version"
    version = 0


class BadName(Fine):
    name = "not an identifier"


class BadCooldown(Fine):
    name = "bad_cooldown"
    cooldown_ms = -1


class NeedsArgs(Fine):
    name = "needs_args"

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold


def test_every_builtin_loads_and_the_default_set_is_unchanged() -> None:
    rules = registry.load(list(registry.BUILTIN))
    assert [r.name for r in rules] == list(registry.BUILTIN)
    assert {
        "vehicle_config_repeat",
        "test_drive_silence",
        "onboarding_stalled",
        "purchase_suppression",
        "segments",
    } <= set(registry.BUILTIN)
    assert load_settings().rules == ("cart_abandoned", "inactive_45d", "loan_eligibility_repeat")


def test_an_unknown_name_stops_with_the_name_and_what_is_available() -> None:
    with pytest.raises(RuleError) as err:
        registry.load(["cart_abandoned", "cart_abandonned"])
    msg = str(err.value)
    assert (
        "'cart_abandonned'" in msg
        and "not a known rule" in msg
        and "cart_abandoned" in msg.split("available")[1]
    )


def test_a_name_enabled_twice_stops() -> None:
    with pytest.raises(RuleError, match="'inactive_45d' is enabled twice"):
        registry.load(["inactive_45d", "inactive_45d"])
    with pytest.raises(RuleError, match="'fine' is enabled twice"):
        registry.load([], extra=[Fine(), Fine()])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (NoEvents(), "rule no_events: declares no events or calls"),
        (NoChannels(), "rule no_channels: declares no candidate channels"),
        (BadVersion(), "rule bad_version: version must be a positive int, got 0"),
        (BadName(), "BadName.name must be a Python identifier, got 'not an identifier'"),
        (BadCooldown(), "rule bad_cooldown: cooldown_ms must be a non-negative int"),
    ],
)
def test_a_bad_declaration_stops_naming_the_rule(rule: Rule, expected: str) -> None:
    with pytest.raises(RuleError) as err:
        registry.load(["cart_abandoned"], extra=[rule])
    assert expected in str(err.value)


def test_a_rule_that_overrides_wants_needs_no_events() -> None:
    class Custom(NoEvents):
        name = "custom"

        def wants(self, event: Event) -> bool:
            return event.call == "identify"

    assert [r.name for r in registry.load([], extra=[Custom()])] == ["custom"]


# --------------------------------------------------------------------------- entry points
@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A tiny installed distribution on sys.path: a module and a dist-info with entry points."""
    module = f"cxs_plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        "from rules.base import Outcome, Rule\n"
        "class Ext(Rule):\n"
        "    name = 'ext_rule'\n"
        "    events = frozenset({'Ext Happened'})\n"
        "    def on_event(self, state, event, ctx):\n"
        "        return Outcome(state)\n"
        "class NotARule:\n"
        "    name = 'nope'\n"
        "class Needs(Ext):\n"
        "    name = 'needs'\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
    )
    dist = tmp_path / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return module, dist


def entry_points(dist: Path, lines: str) -> None:
    (dist / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}\n")


def test_an_entry_point_rule_is_available_and_loads(plugin: tuple[str, Path]) -> None:
    module, dist = plugin
    entry_points(dist, f"ext_rule = {module}:Ext")
    assert registry.available()["ext_rule"] == f"{module}:Ext"
    (rule,) = registry.load(["ext_rule"])
    assert rule.name == "ext_rule" and type(rule).__module__ == module


def test_an_entry_point_reusing_a_builtin_name_is_defined_twice(plugin: tuple[str, Path]) -> None:
    module, dist = plugin
    entry_points(dist, f"cart_abandoned = {module}:Ext")
    with pytest.raises(RuleError) as err:
        registry.available()
    msg = str(err.value)
    assert (
        "'cart_abandoned' is defined twice" in msg
        and "rules.cart_abandoned:CartAbandoned" in msg
        and module in msg
    )


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("NotARule", "is not a subclass of rules.base.Rule"),
        ("Missing", "cannot be imported"),
        ("Needs", "cannot be created: TypeError"),
    ],
)
def test_a_bad_entry_point_stops_naming_it(plugin: tuple[str, Path], attr: str, expected: str) -> None:
    module, dist = plugin
    entry_points(dist, f"broken = {module}:{attr}")
    with pytest.raises(RuleError) as err:
        registry.load(["broken"])
    assert f"{module}:{attr}" in str(err.value) and expected in str(err.value)

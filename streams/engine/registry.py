"""Which rule modules are on: explicit names from settings, built-ins or entry points.

Built-in rules are listed here, by name. A third-party package adds rules through the
``cxstream.rules`` entry-point group (``name = "package.module:RuleClass"``); a rule class
that is importable but not packaged can be named directly as ``package.module:RuleClass``. A name
that is unknown, defined twice, or a class that is not a proper :class:`rules.base.Rule`
stops start-up with a :class:`~streams.exceptions.RuleError` that says which and why.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from rules.base import Rule
from streams.exceptions import ConfigError, RuleError

if TYPE_CHECKING:
    from streams.settings import Settings

ENTRY_POINT_GROUP = "cxstream.rules"

#: name -> "module:Class" of the rules that ship with cxstream
BUILTIN: dict[str, str] = {
    "cart_abandoned": "rules.cart_abandoned:CartAbandoned",
    "inactive_45d": "rules.inactive_45d:Inactive45d",
    "loan_eligibility_repeat": "rules.loan_eligibility_repeat:LoanEligibilityRepeat",
    "vehicle_config_repeat": "rules.vehicle_config_repeat:VehicleConfigRepeat",
    "test_drive_silence": "rules.test_drive_silence:TestDriveSilence",
    "onboarding_stalled": "rules.onboarding_stalled:OnboardingStalled",
    "purchase_suppression": "rules.purchase_suppression:PurchaseSuppression",
    "segments": "rules.segments:SegmentRule",
    "browse_abandoned": "rules.browse_abandoned:BrowseAbandoned",
}


def available() -> dict[str, str]:
    """Every rule that could be enabled: name -> where it comes from. Duplicates are an error."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name] != ep.value:
            raise RuleError(
                f"rule name {ep.name!r} is defined twice: {found[ep.name]} and {ep.value} "
                f"(entry point group {ENTRY_POINT_GROUP}); rename one"
            )
        found[ep.name] = ep.value
    return found


def _import(ref: str) -> type[Rule]:
    module, _, attr = ref.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RuleError(f"rule {ref} cannot be imported: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Rule)):
        raise RuleError(f"{ref} is not a subclass of rules.base.Rule")
    return obj


def _instantiate(ref: str, cls: type[Rule], settings: Settings | None) -> Rule:
    """``cls.from_settings(settings)`` when the class has it (a rule configured by data), else ``cls()``."""
    make = getattr(cls, "from_settings", None)
    try:
        rule = make(settings) if settings is not None and callable(make) else cls()
    except ConfigError:
        raise
    except Exception as exc:
        raise RuleError(f"rule {ref} cannot be created: {type(exc).__name__}: {exc}") from None
    if not isinstance(rule, Rule):
        raise RuleError(f"rule {ref}: from_settings returned {rule!r}, not a rules.base.Rule")
    return rule


def validate(rule: Rule) -> Rule:
    """Check a rule's declaration; raise :class:`RuleError` naming what is wrong."""
    name = getattr(rule, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise RuleError(f"{type(rule).__name__}.name must be a Python identifier, got {name!r}")
    if not isinstance(rule.version, int) or rule.version < 1:
        raise RuleError(f"rule {name}: version must be a positive int, got {rule.version!r}")
    if not rule.events and not rule.calls and type(rule).wants is Rule.wants:
        raise RuleError(f"rule {name}: declares no events or calls and does not override wants()")
    if not rule.channels:
        raise RuleError(f"rule {name}: declares no candidate channels")
    if not isinstance(rule.cooldown_ms, int) or rule.cooldown_ms < 0:
        raise RuleError(f"rule {name}: cooldown_ms must be a non-negative int")
    return rule


def load(names: Iterable[str], extra: Iterable[Rule] = (), settings: Settings | None = None) -> list[Rule]:
    """Instantiate the named rules (in the given order), plus ``extra`` instances.

    With ``settings``, a rule class that has a ``from_settings(settings)`` classmethod (e.g.
    ``segments``, configured by ``segments_file``) is built by it; otherwise by ``cls()``.
    """
    catalog = available()
    out: list[Rule] = []
    seen: set[str] = set()
    for n in names:
        if n not in catalog and ":" in n:  # a class named directly: module:Class
            out.append(validate(_instantiate(n, _import(n), settings)))
            continue
        if n not in catalog:
            known = ", ".join(sorted(catalog))
            raise RuleError(f"CXSTREAM_RULES names {n!r}, which is not a known rule; available: {known}")
        out.append(validate(_instantiate(catalog[n], _import(catalog[n]), settings)))
    out += [validate(r) for r in extra]
    for r in out:
        if r.name in seen:
            raise RuleError(f"rule {r.name!r} is enabled twice; each name may appear once")
        seen.add(r.name)
    return out


def load_shadow(names: Iterable[str], live: Iterable[Rule], settings: Settings | None = None) -> list[Rule]:
    """The rules of ``CXSTREAM_SHADOW_RULES`` (named as in ``CXSTREAM_RULES``), to run in shadow.

    Each runs under the id ``<name>@<version>`` (:mod:`streams.engine.shadow`); two shadows with
    the same id stop start-up, as does one whose id is a live rule's name.
    """
    from streams.engine.shadow import shadow_id

    out = [r for n in names for r in load([n], settings=settings)]  # versions of one rule may share a name
    live_names = {r.name for r in live}
    seen: set[str] = set()
    for r in out:
        sid = shadow_id(r)
        if sid in seen or sid in live_names:
            raise RuleError(f"CXSTREAM_SHADOW_RULES: {sid} is named twice; each name@version may run once")
        seen.add(sid)
    return out

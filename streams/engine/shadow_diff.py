"""``cxstream shadow-diff RULE``: a rule's shadow decisions against its live ones, over one period.

Reads ``cx.decisions`` (from the beginning, :func:`streams.measure.read.read_topic`) or a JSONL
file of decision records (``cxstream simulate --decisions``, ``cxstream tail cx.decisions
--from-beginning``). Live decisions are the rule's records with outcome ``activated``,
``suppressed`` or ``holdout``; shadow ones those with outcome ``shadow`` (``--version`` picks one
shadow version when several ran). Both are kept when the trigger's event time is in ``[since,
until)``, and matched on (profile, trigger type, event time): a condition both versions saw
becomes true at the same event time for the same profile. Trigger ids are not compared: they
include the version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.intake.normalize import parse_time_ms

LIVE = frozenset({"activated", "suppressed", "holdout"})
#: how many unmatched triggers of each side the report lists
EXAMPLES = 10

Match = tuple[str, str, int]  # profile id, trigger type, event time (ms)


@dataclass
class ShadowDiff:
    rule: str
    live_versions: list[int] = field(default_factory=list)
    shadow_versions: list[int] = field(default_factory=list)
    live: int = 0
    shadow: int = 0
    both: int = 0
    only_live: list[Match] = field(default_factory=list)
    only_shadow: list[Match] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "liveVersions": self.live_versions,
            "shadowVersions": self.shadow_versions,
            "live": self.live,
            "shadow": self.shadow,
            "both": self.both,
            "onlyLive": len(self.only_live),
            "onlyShadow": len(self.only_shadow),
            "onlyLiveExamples": [list(m) for m in self.only_live[:EXAMPLES]],
            "onlyShadowExamples": [list(m) for m in self.only_shadow[:EXAMPLES]],
        }

    def text(self) -> str:
        lines = [
            f"rule {self.rule}: live v{','.join(map(str, self.live_versions)) or '-'} "
            f"vs shadow v{','.join(map(str, self.shadow_versions)) or '-'}",
            f"  live triggers    {self.live}",
            f"  shadow triggers  {self.shadow}",
            f"  in both          {self.both}",
            f"  only live        {len(self.only_live)}",
            f"  only shadow      {len(self.only_shadow)}",
        ]
        for label, items in (("only live", self.only_live), ("only shadow", self.only_shadow)):
            for pid, kind, t in items[:EXAMPLES]:
                lines.append(f"    {label}: profile {pid} {kind} at {t}")
        return "\n".join(lines) + "\n"


def diff(
    decisions: Iterable[Any],
    rule: str,
    *,
    since: int | None = None,
    until: int | None = None,
    version: int | None = None,
) -> ShadowDiff:
    """Compare the shadow and live decisions of ``rule`` whose trigger time is in ``[since, until)``."""
    live: set[Match] = set()
    shadow: set[Match] = set()
    out = ShadowDiff(rule)
    for d in decisions:
        if not isinstance(d, dict) or not isinstance(d.get("rule"), dict) or d["rule"].get("name") != rule:
            continue
        outcome, ver = d.get("outcome"), d["rule"].get("version")
        try:
            t = parse_time_ms(str(d.get("time")))
        except ValueError:
            continue
        if (since is not None and t < since) or (until is not None and t >= until):
            continue
        match: Match = (str(d.get("profileId")), str(d.get("type")), t)
        if outcome == "shadow" and (version is None or ver == version):
            shadow.add(match)
            if ver not in out.shadow_versions:
                out.shadow_versions.append(ver)
        elif outcome in LIVE:
            live.add(match)
            if ver not in out.live_versions:
                out.live_versions.append(ver)
    out.live, out.shadow, out.both = len(live), len(shadow), len(live & shadow)
    out.only_live, out.only_shadow = sorted(live - shadow), sorted(shadow - live)
    out.live_versions.sort()
    out.shadow_versions.sort()
    return out

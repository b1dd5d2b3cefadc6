"""The uplift report: per rule, conversion rates of the treated and held-out groups, the uplift,
and 95% intervals. Pure: records in, numbers out (``cxstream report`` reads the records).

Method (stated in the output and the README):

* conversion rate of a group: conversions / triggers (each trigger converts at most once);
* absolute uplift ``p_t - p_h`` with Newcombe's hybrid score interval (Newcombe 1998, method 10:
  the Wilson score intervals of the two rates combined), which stays inside [-1, 1] and behaves
  for small counts and rates near 0, where the Wald interval does not;
* relative uplift ``p_t / p_h - 1`` with the Katz log interval for the ratio of two proportions,
  ``exp(ln(p_t/p_h) +- z * sqrt(1/x_t - 1/n_t + 1/x_h - 1/n_h))``; undefined (``None``) while
  either group has no conversion.

Triggers are ``cx.decisions`` records with outcome ``activated`` (treated) or ``holdout``;
conversions are ``cx.conversions`` records. Both are counted once per ``triggerId``, so a record
produced twice (a crash between produce and commit) does not count twice, and a conversion
whose trigger is not among the decisions read (it fell out of the topic's retention) is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: two-sided 95%: the 0.975 quantile of the standard normal
Z95 = 1.959963984540054

GROUPS = ("treated", "holdout")
METHOD = (
    "absolute uplift: Newcombe hybrid score interval (Wilson, method 10); "
    "relative uplift: Katz log interval of the rate ratio; 95%"
)


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``x`` successes in ``n`` trials."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float] | None:
    """``p1 - p2`` and its hybrid score interval, or None when a group is empty."""
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def katz(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float] | None:
    """``p1 / p2 - 1`` and its interval from the Katz log interval of the ratio, or None when it
    is undefined (an empty group, or no conversion in one)."""
    if min(x1, x2, n1, n2) == 0:
        return None
    rr = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    lo, hi = math.exp(math.log(rr) - z * se), math.exp(math.log(rr) + z * se)
    return rr - 1, lo - 1, hi - 1


@dataclass(slots=True)
class Group:
    triggers: int = 0
    conversions: int = 0

    @property
    def rate(self) -> float | None:
        return self.conversions / self.triggers if self.triggers else None


@dataclass(slots=True)
class RuleReport:
    rule: str
    groups: dict[str, Group] = field(default_factory=lambda: {g: Group() for g in GROUPS})
    lag_seconds: list[float] = field(default_factory=list)

    @property
    def uplift(self) -> tuple[float, float, float] | None:
        t, h = self.groups["treated"], self.groups["holdout"]
        return newcombe(t.conversions, t.triggers, h.conversions, h.triggers)

    @property
    def relative_uplift(self) -> tuple[float, float, float] | None:
        t, h = self.groups["treated"], self.groups["holdout"]
        return katz(t.conversions, t.triggers, h.conversions, h.triggers)

    def to_dict(self) -> dict[str, Any]:
        def trio(v: tuple[float, float, float] | None) -> dict[str, float] | None:
            return None if v is None else {"estimate": v[0], "low": v[1], "high": v[2]}

        lags = sorted(self.lag_seconds)
        return {
            "rule": self.rule,
            "groups": {
                g: {"triggers": x.triggers, "conversions": x.conversions, "rate": x.rate}
                for g, x in self.groups.items()
            },
            "uplift": trio(self.uplift),
            "relativeUplift": trio(self.relative_uplift),
            "medianLagSeconds": lags[len(lags) // 2] if lags else None,
        }


def uplift(
    decisions: Iterable[Mapping[str, Any]], conversions: Iterable[Mapping[str, Any]]
) -> list[RuleReport]:
    """Per rule (sorted by name): triggers and conversions of each group, from the records."""
    group_of: dict[str, tuple[str, str]] = {}  # triggerId -> (rule, group)
    for d in decisions:
        outcome = d.get("outcome")
        if outcome not in ("activated", "holdout"):
            continue
        rule = d.get("rule", {}).get("name")
        if isinstance(rule, str):
            group_of[d["triggerId"]] = (rule, "treated" if outcome == "activated" else "holdout")
    out: dict[str, RuleReport] = {}
    for rule, group in group_of.values():
        out.setdefault(rule, RuleReport(rule)).groups[group].triggers += 1
    seen: set[str] = set()
    for c in conversions:
        tid = c.get("triggerId")
        if tid in seen or tid not in group_of:
            continue
        seen.add(tid)
        rule, group = group_of[tid]
        rep = out[rule]
        rep.groups[group].conversions += 1
        lag = c.get("lagSeconds")
        if isinstance(lag, int | float):
            rep.lag_seconds.append(float(lag))
    return [out[r] for r in sorted(out)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _trio(v: tuple[float, float, float] | None, points: bool) -> str:
    if v is None:
        return "n/a"
    unit = " pp" if points else "%"
    return f"{100 * v[0]:+.2f}{unit} [{100 * v[1]:+.2f}, {100 * v[2]:+.2f}]"


def render(reports: Iterable[RuleReport]) -> str:
    """The report as text: one block per rule."""
    lines = [f"Uplift per rule ({METHOD})", ""]
    any_rule = False
    for r in reports:
        any_rule = True
        lines.append(r.rule)
        for g in GROUPS:
            x = r.groups[g]
            lines.append(
                f"  {g:<8} triggers {x.triggers:>8}  conversions {x.conversions:>8}  rate {_pct(x.rate):>8}"
            )
        lines.append(
            f"  uplift    absolute {_trio(r.uplift, True)}   relative {_trio(r.relative_uplift, False)}"
        )
        lines.append("")
    if not any_rule:
        lines.append("  no activated or held-out triggers in the decisions read")
    return "\n".join(lines).rstrip() + "\n"

"""Program KPIs and survey answers for ``cxstream report --kpi``: exact, from the topics.

Pure: records in, numbers out. Inputs are the repartition topic's records (resolved events keyed
by profile, merges, erasures: ``<app_id>-profiled``) and the decisions (``cx.decisions``: rule
exposures, and segment membership from the ``segments`` rule's ``segment_entered`` /
``segment_exited`` decisions, whatever their outcome).

A person is a profile after every merge read (an absorbed profile counts as its survivor);
an erased profile is left out. Events are counted once per ``messageId`` (a record forwarded to a
survivor, or processed again, is the same event). "Now" is the latest event time read, so the
report of a replay of last year speaks of last year.

Limits: only what the topics still hold (the repartition topic's retention is 7 days in
``deploy/kafka/create-topics.sh``: set it longer to report on longer periods); an event whose
profile merged after the read is counted under the profile it had; identifiers are looked at by
type only (hashed values are never needed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.constants import ANONYMOUS_TYPES
from streams.intake.normalize import parse_time_ms
from streams.measure.config import DAY_MS
from streams.measure.kpi import ACTIVITY_CALLS, NOT_CHANNELS, ORDER_EVENT

SURVEY_EVENT = "Survey Answered"
SEGMENT_RULE = "segments"


@dataclass(slots=True)
class _Person:
    known: bool = False
    channels: set[str] = field(default_factory=set)
    last_activity: int | None = None
    orders: int = 0
    events: int = 0


@dataclass(slots=True)
class _Score:
    n: int = 0
    total: float = 0.0

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v

    def to_dict(self) -> dict[str, Any]:
        return {"answers": self.n, "meanScore": self.total / self.n if self.n else None}


def _root(into: Mapping[str, str], pid: str) -> str:
    seen = set()
    while pid in into and pid not in seen:
        seen.add(pid)
        pid = into[pid]
    return pid


def _share(x: int, n: int) -> float | None:
    return x / n if n else None


def kpis(
    profiled: Iterable[Mapping[str, Any]], decisions: Iterable[Mapping[str, Any]], churn_days: float = 90
) -> dict[str, Any]:
    """The KPIs and survey scores (a JSON-ready dict; keys in the README's Measurement section)."""
    into: dict[str, str] = {}
    erased: set[str] = set()
    events: dict[str, tuple[str, Mapping[str, Any]]] = {}  # messageId -> (pid, event)
    for r in profiled:
        k = r.get("k")
        if k == "merge" and isinstance(r.get("pid"), str) and isinstance(r.get("into"), str):
            if r["pid"] != r["into"]:
                into[r["pid"]] = r["into"]
        elif k == "erase" and isinstance(r.get("pid"), str):
            erased.add(r["pid"])
        elif k == "ev" and isinstance(r.get("ev"), dict) and isinstance(r.get("pid"), str):
            ev = r["ev"]
            events.setdefault(str(ev.get("messageId")), (r["pid"], ev))
    gone = {_root(into, p) for p in erased} | erased
    people: dict[str, _Person] = defaultdict(_Person)
    surveys: list[tuple[str, int, str, float]] = []  # (person, ts, survey, score)
    now = 0
    for pid, ev in events.values():
        root = _root(into, pid)
        if root in gone or pid in gone:
            continue
        p = people[root]
        ts = int(ev.get("ts", 0))
        now = max(now, ts)
        p.events += 1
        if any(t not in ANONYMOUS_TYPES for t, _ in ev.get("identifiers", [])):
            p.known = True
        ch = ev.get("channel")
        if isinstance(ch, str) and ch not in NOT_CHANNELS:
            p.channels.add(ch)
        call, name = ev.get("call"), ev.get("name")
        if call in ACTIVITY_CALLS:
            p.last_activity = ts if p.last_activity is None else max(p.last_activity, ts)
        if call == "track" and name == ORDER_EVENT:
            p.orders += 1
        if call == "track" and name == SURVEY_EVENT:
            props = ev.get("properties", {})
            score = props.get("score")
            if isinstance(score, int | float) and not isinstance(score, bool):
                surveys.append((root, ts, str(props.get("survey", "")), float(score)))
    customers = [p for p in people.values() if p.known]
    all_events = sum(p.events for p in people.values())
    buyers = [p for p in people.values() if p.orders >= 1]

    def active(days: float) -> int:
        return sum(
            1 for p in customers if p.last_activity is not None and p.last_activity > now - days * DAY_MS
        )

    out: dict[str, Any] = {
        "asOf": now,
        "people": len(people),
        "customers": len(customers),
        "knownEventShare": _share(sum(p.events for p in customers), all_events),
        "crossChannelReach": _share(sum(1 for p in people.values() if len(p.channels) >= 2), len(people)),
        "active30dShare": _share(active(30), len(customers)),
        "active90dShare": _share(active(90), len(customers)),
        "churned": len(customers) - active(churn_days),
        "churnDays": churn_days,
        "repeatPurchaseRate": _share(sum(1 for p in buyers if p.orders >= 2), len(buyers)),
    }
    out["surveys"] = _surveys(surveys, decisions, into)
    return out


def _surveys(
    answers: list[tuple[str, int, str, float]],
    decisions: Iterable[Mapping[str, Any]],
    into: Mapping[str, str],
) -> dict[str, Any]:
    """Mean score per survey; per segment the person was in when answering; per rule, by the
    group of the person's latest exposure (treated, holdout) before the answer, or none."""
    seg_changes: dict[str, list[tuple[int, str, bool]]] = defaultdict(list)  # person -> (ts, segment, in)
    exposures: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # person -> (ts, rule, group)
    for d in decisions:
        pid, rule = d.get("profileId"), d.get("rule", {}).get("name")
        if not isinstance(pid, str) or not isinstance(rule, str):
            continue
        try:
            ts = parse_time_ms(str(d.get("time")))
        except ValueError:
            continue
        person = _root(into, pid)
        kind = str(d.get("type", "")).removeprefix("cx.trigger.")
        if rule == SEGMENT_RULE and kind in ("segment_entered", "segment_exited"):
            seg = d.get("context", {}).get("segment")
            if isinstance(seg, str):
                seg_changes[person].append((ts, seg, kind == "segment_entered"))
        elif d.get("outcome") in ("activated", "holdout"):
            exposures[person].append((ts, rule, "treated" if d["outcome"] == "activated" else "holdout"))
    rules = sorted({r for xs in exposures.values() for _, r, _ in xs})
    by_survey: dict[str, _Score] = defaultdict(_Score)
    by_segment: dict[str, dict[str, _Score]] = defaultdict(lambda: defaultdict(_Score))
    by_rule: dict[str, dict[str, dict[str, _Score]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(_Score))
    )
    for person, ts, survey, score in answers:
        by_survey[survey].add(score)
        member: dict[str, bool] = {}
        for t, seg, inside in sorted(seg_changes.get(person, [])):
            if t <= ts:
                member[seg] = inside
        for seg in sorted(s for s, inside in member.items() if inside) or ["(none)"]:
            by_segment[survey][seg].add(score)
        latest: dict[str, str] = {}
        for t, rule, group in sorted(exposures.get(person, [])):
            if t <= ts:
                latest[rule] = group
        for rule in rules:
            by_rule[survey][rule][latest.get(rule, "none")].add(score)
    return {
        s: {
            **by_survey[s].to_dict(),
            "bySegment": {g: x.to_dict() for g, x in sorted(by_segment[s].items())},
            "byRuleExposure": {
                r: {g: x.to_dict() for g, x in sorted(groups.items())}
                for r, groups in sorted(by_rule[s].items())
            },
        }
        for s in sorted(by_survey)
    }


def render(k: Mapping[str, Any]) -> str:
    """The KPIs as text."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"Program KPIs (as of the latest event read; {k['people']} people, {k['customers']} known customers)",
        f"  events from known people     {pct(k['knownEventShare'])}",
        f"  cross-channel reach (2+)     {pct(k['crossChannelReach'])}",
        f"  customers active, 30 days    {pct(k['active30dShare'])}",
        f"  customers active, 90 days    {pct(k['active90dShare'])}",
        f"  churned (quiet {k['churnDays']:g}+ days)   {k['churned']}",
        f"  repeat-purchase rate         {pct(k['repeatPurchaseRate'])}",
    ]
    for survey, s in k["surveys"].items():
        mean = s["meanScore"]
        lines.append(f"Survey {survey or '(unnamed)'}: {s['answers']} answers, mean score {mean:.2f}")
        for seg, x in s["bySegment"].items():
            lines.append(f"  segment {seg:<24} {x['answers']:>6} answers  mean {x['meanScore']:.2f}")
        for rule, groups in s["byRuleExposure"].items():
            parts = ", ".join(f"{g} {x['meanScore']:.2f} (n={x['answers']})" for g, x in groups.items())
            lines.append(f"  {rule}: {parts}")
    return "\n".join(lines) + "\n"

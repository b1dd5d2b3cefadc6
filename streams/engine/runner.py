"""Runs the enabled rules for one profile: events, due timers, merges. No I/O.

The decision stage hands it a profile's state; it returns what should happen
(:class:`Effects`): candidate triggers already decided by the governance step, and the
timer changes. The caller produces the records and saves state and timers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from rules.base import Outcome, Rule, RuleContext, Timer, TriggerSpec
from streams import metrics
from streams.consent.consent import apply_preferences, apply_signal, merge_consent, merge_preferences
from streams.consent.decide import Verdict, decide
from streams.consent.policy import Policy
from streams.engine.state import ProfileState
from streams.engine.timers import member, split_member
from streams.model import Event, JSONDict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Fired:
    """A trigger a rule produced, with the governance verdict on it."""

    rule: Rule
    profile_id: str
    spec: TriggerSpec
    verdict: Verdict
    origin_rx: int = 0  # wall ms the causing event reached intake (0 for timers)


@dataclass(slots=True)
class Effects:
    fired: list[Fired] = field(default_factory=list)
    set_timers: dict[str, tuple[int, JSONDict]] = field(default_factory=dict)
    cancel_timers: set[str] = field(default_factory=set)
    failed_rules: list[str] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.fired += other.fired
        for m in other.cancel_timers:
            self.set_timers.pop(m, None)
        self.cancel_timers |= other.cancel_timers
        for m, v in other.set_timers.items():
            self.cancel_timers.discard(m)
            self.set_timers[m] = v
        self.failed_rules += other.failed_rules


class Engine:
    def __init__(self, rules: Sequence[Rule], policy: Policy) -> None:
        self.rules = list(rules)
        self.by_name = {r.name: r for r in rules}
        self.policy = policy

    # ------------------------------------------------------------------ entry points
    def on_event(self, pid: str, state: ProfileState, event: Event, rx: int = 0) -> Effects:
        """Apply one event: consent and profile facts first, then every rule that wants it."""
        for sig in event.consent:
            apply_signal(state, sig)
        if event.country:
            state.country = event.country
        for i in event.identifiers:
            if i.type not in state.reach:
                state.reach.append(i.type)
        if event.traits:
            apply_preferences(state, event.traits, event.ts)
        eff = Effects()
        ctx = self._ctx(pid, state, event.ts)
        for rule in self.rules:
            if not rule.wants(event):
                continue
            try:
                out = rule.on_event(self._rule_state(state, rule), event, ctx)
            except Exception:
                self._failed(rule, eff, f"event {event.message_id}")
                continue
            eff.extend(self._apply(pid, state, rule, out, rx))
        return eff

    def on_timer(
        self, pid: str, state: ProfileState, timer_member: str, due: int, payload: JSONDict
    ) -> Effects:
        eff = Effects()
        _, rule_name, name = split_member(timer_member)
        rule = self.by_name.get(rule_name)
        state.timers.pop(f"{rule_name}|{name}", None)
        if rule is None:
            log.warning("timer %s belongs to rule %s, which is not enabled; dropped", timer_member, rule_name)
            return eff
        try:
            out = rule.on_timer(
                self._rule_state(state, rule), Timer(name, due, payload), self._ctx(pid, state, due)
            )
        except Exception:
            self._failed(rule, eff, f"timer {name}")
            return eff
        eff.extend(self._apply(pid, state, rule, out, 0))
        return eff

    def fire_until(self, pid: str, state: ProfileState, until: int) -> Effects:
        """Fire the profile's own timers due by ``until``, earliest first, until none is left.

        A timer a rule fires without re-arming is listed in ``cancel_timers``, so the
        caller removes it from the timer store too.
        """
        eff = Effects()
        while True:
            due = sorted((d, k) for k, d in state.timers.items() if d <= until)
            if not due:
                return eff
            d, key = due[0]
            rule, name = key.split("|", 1)
            m = member(pid, rule, name)
            eff.extend(self.on_timer(pid, state, m, d, {}))
            if key not in state.timers:
                eff.set_timers.pop(m, None)
                eff.cancel_timers.add(m)

    def merge(self, survivor_pid: str, survivor: ProfileState, absorbed: ProfileState) -> Effects:
        """Fold an absorbed profile's state (handed off with its timers) into the survivor's."""
        merge_consent(survivor, absorbed, self.policy.consent_merge)
        if survivor.country is None:
            survivor.country = absorbed.country
        survivor.reach = sorted(set(survivor.reach) | set(absorbed.reach))
        for ch, stamps in absorbed.caps.items():
            survivor.caps[ch] = sorted(set(survivor.caps.get(ch, [])) | set(stamps))
        for r, last in absorbed.cool.items():
            survivor.cool[r] = max(survivor.cool.get(r, last), last)
        merge_preferences(survivor, absorbed)
        eff = Effects()
        for rule in self.rules:
            a = absorbed.rules.get(rule.name)
            if a is None:
                continue
            s = survivor.rules.get(rule.name)
            try:
                merged = rule.merge(s or rule.initial_state(), a) if s is not None else a
            except Exception:
                self._failed(rule, eff, "merge")
                continue
            survivor.rules[rule.name] = merged
            # Timers of the absorbed profile follow the survivor; an earlier one wins a name clash.
            for key, due in absorbed.timers.items():
                rname, name = key.split("|", 1)
                if rname == rule.name and (key not in survivor.timers or due < survivor.timers[key]):
                    survivor.timers[key] = due
                    eff.set_timers[member(survivor_pid, rname, name)] = (due, {})
        return eff

    # ------------------------------------------------------------------ helpers
    def _ctx(self, pid: str, state: ProfileState, now: int) -> RuleContext:
        return RuleContext(pid, now, frozenset(state.reach), state.country)

    def _rule_state(self, state: ProfileState, rule: Rule) -> JSONDict:
        s = state.rules.get(rule.name)
        return dict(s) if s is not None else rule.initial_state()

    def _failed(self, rule: Rule, eff: Effects, what: str) -> None:
        metrics.RULE_ERRORS.labels(rule.name).inc()
        log.exception("rule %s failed on %s; isolated, the other rules ran", rule.name, what)
        eff.failed_rules.append(rule.name)

    def _apply(self, pid: str, state: ProfileState, rule: Rule, out: Outcome, rx: int) -> Effects:
        eff = Effects()
        state.rules[rule.name] = out.state
        timers = state.timers
        # The profile's state lists its timers, so operations that change nothing are not sent
        # (every activity re-arms inactive_45d; every order cancels a cart timer that may not exist).
        for name in out.cancel_timers:
            if timers.pop(f"{rule.name}|{name}", None) is not None:
                eff.cancel_timers.add(member(pid, rule.name, name))
        for t in out.set_timers:
            key = f"{rule.name}|{t.name}"
            if timers.get(key) == t.due and not t.payload:
                continue
            timers[key] = t.due
            m = member(pid, rule.name, t.name)
            eff.cancel_timers.discard(m)
            eff.set_timers[m] = (t.due, t.payload)
        for spec in out.triggers:
            last = state.cool.get(rule.name)
            if rule.cooldown_ms and last is not None and abs(spec.time - last) < rule.cooldown_ms:
                continue  # within the rule's cooldown: not a new trigger
            if rule.cooldown_ms:
                state.cool[rule.name] = spec.time
            # consent, preferences and caps as they stand at the trigger's event time
            topic = getattr(rule, "topic", None)  # optional: a rule may name the topic it is about
            verdict = decide(
                self.policy,
                state,
                rule.purpose,
                rule.channels,
                spec.time,
                topic=topic if isinstance(topic, str) else None,
            )
            eff.fired.append(Fired(rule, pid, spec, verdict, rx))
        return eff

"""Runs the enabled rules for one profile: events, due timers, merges. No I/O.

The decision stage hands it a profile's state; it returns what should happen
(:class:`Effects`): candidate triggers already decided by the governance step, the
timer changes, and the rule failures. The caller produces the records and saves state
and timers.

The rule boundary (what a rule may do to the engine): a rule gets a deep copy of its
state (a JSON round trip, the same copy it would get from Redis), and what it returns is
checked before anything is applied: an :class:`~rules.base.Outcome` whose state, trigger
contexts and timer payloads are JSON objects no deeper than :data:`MAX_RULE_DEPTH`. A rule
that raises or returns something else costs that rule that one event, timer or merge: its
state and timers stay as they were, the other rules run, and a :class:`RuleFailure` says
which rule, which method, on what, what was expected and what arrived.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rules.base import Outcome, Rule, RuleContext, Timer, TimerSpec, TriggerSpec
from streams import metrics
from streams.consent.consent import apply_preferences, apply_signal, merge_consent, merge_preferences
from streams.consent.decide import Verdict, decide
from streams.consent.policy import Policy
from streams.engine import computed, recent
from streams.engine.effects import Effects, Fired, InvalidOutcome, RuleFailure
from streams.engine.shadow import ShadowRule, shadow_verdict
from streams.exceptions import where
from streams.measure import exposures, holdout
from streams.model import Event, JSONDict, dumps, loads
from streams.state import ProfileState, TimerId

log = logging.getLogger(__name__)

#: Deepest JSON a rule may keep in its state, a trigger context or a timer payload. orjson
#: writes at most 255 levels, and a rule state travels inside a merge hand-off at level 4
#: (envelope, state, rules, the rule's state): 240 leaves that margin, and lies above the
#: deepest event intake accepts (``CXSTREAM_MAX_DEPTH`` <= 200), so a rule that keeps an event
#: property in its state is never refused for its depth.
MAX_RULE_DEPTH = 240


def _too_deep(obj: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return False


def _json_object(what: str, value: Any) -> JSONDict:
    """``value`` as the JSON object it will be stored as (a fresh copy), or :class:`InvalidOutcome`."""
    if not isinstance(value, dict):
        raise InvalidOutcome(f"{what} must be a dict, got {type(value).__name__}")
    if not value:  # most timer payloads and many trigger contexts: no round trip for {}
        return {}
    try:
        raw = dumps(value)
    except TypeError as exc:  # a set, an object, a non-str key, a too-deep nesting (orjson: 255)
        raise InvalidOutcome(f"{what} must be JSON-serializable ({exc})") from None
    copy: JSONDict = loads(raw)
    # nesting needs a '{' or '[' per level, and its closing bracket: with fewer bytes than two a
    # level, or fewer opening brackets in all, the walk is not needed (most states: no count)
    if (
        len(raw) > 2 * MAX_RULE_DEPTH
        and raw.count(b"{") + raw.count(b"[") > MAX_RULE_DEPTH
        and _too_deep(copy, MAX_RULE_DEPTH)
    ):
        raise InvalidOutcome(f"{what} nests deeper than {MAX_RULE_DEPTH} levels")
    return copy


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def checked(out: Any) -> Outcome:
    """The rule's return value, checked and normalized (JSON round trip), or :class:`InvalidOutcome`.

    Nothing of a refused outcome is applied, so a half-made change can never be kept.
    """
    if not isinstance(out, Outcome):
        raise InvalidOutcome(f"expected an Outcome, got {type(out).__name__}")
    state = _json_object("Outcome.state", out.state)
    triggers: list[TriggerSpec] = []
    for t in _as_list("Outcome.triggers", out.triggers):
        if not isinstance(t, TriggerSpec):
            raise InvalidOutcome(f"Outcome.triggers holds a {type(t).__name__}, expected TriggerSpec")
        if not isinstance(t.key, str) or not t.key or not _is_int(t.time):
            raise InvalidOutcome("TriggerSpec needs a non-empty str key and an int time (ms)")
        if t.name is not None and (not isinstance(t.name, str) or not t.name):
            raise InvalidOutcome("TriggerSpec.name must be None or a non-empty str")
        triggers.append(TriggerSpec(t.key, t.time, _json_object("TriggerSpec.context", t.context), t.name))
    timers: list[TimerSpec] = []
    for s in _as_list("Outcome.set_timers", out.set_timers):
        if not isinstance(s, TimerSpec):
            raise InvalidOutcome(f"Outcome.set_timers holds a {type(s).__name__}, expected TimerSpec")
        if not isinstance(s.name, str) or not s.name or "|" in s.name or not _is_int(s.due):
            raise InvalidOutcome("TimerSpec needs a non-empty str name without '|' and an int due (ms)")
        if not isinstance(s.keep_earlier, bool):
            raise InvalidOutcome("TimerSpec.keep_earlier must be a bool")
        timers.append(TimerSpec(s.name, s.due, _json_object("TimerSpec.payload", s.payload), s.keep_earlier))
    cancel = _as_list("Outcome.cancel_timers", out.cancel_timers)
    if not all(isinstance(c, str) for c in cancel):
        raise InvalidOutcome("Outcome.cancel_timers must hold timer names (str)")
    return Outcome(state, triggers, timers, list(cancel))


def _as_list(what: str, v: Any) -> list[Any]:
    if not isinstance(v, (list, tuple)):
        raise InvalidOutcome(f"{what} must be a list, got {type(v).__name__}")
    return list(v)


class Engine:
    def __init__(self, rules: Sequence[Rule], policy: Policy, shadow: Sequence[Rule] = ()) -> None:
        """``shadow``: rules run in shadow (:mod:`streams.engine.shadow`), after the live ones."""
        self.rules = [*rules, *(ShadowRule(r) for r in shadow)]
        self.by_name = {r.name: r for r in self.rules}
        #: per rule, its ``calls`` and ``events`` when it keeps :meth:`Rule.wants` as written
        #: (most do): the engine asks them here, in compiled code, not through an interpreted
        #: call per rule and event. ``None``: the rule's own ``wants`` is called.
        self._wants = [(r, _plain_wants(r)) for r in self.rules]
        self.policy = policy
        m = policy.measurement
        live = {r.name: r for r in rules}
        metrics.measured_rules(live, [r for r in live if m.conversions(r) is not None])

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
        # computed traits before the rules, so a rule sees the event counted (exactly once: the
        # stage skips a record already applied, state.applied_offset)
        state.computed = computed.update(state.computed, event)
        eff = Effects()
        if state.expo:  # conversions of earlier triggers first: a trigger this event causes is later
            eff.conversions = exposures.convert(state.expo, pid, event, self.policy.measurement)
        ctx = self._ctx(pid, state, event.ts)
        call, name = event.call, event.name
        for rule, plain in self._wants:
            if plain is not None:  # Rule.wants, as written there
                if not (call in plain[0] or (call == "track" and name in plain[1])):
                    continue
            else:
                try:
                    if not rule.wants(event):
                        continue
                except Exception as exc:
                    eff.failures.append(self._failed(rule, pid, "wants", event.message_id, event.ts, exc))
                    continue
            out = self._call(
                rule,
                pid,
                "on_event",
                event.message_id,
                event.ts,
                functools.partial(rule.on_event, self._rule_state(state, rule), event, ctx),
            )
            if isinstance(out, RuleFailure):
                eff.failures.append(out)
                continue
            eff.extend(self._apply(pid, state, rule, out, rx))
        return eff

    def on_timer(
        self, pid: str, state: ProfileState, timer_member: str, due: int, payload: JSONDict
    ) -> Effects:
        """Run a due timer. If the rule fails, the timer stays in ``state.timers`` (the caller
        retries it a bounded number of times) and ``failures`` says why."""
        eff = Effects()
        tid = TimerId.parse(timer_member)
        rule_name, name, key = tid.rule, tid.name, tid.key
        rule = self.by_name.get(rule_name)
        if rule is None:
            state.timers.pop(key, None)
            state.timer_payloads.pop(key, None)
            log.warning("timer %s belongs to rule %s, which is not enabled; dropped", timer_member, rule_name)
            return eff
        ctx = self._ctx(pid, state, due)
        timer = Timer(name, due, _copy(payload))
        out = self._call(
            rule,
            pid,
            "on_timer",
            timer_member,
            due,
            functools.partial(rule.on_timer, self._rule_state(state, rule), timer, ctx),
        )
        if isinstance(out, RuleFailure):
            eff.failures.append(out)
            return eff
        state.timers.pop(key, None)
        state.timer_payloads.pop(key, None)
        eff.extend(self._apply(pid, state, rule, out, 0))
        return eff

    def fire_until(
        self,
        pid: str,
        state: ProfileState,
        until: int,
        on_failure: Callable[[RuleFailure], bool] | None = None,
    ) -> Effects:
        """Fire the profile's own timers due by ``until``, earliest first, until none is left.

        A timer a rule fires without re-arming is listed in ``cancel_timers``, so the
        caller removes it from the timer store too. A timer whose rule fails is given up
        (removed, its failure reported) unless ``on_failure`` returns True (keep it).
        """
        eff = Effects()
        while True:
            due = sorted((d, k) for k, d in state.timers.items() if d <= until)
            if not due:
                return eff
            d, key = due[0]
            m = str(TimerId.from_key(pid, key))
            one = self.on_timer(pid, state, m, d, state.timer_payloads.get(key, {}))
            eff.extend(one)
            if one.failures and not (on_failure and on_failure(one.failures[0])):
                state.timers.pop(key, None)
                state.timer_payloads.pop(key, None)
            if key not in state.timers:
                eff.set_timers.pop(m, None)
                eff.cancel_timers.add(m)
            elif state.timers[key] <= d and one.failures:
                return eff  # kept for a retry later: do not spin on it now

    def merge(
        self,
        survivor_pid: str,
        survivor: ProfileState,
        absorbed: ProfileState,
        absorbed_pid: str = "",
        at: int = 0,
    ) -> Effects:
        """Fold an absorbed profile's state (handed off with its timers) into the survivor's."""
        merge_consent(survivor, absorbed, self.policy.consent_merge)
        if survivor.country is None:
            survivor.country = absorbed.country
        survivor.reach = sorted(set(survivor.reach) | set(absorbed.reach))
        for ch, stamps in absorbed.caps.items():
            survivor.caps[ch] = sorted(set(survivor.caps.get(ch, [])) | set(stamps))
        for r, last in absorbed.cooldowns.items():
            survivor.cooldowns[r] = max(survivor.cooldowns.get(r, last), last)
        merge_preferences(survivor, absorbed)
        survivor.expo = exposures.merged(survivor.expo, absorbed.expo)
        survivor.computed = computed.merge(survivor.computed, absorbed.computed)
        survivor.recent = recent.merge(survivor.recent, absorbed.recent)
        eff = Effects()
        for rule in self.rules:
            a = absorbed.rules.get(rule.name)
            if a is None:
                continue
            s = survivor.rules.get(rule.name)
            if s is not None:
                merged = self._call(
                    rule, survivor_pid, "merge", absorbed_pid, at, functools.partial(_merged, rule, s, a)
                )
                if isinstance(merged, RuleFailure):
                    eff.failures.append(merged)
                    continue
                survivor.rules[rule.name] = merged.state
            else:
                survivor.rules[rule.name] = a
            # Timers of the absorbed profile follow the survivor; an earlier one wins a name clash.
            for key, due in absorbed.timers.items():
                tid = TimerId.from_key(survivor_pid, key)
                if tid.rule == rule.name and (key not in survivor.timers or due < survivor.timers[key]):
                    survivor.timers[key] = due
                    payload = absorbed.timer_payloads.get(key, {})
                    if payload:
                        survivor.timer_payloads[key] = payload
                    else:
                        survivor.timer_payloads.pop(key, None)
                    eff.set_timers[str(tid)] = (due, payload)
        return eff

    # ------------------------------------------------------------------ helpers
    def _ctx(self, pid: str, state: ProfileState, now: int) -> RuleContext:
        return RuleContext(
            pid, now, frozenset(state.reach), state.country, computed=computed.RuleView(state.computed)
        )

    def _rule_state(self, state: ProfileState, rule: Rule) -> JSONDict:
        s = state.rules.get(rule.name)
        return _copy(s) if s is not None else rule.initial_state()

    def _call(
        self,
        rule: Rule,
        pid: str,
        method: str,
        target: str,
        time: int,
        fn: Callable[[], Any],
    ) -> Outcome | RuleFailure:
        try:
            return checked(fn())
        except Exception as exc:
            return self._failed(rule, pid, method, target, time, exc)

    def _failed(
        self, rule: Rule, pid: str, method: str, target: str, time: int, exc: Exception
    ) -> RuleFailure:
        metrics.RULE_ERRORS.labels(rule.name).inc()
        if isinstance(exc, InvalidOutcome):
            failure = RuleFailure(rule, pid, method, target, time, "InvalidOutcome", str(exc))
        else:
            failure = RuleFailure(
                rule,
                pid,
                method,
                target,
                time,
                type(exc).__name__,
                f"{rule.name}.{method} raised {type(exc).__name__} at {where(exc)}",
            )
        # No exception text: it may carry event values (emails, phones). Class and place only.
        log.error(
            "rule %s failed in %s on %s: %s; isolated, the other rules ran",
            rule.name,
            method,
            target,
            failure.detail,
        )
        return failure

    def _apply(self, pid: str, state: ProfileState, rule: Rule, out: Outcome, rx: int) -> Effects:
        eff = Effects()
        state.rules[rule.name] = out.state
        timers = state.timers
        # The profile's state lists its timers, so operations that change nothing are not sent
        # (every activity re-arms inactive_45d; every order cancels a cart timer that may not exist).
        for name in out.cancel_timers:
            tid = TimerId(pid, rule.name, name)
            state.timer_payloads.pop(tid.key, None)
            if timers.pop(tid.key, None) is not None:
                eff.cancel_timers.add(str(tid))
        for t in out.set_timers:
            tid = TimerId(pid, rule.name, t.name)
            key = tid.key
            cur = timers.get(key)
            if (
                cur is not None
                and (cur == t.due or (t.keep_earlier and cur < t.due))
                and state.timer_payloads.get(key, {}) == t.payload
            ):
                continue
            timers[key] = t.due
            if t.payload:
                state.timer_payloads[key] = t.payload
            else:
                state.timer_payloads.pop(key, None)
            m = str(tid)
            eff.cancel_timers.discard(m)
            eff.set_timers[m] = (t.due, t.payload)
        for spec in out.triggers:
            if isinstance(rule, ShadowRule):  # recorded only: no cap stamps, cooldown, holdout, exposure
                verdict = shadow_verdict(self.policy, state, rule, spec.time)
                eff.fired.append(Fired(rule.inner, pid, spec, verdict, rx, shadow=True))
                continue
            last = state.cooldowns.get(rule.name)
            if rule.cooldown_ms and last is not None and abs(spec.time - last) < rule.cooldown_ms:
                continue  # within the rule's cooldown: not a new trigger
            if rule.cooldown_ms:
                state.cooldowns[rule.name] = spec.time
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
            eff.fired.append(self._measured(pid, state, rule, spec, verdict, rx))
        return eff

    def _measured(
        self, pid: str, state: ProfileState, rule: Rule, spec: TriggerSpec, verdict: Verdict, rx: int
    ) -> Fired:
        """The trigger, held out if the profile is in the rule's holdout, and (activated or held
        out) opened as an exposure when the rule measures conversions.

        A held-out trigger was decided like any other: its cooldown and the frequency-cap stamps
        of the channels that would have carried it are kept, so both groups see the same later
        decisions (a holdout that skipped the caps would be triggered more often afterwards).
        """
        m = self.policy.measurement
        if not verdict.activated:
            return Fired(rule, pid, spec, verdict, rx)
        out = holdout.held_out(pid, rule.name, m.holdout_bucket_limit(rule.name))
        conv = m.conversions(rule.name)
        if conv is not None:
            exposures.open_exposure(
                state.expo,
                rule=rule.name,
                version=rule.version,
                key=spec.key,
                group=holdout.HOLDOUT if out else holdout.TREATED,
                at=spec.time,
                window_ms=conv[1],
            )
        return Fired(rule, pid, spec, verdict, rx, holdout=out)


def _plain_wants(rule: Rule) -> tuple[frozenset[str], frozenset[str]] | None:
    """The rule's ``calls`` and ``events`` if it keeps :meth:`Rule.wants` as written, else
    ``None``: its own ``wants`` is called (so is one whose ``calls`` or ``events`` are not sets of
    names, which then fails per event, isolated, as before, not at start-up)."""
    if type(rule).wants is not Rule.wants or "wants" in getattr(rule, "__dict__", {}):
        return None
    try:
        return frozenset(rule.calls), frozenset(rule.events)
    except TypeError:
        return None


def _merged(rule: Rule, survivor: JSONDict, absorbed: JSONDict) -> Outcome:
    return Outcome(rule.merge(_copy(survivor), _copy(absorbed)))


def _copy(d: Mapping[str, Any]) -> JSONDict:
    """A deep copy by JSON round trip: what the rule would get back from Redis, at orjson speed."""
    out: JSONDict = loads(dumps(d))
    return out

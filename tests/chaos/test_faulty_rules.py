"""Rules that raise or return garbage, on the real local stack: each failing call is one ``error``
decision, nothing else changes (the built-in rules' triggers are those of a clean run), and a
timer whose rule raises is retried, then dead-lettered with stage ``timer``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from chaos.ledger import (
    VALID,
    account,
    alive_check,
    by_outcome,
    clean_run,
    demo_slice,
    headers,
    produce_tracked,
    read_topic,
    repeated_ids,
    trigger_set,
)
from helpers import loan_checks, running_worker

from streams.constants import TIMER_MAX_ATTEMPTS
from streams.intake import Intake, ms_to_iso
from streams.model import Event, SourceRef
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.testing import at

pytestmark = pytest.mark.stack

BUILTIN = ("cart_abandoned", "inactive_45d", "loan_eligibility_repeat")


def expected_errors(values: list[bytes]) -> dict[str, tuple[str, str]]:
    """Every ``error`` decision the faulty rules must cause: id -> (rule, messageId)."""
    import faulty  # on sys.path through the faulty_on_path fixture

    intake = Intake()
    out: dict[str, tuple[str, str]] = {}
    rules = [faulty.RaisesSometimes(), faulty.ReturnsGarbage()]
    for n, v in enumerate(values):
        ev = intake.parse(v, None, SourceRef("f", 0, n), 2**62)
        assert isinstance(ev, Event)
        for r in rules:
            if r.wants(ev) and r.fails_on(ev):
                out[trigger_id(r.name, r.version, f"error|on_event|{ev.message_id}")] = (
                    r.name,
                    ev.message_id,
                )
    return out


def test_failing_rules_cost_one_error_decision_each_and_change_no_other_trigger(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    faulty_on_path: str,
) -> None:
    started = time.monotonic()
    rules = (*BUILTIN, f"{faulty_on_path}:RaisesSometimes", f"{faulty_on_path}:ReturnsGarbage")
    s = make_settings(clock="event", watermark_idle_timeout=2.0, rules=rules)
    valid = demo_slice(300, every=5)
    values = [v for _, v in valid]
    clean = asyncio.run(clean_run(s.model_copy(update={"rules": BUILTIN}), values))
    with_faults = asyncio.run(clean_run(s, values))
    want_errors = expected_errors(values)
    assert len(want_errors) > 30, "the faulty rules should fail often enough to count"
    topics(s)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        alive = alive_check(proc, log)
        sent = produce_tracked(s, [(k, v, VALID) for k, v in valid])
        ledger, dls = account(s, sent, timeout=90, alive=alive)
        n_decisions = len(clean.decisions) + len(want_errors)
        decs = read_topic(
            s, s.topic_decisions, until=lambda ms: len(ms) >= n_decisions, timeout=60, idle=2.0, alive=alive
        )
        acts = read_topic(
            s, s.topic_activations, until=lambda ms: len(ms) >= len(clean.activations), timeout=30, idle=1.0
        )
        alive()
    took = time.monotonic() - started
    dec_values = [m.value() for m in decs]
    outcomes = by_outcome(dec_values)
    errors = outcomes.get("error", [])
    counts = {k: len(v) for k, v in outcomes.items()}
    print(
        f"\n[chaos b] {ledger.summary()}\n[chaos b] decisions {len(decs)} ({counts}), "
        f"expected errors {len(want_errors)}, activations {len(acts)} (clean run {len(clean.activations)}), "
        f"dead letters {len(dls)}, {took:.1f}s"
    )
    assert not ledger.lost and not ledger.misplaced and ledger.balanced, ledger.summary()
    assert ledger.accounted == len(valid) and not ledger.dead, "a rule failure is not a record failure"
    assert not ledger.uncommitted, ledger.uncommitted
    assert not dls, [headers(m) for m in dls]
    # one error decision per failing call, named after the rule, the method and the event
    assert not repeated_ids(dec_values)
    assert {e["id"] for e in errors} == set(want_errors)
    for e in errors:
        rule, mid = want_errors[e["id"]]
        assert e["error"]["rule"] == rule and e["error"]["method"] == "on_event" and e["error"]["on"] == mid
        assert e["error"]["exception"] == ("RuntimeError" if rule == "raises_sometimes" else "InvalidOutcome")
    # the same as `cxstream simulate` with the same faulty rules, and the built-ins as without them
    assert sorted(dec_values) == sorted(with_faults.decisions)
    assert {e["id"] for e in outcomes.get("activated", []) + outcomes.get("suppressed", [])} == {
        orjson.loads(v)["id"] for v in clean.decisions
    }
    values_a = [m.value() for m in acts]
    assert not repeated_ids(values_a)
    assert trigger_set(values_a) == trigger_set(clean.activations)


def armed(user: str, ts: int) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": "Chaos Timer Armed",
            "messageId": f"{user}-arm",
            "userId": user,
            "timestamp": ms_to_iso(ts),
            "context": {"channel": "web", "location": {"country": "US"}},
        }
    )


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_a_timer_whose_rule_raises_is_retried_then_dead_lettered_and_the_rest_goes_on(
    make_settings: Callable[..., Settings],
    topics: Callable[[Settings], None],
    tmp_path: Path,
    faulty_on_path: str,
) -> None:
    """Wall clock: the armed timers are due at once; each attempt holds a 30 s lease."""
    started = time.monotonic()
    s = make_settings(rules=("loan_eligibility_repeat", f"{faulty_on_path}:TimerRaises"))
    t0 = at("2026-06-01T08:00:00Z")
    armers = [f"armer{i}" for i in range(3)]
    checkers = [f"checker{i:02d}" for i in range(20)]
    values = [v for u in checkers for _, v in loan_checks(u, t0)] + [armed(u, t0) for u in armers]
    clean = asyncio.run(clean_run(s.model_copy(update={"rules": ("loan_eligibility_repeat",)}), values))
    assert len(clean.activations) == len(checkers)
    topics(s)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        alive = alive_check(proc, log)
        sent = produce_tracked(s, [(orjson.loads(v)["userId"].encode(), v, VALID) for v in values])
        ledger, _ = account(s, sent, timeout=90, alive=alive)
        timer_dls = read_topic(
            s,
            s.topic_deadletter,
            until=lambda ms: len(ms) >= len(armers),
            timeout=180,
            idle=2.0,
            alive=alive,
        )
        decs = read_topic(
            s,
            s.topic_decisions,
            until=lambda ms: len(ms) >= len(checkers) + len(armers),
            timeout=30,
            idle=1.0,
            alive=alive,
        )
        acts = read_topic(
            s, s.topic_activations, until=lambda ms: len(ms) >= len(checkers), timeout=30, idle=1
        )
        alive()
    took = time.monotonic() - started
    errors = by_outcome([m.value() for m in decs]).get("error", [])
    print(
        f"\n[chaos b-timer] {ledger.summary()}\n[chaos b-timer] timer dead letters {len(timer_dls)}, "
        f"error decisions {len(errors)}, activations {len(acts)} (clean run {len(clean.activations)}), "
        f"{took:.1f}s"
    )
    assert not ledger.lost and not ledger.misplaced and ledger.balanced, ledger.summary()
    assert not ledger.uncommitted, ledger.uncommitted
    assert len(timer_dls) == len(armers)
    pids = set()
    for m in timer_dls:
        h = headers(m)
        assert h["cx-error-code"] == "processing_error"
        assert h["cx-error-stage"] == "timer"
        assert h["cx-error-rule"] == "timer_raises"
        assert h["cx-error-exception"] == "RuntimeError"
        assert h["cx-source-topic"] == s.topic_profiled
        assert f"failed {TIMER_MAX_ATTEMPTS} times" in h["cx-error-detail"]
        body = orjson.loads(m.value())
        assert body["rule"] == "timer_raises" and body["payload"]["armed"].endswith("-arm")
        pids.add(body["profileId"])
    assert len(pids) == len(armers)
    assert len(errors) == len(armers)
    assert all(e["error"]["method"] == "on_timer" and e["profileId"] in pids for e in errors)
    values_a = [m.value() for m in acts]
    assert not repeated_ids(values_a)
    assert trigger_set(values_a) == trigger_set(clean.activations)
    assert took > 2 * 30, "three attempts, one per 30 s lease"

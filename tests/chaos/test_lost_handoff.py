"""A hand-off that never comes: a profile is told (``expect``) to wait for an absorbed profile's
state whose ``merge`` never arrives. With ``CXSTREAM_HANDOFF_TIMEOUT=5`` its events are held, then
decided once the timeout has passed, and ``cxstream_handoff_timeouts_total`` says so once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from chaos.ledger import (
    VALID,
    account,
    alive_check,
    produce_to_partition,
    produce_tracked,
    read_topic,
    scrape,
    wait_scrape,
)
from helpers import running_worker

from streams.intake import ms_to_iso
from streams.pipeline import envelope
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.stack import free_port
from streams.testing import at

pytestmark = [pytest.mark.stack, pytest.mark.chaos, pytest.mark.timeout(300)]

DAY = 86_400_000
TIMEOUT = 5.0


def identify(user: str, ts: int) -> bytes:
    return orjson.dumps(
        {
            "type": "identify",
            "messageId": f"{user}-id",
            "userId": user,
            "timestamp": ms_to_iso(ts),
            "traits": {"email": f"{user}@example.com"},
            "context": {"channel": "web", "location": {"country": "US"}},
        }
    )


def check(user: str, i: int, ts: int) -> bytes:
    return orjson.dumps(
        {
            "type": "track",
            "event": "Loan Eligibility Checked",
            "messageId": f"{user}-c{i}",
            "userId": user,
            "timestamp": ms_to_iso(ts + i * DAY),
            "properties": {"product": "auto_loan"},
            "context": {"channel": "web", "location": {"country": "US"}},
        }
    )


def test_events_held_for_a_lost_hand_off_are_decided_after_the_timeout(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    port = free_port()
    s = make_settings(handoff_timeout=TIMEOUT, metrics_port=port, rules=("loan_eligibility_repeat",))
    topics(s)
    t0 = at("2026-06-01T08:00:00Z")
    log = tmp_path / "worker.log"
    sent = []
    with running_worker(s, log) as proc:
        alive = alive_check(proc, log)
        sent += produce_tracked(s, [(b"lost", identify("lost", t0), VALID)])
        created = read_topic(
            s, s.topic_identity_changes, until=lambda ms: len(ms) >= 1, timeout=90, alive=alive
        )
        pid = orjson.loads(created[0].value())["profileId"]
        # the survivor is told a hand-off is coming; the absorbed profile's `merge` never will
        produce_to_partition(
            s,
            s.topic_profiled,
            envelope.partition_for(pid, s.partitions),
            pid.encode(),
            envelope.expect_record(pid, "p_lost_never_merged", t0),
        )
        expect_at = time.monotonic()
        sent += produce_tracked(s, [(b"lost", check("lost", i, t0), VALID) for i in range(1, 4)])
        sent += produce_tracked(s, [(b"free", check("free", i, t0), VALID) for i in range(1, 4)])
        want = trigger_id("loan_eligibility_repeat", 1, "lost-c3")
        control = trigger_id("loan_eligibility_repeat", 1, "free-c3")

        def decided(ms: list[object]) -> set[str]:
            return {orjson.loads(m.value())["id"] for m in ms}  # type: ignore[attr-defined]

        first = read_topic(
            s, s.topic_decisions, until=lambda ms: control in decided(ms), timeout=60, alive=alive
        )
        held_while_waiting = want not in decided(first) and time.monotonic() - expect_at < TIMEOUT
        # no further input: the timeout alone must release the held events
        later = read_topic(
            s,
            s.topic_decisions,
            until=lambda ms: want in decided(ms),
            timeout=TIMEOUT + 25,
            alive=alive,
        )
        released_by_timeout = want in decided(later)
        released_after = time.monotonic() - expect_at
        timeouts_then = scrape(port, "cxstream_handoff_timeouts_total")
        nudged = False
        if not released_by_timeout:  # how it behaves with one more event for that person
            nudged = True
            sent += produce_tracked(s, [(b"lost", check("lost", 4, t0), VALID)])
            later = read_topic(
                s, s.topic_decisions, until=lambda ms: want in decided(ms), timeout=30, alive=alive
            )
        timeouts = wait_scrape(port, "cxstream_handoff_timeouts_total", 1.0, 10)
        ledger, _ = account(s, sent, timeout=30, alive=alive)
        alive()
    print(
        f"\n[chaos d] profile {pid}: held while waiting={held_while_waiting}, decided by the timeout "
        f"alone={released_by_timeout} after {released_after:.1f}s, handoff timeouts metric "
        f"{timeouts_then} -> {timeouts}; nudged with one more event={nudged}, decided then="
        f"{want in decided(later)}\n[chaos d] {ledger.summary()}"
    )
    assert not ledger.lost and not ledger.misplaced and ledger.balanced, ledger.summary()
    assert not ledger.uncommitted, ledger.uncommitted
    assert want in decided(later), "the held events were never decided"
    assert timeouts == 1.0, f"cxstream_handoff_timeouts_total is {timeouts}"
    assert released_by_timeout, (
        f"the held events of {pid} were still undecided {released_after:.0f}s after the expect "
        f"(timeout {TIMEOUT}s) with no further input; "
        + ("one more event for the person released them" if want in decided(later) else "")
    )

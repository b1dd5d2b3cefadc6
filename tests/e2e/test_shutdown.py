"""Health endpoints and SIGTERM on real workers (contract, section 10), on the local stack.

Some workers here are slowed down on purpose: their intake takes ``SLOW`` seconds per batch
(a patch applied in the worker process, before ``cxstream worker`` runs), so a signal surely
lands while a batch is in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.error import HTTPError
from urllib.request import urlopen

import orjson
import pytest
from helpers import consume, json_values, running_worker, stop_worker

from streams.health import EXIT_SHUTDOWN_TIMEOUT
from streams.intake import ms_to_iso
from streams.replay import replay_file
from streams.settings import Settings
from streams.sinks.records import trigger_id
from streams.stack import _die_with_parent, free_port
from streams.testing import at

pytestmark = pytest.mark.stack

RULE = "loan_eligibility_repeat"
DAY = 86_400_000

#: run in the worker process: every intake batch waits SLOW seconds first, and says so
SLOW_WORKER = """
import asyncio, os, sys
from streams import runtime
from streams.cli import main

slow, IntakeStage = float(os.environ["SLOW"]), runtime.IntakeStage

# the worker's intake stage, each batch SLOW seconds later: a wrapper, not a subclass or a
# replaced method (the stage is compiled after `make native`, and a compiled class allows neither)
class Slowed:
    def __init__(self, *args, **kwargs):
        self.stage = IntakeStage(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.stage, name)

    async def process(self, batch, now_ms):
        print(f"SLOW BATCH {len(batch)}", file=sys.stderr, flush=True)
        await asyncio.sleep(slow)
        out = await self.stage.process(batch, now_ms)
        print(f"SLOW DONE {len(batch)}", file=sys.stderr, flush=True)
        return out

runtime.IntakeStage = Slowed
sys.argv = ["cxstream", "worker"]
main()
"""


#: run in the worker process: every decide commit waits SLOW seconds first (it lands behind its
#: batch, which the worker acks only once it has), and says so
SLOW_COMMIT_WORKER = """
import asyncio, os, sys
from streams import runtime
from streams.cli import main

slow, persist = float(os.environ["SLOW"]), runtime.Runtime._persist

async def slowed(self, result):
    print(f"SLOW COMMIT {len(result.records)}", file=sys.stderr, flush=True)
    await asyncio.sleep(slow)
    await persist(self, result)
    print("COMMIT DONE", file=sys.stderr, flush=True)

runtime.Runtime._persist = slowed
sys.argv = ["cxstream", "worker"]
main()
"""


def get(port: int, path: str) -> tuple[int | None, str]:
    try:
        with urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode().strip()
    except HTTPError as err:
        return err.code, err.read().decode().strip()
    except OSError as err:  # not listening yet
        return None, type(err).__name__


@contextlib.contextmanager
def slow_worker(
    settings: Settings, log: Path, slow: float, code: str = SLOW_WORKER
) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    env.update(settings.to_env())
    env["SLOW"] = str(slow)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
    try:
        yield proc
    finally:
        stop_worker(proc, timeout=5)


def wait_for(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"no {text!r} in the worker log:\n" + log.read_text()[-3000:]
        time.sleep(0.1)


def sigterm(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM now; returns the time it was sent."""
    os.killpg(proc.pid, signal.SIGTERM)
    return time.monotonic()


def sigterm_at(proc: subprocess.Popen[bytes], log: Path, marker: str) -> tuple[int, float, str]:
    """SIGTERM once ``marker`` is in the log: the exit code, seconds to exit, and the log."""
    wait_for(log, marker)
    start = sigterm(proc)
    code = proc.wait(timeout=30)
    return code, time.monotonic() - start, log.read_text()


def committed(settings: Settings, topic: str) -> int:
    """Offsets of ``topic`` committed by the app's consumer group, summed over partitions."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(settings.partitions)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def loan_journey(user: str, start: int) -> list[dict[str, object]]:
    """Identify, then three loan checks in three days: one trigger (as in test_worker)."""
    evs: list[dict[str, object]] = [
        {
            "type": "identify",
            "messageId": f"{user}-id",
            "userId": user,
            "timestamp": ms_to_iso(start),
            "traits": {"email": f"{user}@example.com"},
            "context": {
                "channel": "web",
                "location": {"country": "US"},
                "consent": {"categoryPreferences": {"marketing": True}},
            },
        }
    ]
    for i in range(3):
        evs.append(
            {
                "type": "track",
                "event": "Loan Eligibility Checked",
                "messageId": f"{user}-check-{i}",
                "userId": user,
                "timestamp": ms_to_iso(start + (i + 1) * DAY),
                "properties": {"product": "personal_loan", "amount": 12000},
                "context": {"channel": "web"},
            }
        )
    return evs


def write_jsonl(path: Path, events: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def journeys(tmp_path: Path, people: list[str]) -> Path:
    start = at("2026-04-06T08:00:00Z")
    return write_jsonl(tmp_path / "j.jsonl", [e for p in people for e in loan_journey(p, start)])


def expected_ids(people: list[str]) -> set[str]:
    return {trigger_id(RULE, 1, f"{p}-check-2") for p in people}


def test_readyz_turns_200_once_partitions_are_assigned(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    port = free_port()
    s = make_settings(rules=(RULE,), metrics_port=port)
    topics(s)
    log = tmp_path / "worker.log"
    with running_worker(s, log) as proc:
        seen: list[tuple[int | None, str]] = []
        deadline = time.monotonic() + 45
        while (state := get(port, "/readyz"))[0] != 200:
            assert time.monotonic() < deadline, f"{seen}\n" + log.read_text()[-3000:]
            if not seen or seen[-1] != state:
                seen.append(state)
            time.sleep(0.1)
        assert state == (200, "ok")
        # before: not listening yet, then one line saying why not
        assert {body for code, body in seen if code is not None} <= {"starting", "no partitions assigned"}
        assert all(code in (None, 503) for code, _ in seen)
        assert get(port, "/healthz") == (200, "ok")
        code, text = get(port, "/metrics")
        assert code == 200 and "cxstream_redis_outage 0.0" in text and "_created" not in text
        start = sigterm(proc)
        assert proc.wait(timeout=30) == 0
        print(f"\nidle worker: SIGTERM to exit {time.monotonic() - start:.2f}s")


def test_sigterm_mid_stream_exits_0_and_a_restart_accounts_for_every_input(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(batch_size=20, rules=(RULE,), shutdown_timeout=20)
    topics(s)
    people = [f"cust{i:03d}" for i in range(150)]
    journey = journeys(tmp_path, people)
    warm = write_jsonl(tmp_path / "warm.jsonl", loan_journey("warmup", at("2026-04-06T08:00:00Z")))
    log = tmp_path / "worker.log"
    with running_worker(s, log) as first:
        asyncio.run(replay_file(s, warm))  # the worker has joined and is processing ...
        assert consume(s, s.topic_activations, want=1, timeout=60), log.read_text()[-3000:]
        # ... then 100 events/s in the background, so the signal lands mid-stream
        replay = threading.Thread(target=lambda: asyncio.run(replay_file(s, journey, rate=100)))
        replay.start()
        assert consume(s, s.topic_activations, want=2, timeout=60), log.read_text()[-3000:]
        start = sigterm(first)
        code = first.wait(timeout=s.shutdown_timeout + 5)
        took = time.monotonic() - start
        before = len(consume(s, s.topic_activations, want=len(people) + 1, timeout=2)) - 1
        replay.join(timeout=30)
    print(f"\nmid-stream: SIGTERM to exit {took:.2f}s, {before} of {len(people)} triggers before")
    assert code == 0, log.read_text()[-3000:]
    assert took < s.shutdown_timeout
    assert 0 < before < len(people), "the signal should land mid-stream"
    assert re.search(r"SIGTERM: stopped in [\d.]+s \(exit 0\)", log.read_text())
    with running_worker(s, log) as second:
        msgs = consume(s, s.topic_activations, want=len(people) + 1, timeout=50, idle=2)
        assert second.poll() is None, log.read_text()[-3000:]
    ids = {ce["id"] for ce in json_values(msgs)} - {trigger_id(RULE, 1, "warmup-check-2")}
    assert ids == expected_ids(people), f"missing {len(expected_ids(people) - ids)} triggers"


def test_sigterm_finishes_the_batch_in_hand_produces_and_commits_it(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(batch_size=1000, batch_within=0.5, rules=(RULE,), shutdown_timeout=20)
    topics(s)
    people = [f"p{i:02d}" for i in range(10)]
    asyncio.run(replay_file(s, journeys(tmp_path, people)))  # 40 events, there before the worker
    log = tmp_path / "worker.log"
    with slow_worker(s, log, slow=4) as proc:
        code, took, text = sigterm_at(proc, log, "SLOW BATCH")
    print(f"\nslow batch in hand (4s): SIGTERM to exit {took:.2f}s")
    assert code == 0, text[-3000:]
    assert 2.5 < took < s.shutdown_timeout  # it waited for the batch
    done = [int(n) for n in re.findall(r"SLOW DONE (\d+)", text)]
    assert done and text.index("SIGTERM: finishing") < text.index("SLOW DONE")
    assert committed(s, s.topic_raw) == sum(done), "the finished batches are committed, nothing more"
    with running_worker(s, log) as second:  # resumes from the commit: no event is lost
        msgs = consume(s, s.topic_activations, want=len(people), timeout=50, idle=2)
        assert second.poll() is None, log.read_text()[-3000:]
    assert {ce["id"] for ce in json_values(msgs)} == expected_ids(people)


def test_sigterm_with_a_decide_commit_in_flight_waits_for_it_and_commits_its_batch(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    """A decide batch's commit lands behind it (Runtime.decide_batch): a stop waits for the one in
    flight, then its batch is acked and committed; a restart finds nothing left to decide."""
    s = make_settings(batch_size=1000, batch_within=0.5, rules=(RULE,), shutdown_timeout=20)
    topics(s)
    people = [f"c{i:02d}" for i in range(10)]
    asyncio.run(replay_file(s, journeys(tmp_path, people)))  # 40 events, there before the worker
    log = tmp_path / "worker.log"
    with slow_worker(s, log, slow=6, code=SLOW_COMMIT_WORKER) as proc:
        # the first decide batch holds every event's record (its commit waits 6 s)
        assert len(consume(s, s.topic_activations, want=len(people), timeout=60)) == len(people)
        code, took, text = sigterm_at(proc, log, "SLOW COMMIT")
    print(f"\nslow decide commit in flight (6s): SIGTERM to exit {took:.2f}s")
    assert code == 0, text[-3000:]
    assert took < s.shutdown_timeout
    assert text.index("SIGTERM: finishing") < text.index("COMMIT DONE")  # it waited for the commit
    assert committed(s, s.topic_profiled) > 0, "the landed batch is acked and committed on stop"
    with running_worker(s, log) as second:  # resumes from the commit: nothing lost
        msgs = consume(s, s.topic_activations, want=len(people), timeout=50, idle=2)
        assert second.poll() is None, log.read_text()[-3000:]
    assert {ce["id"] for ce in json_values(msgs)} == expected_ids(people)


def test_a_second_sigterm_during_a_slow_shutdown_exits_at_once_without_committing(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(batch_size=1000, batch_within=0.5, rules=(RULE,), shutdown_timeout=30)
    topics(s)
    people = [f"q{i:02d}" for i in range(10)]
    asyncio.run(replay_file(s, journeys(tmp_path, people)))
    log = tmp_path / "worker.log"
    with slow_worker(s, log, slow=60) as proc:
        wait_for(log, "SLOW BATCH")
        sigterm(proc)
        wait_for(log, "SIGTERM: finishing")
        time.sleep(1)
        assert proc.poll() is None, "still finishing its batch"
        start = sigterm(proc)
        code = proc.wait(timeout=10)
        took = time.monotonic() - start
    print(f"\nsecond SIGTERM to exit {took:.2f}s")
    assert code == 128 + signal.SIGTERM and took < 2
    assert "SIGTERM again: exiting at once" in log.read_text()
    assert committed(s, s.topic_raw) == 0, "the unfinished batch is not committed"
    with running_worker(s, log) as second:  # the next owner does it all
        msgs = consume(s, s.topic_activations, want=len(people), timeout=50, idle=2)
        assert second.poll() is None, log.read_text()[-3000:]
    assert {ce["id"] for ce in json_values(msgs)} == expected_ids(people)


def test_a_shutdown_past_its_timeout_exits_non_zero_without_committing(
    make_settings: Callable[..., Settings], topics: Callable[[Settings], None], tmp_path: Path
) -> None:
    s = make_settings(batch_size=1000, batch_within=0.5, rules=(RULE,), shutdown_timeout=3)
    topics(s)
    asyncio.run(replay_file(s, journeys(tmp_path, ["r0", "r1"])))
    log = tmp_path / "worker.log"
    with slow_worker(s, log, slow=60) as proc:
        wait_for(log, "SLOW BATCH")
        start = sigterm(proc)
        code = proc.wait(timeout=15)
        took = time.monotonic() - start
    print(f"\nshutdown timeout 3s: SIGTERM to exit {took:.2f}s")
    assert code == EXIT_SHUTDOWN_TIMEOUT and 3 <= took < 6
    assert "shutdown did not finish within 3s" in log.read_text()
    assert committed(s, s.topic_raw) == 0

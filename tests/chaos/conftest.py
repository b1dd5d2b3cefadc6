"""Fixtures of the chaos suite: a Redis of the test's own (to break), and the faulty rules on the
worker's import path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import OwnRedis

#: this folder: ``faulty.py`` is imported from here, by the worker (PYTHONPATH) and by the clean run
CHAOS_DIR = Path(__file__).resolve().parent


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def faulty_on_path(monkeypatch: pytest.MonkeyPatch) -> str:
    """``faulty`` importable here and in worker subprocesses (their environment is ours minus
    ``CXSTREAM_*``: :func:`streams.dev._env`). Returns the module name to use in ``CXSTREAM_RULES``."""
    monkeypatch.syspath_prepend(str(CHAOS_DIR))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(CHAOS_DIR) + (os.pathsep + old if old else ""))
    return "faulty"

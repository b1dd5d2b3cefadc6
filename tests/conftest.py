"""Shared fixtures. Tests that need Kafka or Redis use ``stack`` (real servers on free ports)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import fresh_settings

from streams.settings import Settings
from streams.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One broker and one Redis for the session (or those of CXSTREAM_KAFKA_BOOTSTRAP / _REDIS_URL)."""
    with LocalStack(workdir=tmp_path_factory.mktemp("stack")) as s:
        yield s


@pytest.fixture
def make_settings(stack: LocalStack) -> Callable[..., Settings]:
    """Settings with a fresh app id, topic names and Redis prefix: tests never see each other's data."""
    return lambda **overrides: fresh_settings(stack, **overrides)


@pytest.fixture
def topics(make_settings: Callable[..., Settings]) -> Callable[[Settings], None]:
    from streams.kafka import create_topics

    def create(s: Settings) -> None:
        asyncio.run(create_topics(s))

    return create


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test, not from the developer's shell (the stack's own env is read before)."""
    for k in list(os.environ):
        if k.startswith("CXSTREAM_") and k not in ("CXSTREAM_KAFKA_BOOTSTRAP", "CXSTREAM_REDIS_URL"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(Path(__file__).parent.parent)

"""Shared fixtures. Tests that need Kafka or Redis use ``stack`` (real servers on free ports)."""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.settings import Settings, load_settings
from streams.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One broker and one Redis for the session (or those of CXSTREAM_KAFKA_BOOTSTRAP / _REDIS_URL)."""
    with LocalStack(workdir=tmp_path_factory.mktemp("stack")) as s:
        yield s


_n = itertools.count()


@pytest.fixture
def make_settings(stack: LocalStack) -> Callable[..., Settings]:
    """Settings with a fresh app id, topic names and Redis prefix: tests never see each other's data."""

    def make(**overrides: object) -> Settings:
        tag = f"t{next(_n)}{uuid.uuid4().hex[:6]}"
        base: dict[str, object] = dict(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            app_id=f"cx-{tag}",
            redis_prefix=f"cx-{tag}",
            partitions=4,
            metrics_port=0,
            kafka_session_timeout=6.0,
            kafka_rebalance_timeout=10.0,
            topic_raw=f"{tag}.events.raw",
            topic_deadletter=f"{tag}.events.deadletter",
            topic_activations=f"{tag}.activations",
            topic_decisions=f"{tag}.decisions",
            topic_identity_changes=f"{tag}.identity.changes",
            batch_within=0.02,
            timer_tick=0.2,
        )
        base.update(overrides)
        return load_settings(**base)

    return make


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

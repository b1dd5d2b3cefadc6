"""Redis Cluster fixtures: 3 primaries + 3 replicas on loopback (see ``streams.stack.LocalCluster``).

``redis_cluster`` is shared by the session: tests use fresh key prefixes and must not break
it. A test that kills nodes takes ``fresh_cluster``, its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.stack import LocalCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(workdir=tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster of the test's own, to kill nodes of (node timeout 1 s: failover in a few seconds)."""
    with LocalCluster(workdir=tmp_path_factory.mktemp("cluster-own"), node_timeout_ms=1000) as c:
        yield c

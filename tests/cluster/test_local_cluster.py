"""The local cluster: 3 primaries with a replica each, all slots served, nothing left running."""

from __future__ import annotations

import importlib

import pytest

from streams.stack import LocalCluster, _node

pytestmark = pytest.mark.stack


def test_cluster_with_a_broker_serves_every_slot_and_stops_without_orphans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CXSTREAM_KAFKA_BOOTSTRAP", raising=False)
    alive = importlib.import_module("test_stack")._alive
    with LocalCluster(broker=True) as c:
        pids = [p.pid for _, p in c.procs]
        assert len(pids) == 7 and all(alive(p) for p in pids), "six redis-server and the broker"
        assert c.kafka_bootstrap
        primaries = c.primary_ports()
        assert len(primaries) == 3 and c.redis_url.startswith(f"redis://127.0.0.1:{primaries[0]}/")
        slots = _node(primaries[0], "CLUSTER", "SLOTS")
        assert sum(int(r[1]) - int(r[0]) + 1 for r in slots) == 16384
        assert all(len(r) == 4 for r in slots), "each range: primary and one replica"
    assert not any(alive(p) for p in pids)

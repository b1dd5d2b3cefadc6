"""The Profile API on Redis Cluster: ``cxstream api`` with ``CXSTREAM_REDIS_CLUSTER=true`` finds
the person by every identifier, as on one server (``tests/api``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from api.journey import ann
from api.server import RULES, TOKEN, load_sync, running_api

from streams.settings import load_settings
from streams.stack import LocalCluster

pytestmark = pytest.mark.stack


def test_profile_api_on_the_cluster(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    s = load_settings(
        redis_url=redis_cluster.redis_url,
        redis_cluster=True,
        redis_prefix=f"api-{uuid.uuid4().hex[:8]}",
        partitions=4,
        rules=RULES,
        api_tokens=TOKEN,
        identity_pepper="a-pepper-for-the-cluster-test",
        metrics_port=0,
    )
    j = ann()
    load_sync(s, j.messages)
    with running_api(s, tmp_path / "api.log") as api:
        answers = [api.get(f"/v1/profiles/{ref}") for ref in j.refs]
        assert api.get("/v1/profiles/user_id:nobody")[0] == 404
    assert [a[0] for a in answers] == [200] * len(j.refs)
    assert len({a[1]["profileId"] for a in answers}) == 1
    c = answers[0][1]["computed"]
    assert (c["orderCount"], c["revenue"]) == (j.orders, j.revenue)
    assert answers[0][1]["segments"] == ["frequent_buyer"]

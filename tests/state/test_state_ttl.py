"""How long a saved profile state may live (``RedisStateStore.ttl``): per kind of profile, and after
the retention is changed on a running store."""

from __future__ import annotations

import redis.asyncio as aioredis

from streams.constants import Keys, retention_margin
from streams.engine.state import RedisStateStore
from streams.state import ProfileState


def test_anonymous_only_states_live_the_retention_and_its_margin_known_ones_forever() -> None:
    client = aioredis.Redis()  # never connected: ttl() is worked out in the store
    store = RedisStateStore(client, Keys("t"), tombstone_ttl=600, anonymous_ttl=3600)
    anonymous = ProfileState(reach=["anonymous_id", "device_id"])
    known = ProfileState(reach=["anonymous_id", "email"])
    assert store.ttl(anonymous) == 3600 + retention_margin(3600)
    assert store.ttl(ProfileState()) == 3600 + retention_margin(3600)  # nothing known yet
    assert store.ttl(known) is None
    assert store.ttl(ProfileState(reach=["email"], merged_into="p_2")) == 600  # a tombstone
    store.anonymous_ttl = 86400 * 400  # the retention changed: the margin is a day at most
    assert store.ttl(anonymous) == 86400 * 401
    store.anonymous_ttl = None  # no retention: every state is kept
    assert (store.anonymous_ttl, store.ttl(anonymous)) == (None, None)
    assert RedisStateStore(client, Keys("t")).ttl(anonymous) is None

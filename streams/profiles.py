"""``cxstream profile show`` / ``profile forget``: a unified profile as a person reads it; erasure.

Erasure also exists as an event (``track`` "Profile Erasure Requested" on the raw topic,
see :mod:`streams.pipeline.intake_stage`); the command is for an operator acting on a
request received elsewhere, and works with or without a worker running.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from streams import redis_io
from streams.constants import Keys
from streams.engine.state import ProfileState, RedisStateStore
from streams.engine.timers import RedisTimerStore, TimerOps, member
from streams.exceptions import IdentityError
from streams.identity.base import IdentityRules, ProfileView
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import Intake, IntakeConfig
from streams.model import Identifier, dumps
from streams.pipeline.envelope import erase_record, partition_for
from streams.pipeline.intake_stage import pseudonymize
from streams.settings import Settings


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_ref(settings: Settings, ref: str) -> Identifier:
    """``TYPE:VALUE`` -> the identifier as stored (normalized, and hashed when a pepper is set)."""
    try:
        ident = Identifier.parse(ref)
    except ValueError as exc:
        raise IdentityError(str(exc)) from None
    norm = Intake(IntakeConfig(phone_default_region=settings.phone_default_region)).normalize_identifier(
        ident.type, ident.value
    )
    if norm is None:
        raise IdentityError(f"{ref!r}: {ident.value!r} is not a valid {ident.type}")
    ident = Identifier(ident.type, norm)
    if settings.identity_pepper:
        ident = pseudonymize(settings.identity_pepper.get_secret_value().encode(), ident)
    return ident


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def render(view: ProfileView, state: ProfileState, partition: int, found_by: str) -> str:
    """The profile as a person reads it: who (identifiers), what we know (traits), where (channels),
    what they allowed (consent), what is about to happen (timers), and how it came together (merges)."""
    lines = [
        f"profile {view.profile_id}  (found by {found_by}; {_plural(len(view.identifiers), 'identifier')}, "
        f"{_plural(len(view.merges), 'merge')})",
        f"  created     {_when(view.created)}",
        f"  first seen  {_when(view.first_seen)}",
        f"  last seen   {_when(view.last_seen)}",
        "  identifiers",
    ]
    for i in view.identifiers:
        note = "  (keyed hash: the raw value is not stored)" if i.value.startswith("h:") else ""
        lines.append(f"    {i.type:<14} {i.value}{note}")
    lines.append("  channels (most recent first)")
    lines += [
        f"    {ch:<14} last {_when(ts)}"
        for ch, ts in sorted(view.channels.items(), key=lambda x: (-x[1], x[0]))
    ]
    lines.append("  traits")
    if not view.traits:
        lines.append("    (none)")
    for k, (v, ts) in sorted(view.traits.items()):
        lines.append(f"    {k:<14} {dumps(v).decode()}  (as of {_when(int(ts))})")
    lines.append("  consent")
    if not state.consent:
        lines.append("    (none given: the region's regime applies)")
    for purpose, hist in sorted(state.consent.items()):
        granted, ts, source = hist[-1]
        lines.append(
            f"    {purpose:<14} {'granted' if granted else 'denied':<8} {_when(int(ts))} via {source}"
        )
    if state.country:
        lines.append(f"  country     {state.country}")
    lines.append(f"  pending timers (partition {partition})")
    if not state.timers:
        lines.append("    (none)")
    for key, due in sorted(state.timers.items(), key=lambda x: (x[1], x[0])):
        rule, _, name = key.partition("|")
        lines.append(f"    {rule + ' ' + name:<30} due {_when(due)}")
    lines.append("  merges")
    if not view.merges:
        lines.append("    (none)")
    for m in view.merges:
        lines.append(
            f"    {_when(int(m['ts']))}  absorbed {m['absorbed']}, linked by {', '.join(m['linking'])}"
        )
    return "\n".join(lines)


async def show_profile(settings: Settings, ref: str) -> str:
    client = redis_io.connect(settings.redis_url.get_secret_value())
    keys = Keys(settings.redis_prefix)
    try:
        ident = parse_ref(settings, ref)
        store = RedisIdentityStore(client, keys, IdentityRules.from_settings(settings))
        pid = await store.lookup(ident)
        view = await store.profile(pid) if pid is not None else None
        if view is None:
            return f"no profile has {ref}"
        state = (await RedisStateStore(client, keys).load([view.profile_id]))[view.profile_id]
        return render(view, state, partition_for(view.profile_id, settings.partitions), ref)
    finally:
        await client.aclose()


async def _erase_in_redis(client: aioredis.Redis, settings: Settings, pid: str) -> list[str]:
    """The identity graph, then rule state and timers of the profile and of every profile it absorbed."""
    keys = Keys(settings.redis_prefix)
    store = RedisIdentityStore(client, keys, IdentityRules.from_settings(settings))
    states = RedisStateStore(client, keys)
    gone = await store.forget(pid)
    loaded = await states.load(gone)
    timers = RedisTimerStore(client, keys)
    for g, state in loaded.items():
        cancel = {member(g, *k.split("|", 1)) for k in state.timers}
        if cancel:
            await timers.apply(partition_for(g, settings.partitions), TimerOps({}, cancel))
    await states.save(dict.fromkeys([*gone, *(a for s in loaded.values() for a in s.absorbed)]))
    return gone


async def forget_profile(settings: Settings, ref: str) -> str:
    """Erase everything of the profile ``ref`` belongs to, and announce it on the changes topic.

    Redis is erased at once. If the repartition topic exists (a worker runs or ran), an ``erase``
    envelope also goes to each erased profile's partition, so the worker owning it drops whatever
    it was holding or writing at that moment: no state comes back from a batch in flight.
    """
    from aiokafka import AIOKafkaProducer

    from streams.engine.clock import wall_ms
    from streams.kafka import client_options
    from streams.sinks import records

    client = redis_io.connect(settings.redis_url.get_secret_value())
    try:
        ident = parse_ref(settings, ref)
        store = RedisIdentityStore(client, Keys(settings.redis_prefix))
        pid = await store.lookup(ident)
        if pid is None:
            return f"no profile has {ref}; nothing erased"
        gone = await _erase_in_redis(client, settings, pid)
    finally:
        await client.aclose()

    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await producer.start()
    try:
        meta = await producer.client.fetch_all_metadata()
        parts = meta.partitions_for_topic(settings.topic_profiled)
        if parts:
            for g in gone:
                await producer.send_and_wait(
                    settings.topic_profiled,
                    erase_record(g),
                    key=g.encode(),
                    partition=partition_for(g, len(parts)),
                )
        k, v = records.identity_erased(pid, gone, wall_ms(), "request")
        await producer.send_and_wait(settings.topic_identity_changes, v, key=k)
    finally:
        await producer.stop()
    return (
        f"erased profile {pid} and {_plural(len(gone) - 1, 'absorbed profile')}: identifiers, traits, "
        f"rule state, timers; announced on {settings.topic_identity_changes}"
    )

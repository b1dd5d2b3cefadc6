"""``cxstream profile show`` / ``profile forget``: a unified profile as a person reads it; erasure."""

from __future__ import annotations

from datetime import UTC, datetime

from streams import redis_io
from streams.constants import Keys
from streams.engine.state import RedisStateStore
from streams.engine.timers import RedisTimerStore, member
from streams.exceptions import IdentityError
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import Intake, IntakeConfig
from streams.model import Identifier, dumps
from streams.pipeline.envelope import partition_for
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


async def show_profile(settings: Settings, ref: str) -> str:
    client = redis_io.connect(settings.redis_url.get_secret_value())
    keys = Keys(settings.redis_prefix)
    try:
        ident = parse_ref(settings, ref)
        store = RedisIdentityStore(client, keys)
        pid = await store.lookup(ident)
        if pid is None:
            return f"no profile has {ref}"
        view = await store.profile(pid)
        if view is None:
            return f"no profile has {ref}"
        state = (await RedisStateStore(client, keys).load([pid]))[pid]
        part = partition_for(pid, settings.partitions)
        lines = [
            f"profile {view.profile_id}",
            f"  first seen  {_when(view.first_seen)}",
            f"  last seen   {_when(view.last_seen)}",
            "  identifiers",
            *[f"    {i.type:<14} {i.value}" for i in view.identifiers],
            "  channels",
            *[
                f"    {ch:<14} last {_when(ts)}"
                for ch, ts in sorted(view.channels.items(), key=lambda x: -x[1])
            ],
        ]
        if view.traits:
            lines.append("  traits")
            lines += [f"    {k:<14} {dumps(v).decode()}" for k, (v, _ts) in sorted(view.traits.items())]
        lines.append("  consent")
        if not state.consent:
            lines.append("    (none given: the region's regime applies)")
        for purpose, hist in sorted(state.consent.items()):
            granted, ts, source = hist[-1]
            lines.append(
                f"    {purpose:<14} {'granted' if granted else 'denied':<8} {_when(int(ts))} via {source}"
            )
        if state.country:
            lines.append(f"  country       {state.country}")
        lines.append("  pending timers")
        if not state.timers:
            lines.append("    (none)")
        for key, due in sorted(state.timers.items(), key=lambda x: x[1]):
            lines.append(f"    {key:<24} due {_when(due)}  (partition {part})")
        lines.append("  merges")
        if not view.merges:
            lines.append("    (none)")
        for m in view.merges:
            lines.append(
                f"    absorbed {m['absorbed']} at {_when(int(m['ts']))} via {', '.join(m['linking'])}"
            )
        return "\n".join(lines)
    finally:
        await client.aclose()


async def forget_profile(settings: Settings, ref: str) -> str:
    """Erase everything of the profile ``ref`` belongs to, and announce it on the changes topic."""
    from aiokafka import AIOKafkaProducer

    from streams.engine.clock import wall_ms
    from streams.kafka import client_options
    from streams.sinks import records

    client = redis_io.connect(settings.redis_url.get_secret_value())
    keys = Keys(settings.redis_prefix)
    try:
        ident = parse_ref(settings, ref)
        store = RedisIdentityStore(client, keys)
        pid = await store.lookup(ident)
        if pid is None:
            return f"no profile has {ref}; nothing erased"
        states = RedisStateStore(client, keys)
        state = (await states.load([pid]))[pid]
        gone = await store.forget(pid)
        timers = RedisTimerStore(client, keys)
        part = partition_for(pid, settings.partitions)
        from streams.engine.timers import TimerOps

        await timers.apply(part, TimerOps({}, {member(pid, *k.split("|", 1)) for k in state.timers}))
        await states.save(dict.fromkeys([*gone, *state.absorbed]))
        producer = AIOKafkaProducer(**client_options(settings), acks="all")
        await producer.start()
        try:
            k, v = records.identity_erased(pid, gone, wall_ms(), "request")
            await producer.send_and_wait(settings.topic_identity_changes, v, key=k)
        finally:
            await producer.stop()
        topic = settings.topic_identity_changes
        return f"erased profile {pid} ({len(gone)} profile records) and announced it on {topic}"
    finally:
        await client.aclose()

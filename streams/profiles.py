"""``cxstream profile show`` / ``export`` / ``forget``: a profile as a person reads it; subject
access (everything held, as JSON); erasure.

Erasure also exists as an event (``track`` "Profile Erasure Requested" on the raw topic,
see :mod:`streams.pipeline.intake_stage`); the command is for an operator acting on a
request received elsewhere, and works with or without a worker running.
"""

from __future__ import annotations

from datetime import UTC, datetime

from streams import redis_io
from streams.constants import MERGED_POINTER_TTL, Keys
from streams.engine.state import RedisStateStore
from streams.engine.timers import RedisTimerStore, TimerOps
from streams.exceptions import IdentityError
from streams.identity.base import IdentityRules, ProfileView
from streams.identity.pii import HASH_PREFIX, Pseudonymizer, is_hashed
from streams.identity.redis_store import RedisIdentityStore
from streams.intake import Intake, IntakeConfig
from streams.intake.normalize import ms_to_iso
from streams.measure.activity import RedisActivityStore
from streams.model import Identifier, JSONDict, dumps
from streams.pipeline.envelope import erase_record, partition_for
from streams.settings import Settings
from streams.state import ProfileState, TimerId, erase_profile


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
        pepper = settings.identity_pepper.get_secret_value().encode()
        ident = Pseudonymizer(pepper, settings.phone_default_region).identifier(ident)
    return ident


def _has_hash(v: object) -> bool:
    """Does a trait value (nested ones included) hold a keyed hash instead of a raw value?"""
    if isinstance(v, dict):
        return any(_has_hash(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_hash(x) for x in v)
    return is_hashed(v)


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
        note = "  (keyed hash: the raw value is not stored)" if is_hashed(i.value) else ""
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
        note = "; keyed hash: the raw value is not stored" if _has_hash(v) else ""
        lines.append(f"    {k:<14} {dumps(v).decode()}  (as of {_when(int(ts))}{note})")
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
        tid = TimerId.from_key(view.profile_id, key)
        lines.append(f"    {tid.rule + ' ' + tid.name:<30} due {_when(due)}")
    lines.append("  merges")
    if not view.merges:
        lines.append("    (none)")
    for m in view.merges:
        lines.append(
            f"    {_when(int(m['ts']))}  absorbed {m['absorbed']}, linked by {', '.join(m['linking'])}"
        )
    return "\n".join(lines)


async def _load(settings: Settings, ref: str) -> tuple[ProfileView, ProfileState] | None:
    """The identity view and decide-stage state of the profile ``ref`` belongs to, or ``None``."""
    client = redis_io.connect_any(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
    keys = Keys(settings.redis_prefix)
    try:
        ident = parse_ref(settings, ref)
        store = RedisIdentityStore(client, keys, IdentityRules.from_settings(settings))
        pid = await store.lookup(ident)
        view = await store.profile(pid) if pid is not None else None
        if view is None:
            return None
        state = (await RedisStateStore(client, keys).load([view.profile_id]))[view.profile_id]
        return view, state
    finally:
        await client.aclose()


async def show_profile(settings: Settings, ref: str) -> str:
    found = await _load(settings, ref)
    if found is None:
        return f"no profile has {ref}"
    view, state = found
    return render(view, state, partition_for(view.profile_id, settings.partitions), ref)


def _iso(ms: int) -> str:
    return ms_to_iso(int(ms))


#: Days each topic keeps its records as ``deploy/kafka/create-topics.sh`` creates it.
TOPIC_RETENTION_DAYS = {
    "raw": 7,
    "profiled": 7,
    "deadletter": 30,
    "activations": 7,
    "decisions": 90,
    "identity_changes": 30,
    "conversions": 90,
}


def held_elsewhere(settings: Settings) -> list[JSONDict]:
    """What an export cannot contain and an erasure does not reach, and until when it stays."""
    ttl = settings.dedupe_ttl
    topics = {
        "raw": (settings.topic_raw, "the events as sent (raw values, whatever the pepper)"),
        "profiled": (settings.topic_profiled, "the events as stored (hashed where a pepper is set)"),
        "deadletter": (settings.topic_deadletter, "bad events as sent; headers never carry a value"),
        "activations": (settings.topic_activations, "triggers: profile id and rule context"),
        "decisions": (settings.topic_decisions, "decisions: profile id, rule context and reasons"),
        "identity_changes": (
            settings.topic_identity_changes,
            "profile created / merged (linking identifiers in stored form) / erased",
        ),
        "conversions": (settings.topic_conversions, "conversions: profile id"),
    }
    out: list[JSONDict] = [
        {
            "where": f"Kafka topic {name}",
            "what": what,
            "until": f"the topic's retention (retention.ms; {TOPIC_RETENTION_DAYS[k]} days as "
            "deploy/kafka/create-topics.sh creates it); not searchable by person",
        }
        for k, (name, what) in topics.items()
    ]
    out += [
        {
            "where": "Redis dedupe markers",
            "what": "messageIds of recent events",
            "until": f"CXSTREAM_DEDUPE_TTL ({ttl} s) after the event",
        },
        {
            "where": "Redis identity resolution memos",
            "what": "messageId and source offset -> profile id and merges (stored form)",
            "until": f"CXSTREAM_DEDUPE_TTL ({ttl} s) after the event; an erasure removes them",
        },
        {
            "where": "Redis merge pointers and state tombstones",
            "what": "an absorbed profile id -> the survivor's id (no value of the person)",
            "until": f"{MERGED_POINTER_TTL // 86400} days after the merge; an erasure removes them",
        },
    ]
    return out


def export_document(settings: Settings, view: ProfileView, state: ProfileState, at: int) -> JSONDict:
    """Everything held about the person in Redis, as one JSON document (subject access), and what
    is held elsewhere that the export cannot contain."""
    hashed = settings.identity_pepper is not None
    timers = []
    for key, due in sorted(state.timers.items(), key=lambda x: (x[1], x[0])):
        tid = TimerId.from_key(view.profile_id, key)
        timers.append(
            {"rule": tid.rule, "name": tid.name, "due": _iso(due), "payload": state.timer_payloads.get(key)}
        )
    return {
        "profileId": view.profile_id,
        "exportedAt": _iso(at),
        "identifiers": [
            {"type": i.type, "value": i.value, "hashed": is_hashed(i.value)} for i in view.identifiers
        ],
        "identifiersNote": (
            f"as stored: every email address and phone number, whatever its field, is a keyed hash "
            f"({HASH_PREFIX}<40 hex>), the raw values are not kept"
            if hashed
            else "as stored: no pseudonymization pepper is set, values are kept as sent (normalized)"
        ),
        "created": _iso(view.created),
        "firstSeen": _iso(view.first_seen),
        "lastSeen": _iso(view.last_seen),
        "traits": {
            k: {"value": v, "asOf": _iso(int(ts)), "hashed": _has_hash(v)}
            for k, (v, ts) in sorted(view.traits.items())
        },
        "channels": {
            ch: {"lastActivity": _iso(ts)}
            for ch, ts in sorted(view.channels.items(), key=lambda x: (-x[1], x[0]))
        },
        "merges": [
            {"absorbed": m["absorbed"], "linking": list(m["linking"]), "time": _iso(int(m["ts"]))}
            for m in view.merges
        ],
        "consent": {
            purpose: [{"granted": bool(g), "time": _iso(int(ts)), "source": src} for g, ts, src in hist]
            for purpose, hist in sorted(state.consent.items())
        },
        "preferences": state.prefs,
        "country": state.country,
        "ruleState": {
            "rules": state.rules,
            "lastTriggers": {rule: _iso(ts) for rule, ts in sorted(state.cooldowns.items())},
            "recentActivations": {ch: [_iso(t) for t in ts] for ch, ts in sorted(state.caps.items())},
            # computed traits (streams/engine/computed.py) and the last decided triggers, as stored
            "computed": state.computed,
            "recentTriggers": state.recent,
            # triggers still waiting for a conversion, with the group the person is in ([measurement])
            "openExposures": state.expo,
        },
        "pendingTimers": timers,
        "held_elsewhere": held_elsewhere(settings),
    }


async def export_profile(settings: Settings, ref: str) -> JSONDict:
    """The subject-access document of the profile ``ref`` belongs to. :class:`IdentityError` if none."""
    from streams.engine.clock import wall_ms

    found = await _load(settings, ref)
    if found is None:
        raise IdentityError(f"no profile has {ref}")
    view, state = found
    return export_document(settings, view, state, wall_ms())


async def _erase_in_redis(client: redis_io.Client, settings: Settings, pid: str) -> list[str]:
    """The identity graph, then (:func:`~streams.state.erase_profile`, as the decide stage erases)
    timers and state of the profile and of every profile it absorbed, and their tombstones."""
    keys = Keys(settings.redis_prefix)
    store = RedisIdentityStore(client, keys, IdentityRules.from_settings(settings))
    states = RedisStateStore(client, keys)
    gone = await store.forget(pid)
    loaded = await states.load(gone)
    timers = RedisTimerStore(client, keys)
    deleted: list[str] = []
    for g in gone:
        erasure = erase_profile(g, loaded[g])
        if erasure.cancel_timers:
            await timers.apply(
                partition_for(g, settings.partitions), TimerOps({}, set(erasure.cancel_timers))
            )
        deleted += [d for d in erasure.delete_states if d not in deleted]
    await states.save(dict.fromkeys(deleted))
    activity = RedisActivityStore(client, keys)  # the KPI gauges' last activity (measure/activity.py)
    for d in deleted:
        await activity.apply(partition_for(d, settings.partitions), {}, [d])
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

    client = redis_io.connect_any(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
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

"""One profile read for the API: a ``TYPE:VALUE`` reference -> :class:`~streams.api.models.Profile`.

Reads only, from the stores the workers write (single server or Redis Cluster alike): the
identity index and graph (:class:`~streams.identity.redis_store.RedisIdentityStore`) and the
decision-stage state (:class:`~streams.engine.state.RedisStateStore`), in their key layout
(:class:`~streams.constants.Keys`). Two round trips: the identifier's profile id, then the
profile's graph entries and its state in one pipeline; a profile merged away meanwhile is read
through the stores' own ``lookup``/``profile`` (merge pointers followed).

A reference is turned into the stored form exactly as ``cxstream profile show`` and intake do
(:func:`streams.profiles.parse_ref`: normalized, and hashed where a pepper is set), so a
raw email finds the profile whose stored email is its keyed hash.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from streams import redis_io
from streams.api.models import Profile
from streams.consent.consent import consent_at
from streams.consent.policy import Policy
from streams.constants import Keys
from streams.engine import computed
from streams.engine.clock import wall_ms
from streams.engine.state import RedisStateStore
from streams.exceptions import IdentityError
from streams.identity.base import IdentityRules, ProfileView
from streams.identity.redis_store import RedisIdentityStore
from streams.model import Identifier, loads
from streams.profiles import parse_ref
from streams.settings import Settings
from streams.state import ProfileState

#: Longest reference accepted (400 beyond): identifiers are short; this bounds the work.
MAX_REF = 1024
#: The rule whose state says which real-time segments a person is in.
SEGMENTS_RULE = "segments"


class BadReference(ValueError):
    """The reference is not ``TYPE:VALUE`` with a valid value for its type. The message names
    what is expected, never the value (it may be an email or a phone number)."""


def _dt(ms: int | float) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


class ProfileReader:
    """Reads profiles for the API. One per process; safe to share between requests."""

    def __init__(
        self,
        settings: Settings,
        client: redis_io.Client,
        policy: Policy,
        now: Callable[[], int] = wall_ms,
    ) -> None:
        self.keys = Keys(settings.redis_prefix)
        self.client = client
        self.settings = settings
        self.policy = policy
        self.now = now
        self.rules = IdentityRules.from_settings(settings)
        self.identity = RedisIdentityStore(client, self.keys, self.rules)
        self.states = RedisStateStore(client, self.keys)

    def parse(self, ref: str) -> Identifier:
        """The stored form of ``ref``, or :class:`BadReference`."""
        if len(ref) > MAX_REF:
            raise BadReference(f"a reference is at most {MAX_REF} characters")
        type_, sep, value = ref.partition(":")
        if not sep or not type_ or not value.strip():
            raise BadReference("expected TYPE:VALUE, e.g. email:ann@example.com or user_id:u-123")
        if not all(c.isascii() and (c.isalnum() or c == "_") for c in type_):
            raise BadReference("the identifier type must be letters, digits or '_' (e.g. loyalty_id)")
        try:
            return parse_ref(self.settings, ref)
        except IdentityError:
            raise BadReference(f"the value is not a valid {type_}") from None

    async def read(self, ref: str) -> Profile | None:
        """The profile ``ref`` belongs to, or ``None``. Called once per request.

        Raises :class:`BadReference` if ``ref`` is malformed (before any Redis call), and
        :class:`~streams.exceptions.FatalError` if Redis refuses us; an outage is waited out
        (:func:`streams.redis_io.call`), so the caller bounds the wait (the app: 2 s, then 503).
        """
        ident = self.parse(ref)
        raw = await redis_io.call(
            "api.read", functools.partial(self.client.get, self.keys.identifier(ident.type, ident.value))
        )
        if raw is None:
            return None
        found = await self._fast(raw.decode() if isinstance(raw, bytes) else str(raw))
        if found is None:  # merged away (or erased) meanwhile: the stores' own way, pointers followed
            pid = await self.identity.lookup(ident)
            view = await self.identity.profile(pid) if pid is not None else None
            if view is None:
                return None
            found = view, (await self.states.load([view.profile_id]))[view.profile_id]
        return build(*found, self.policy, self.now())

    async def _fast(self, pid: str) -> tuple[ProfileView, ProfileState] | None:
        """The live profile ``pid`` and its state in one round trip (a pipeline of the keys that
        :meth:`RedisIdentityStore.profile` and :meth:`RedisStateStore.load` read), or ``None`` if
        ``pid`` was merged into another (``mi``) or is gone.

        Why not those two methods: with the identifier's GET they make five round trips, this
        two; a round trip costs ~0.1 ms of redis-py CPU, the largest part of a lookup.
        """
        k = self.keys.profile(pid)

        async def run() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k)
            pipe.smembers(self.keys.profile_identifiers(pid))
            pipe.hgetall(self.keys.profile_traits(pid))
            pipe.hgetall(self.keys.profile_channels(pid))
            pipe.get(self.keys.state(pid))
            return list(await pipe.execute())

        meta, ids, traits, chans, state = await redis_io.call("api.read", run)
        if not meta or b"mi" in meta:
            return None
        view = ProfileView(
            profile_id=pid,
            created=int(meta[b"c"]),
            first_seen=int(meta[b"fs"]),
            last_seen=int(meta[b"ls"]),
            identifiers=self.rules.ordered([Identifier.parse(m.decode()) for m in ids]),
            traits={t.decode(): tuple(loads(v)) for t, v in traits.items()},
            channels={c.decode(): int(v) for c, v in chans.items()},
            merges=[],  # not shown by the API
        )
        return view, ProfileState.from_json(state) if state else ProfileState()


def _consent(state: ProfileState, policy: Policy, region: str, now: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for purpose in sorted(set(policy.purposes) | set(state.consent)):
        entry = consent_at(state, purpose, now)
        if entry is not None:
            granted, ts, source = entry
            out[purpose] = {
                "granted": bool(granted),
                "basis": "consent" if granted else "withdrawn",
                "since": _dt(ts),
                "source": str(source),
            }
        elif policy.regime_of(region, purpose) == "opt_out":
            out[purpose] = {"granted": True, "basis": "opt_out_regime"}
        else:
            out[purpose] = {"granted": False, "basis": "opt_in_regime"}
    return out


def segments_of(state: ProfileState) -> list[str]:
    """The segments the ``segments`` rule reported the person in (its state's ``member`` flag;
    ``in`` in states written before that rule's state was renamed)."""
    segs = state.rules.get(SEGMENTS_RULE, {})
    return sorted(
        name for name, seg in segs.items() if isinstance(seg, dict) and (seg.get("member") or seg.get("in"))
    )


def _opt(ms: Any) -> datetime | None:
    return None if ms is None else _dt(ms)


def _computed(state: ProfileState, now: int) -> dict[str, Any]:
    v = computed.view(state.computed, now)
    return {
        **v,
        "firstOrder": _opt(v["firstOrder"]),
        "lastOrder": _opt(v["lastOrder"]),
        "lastActivity": _opt(v["lastActivity"]),
        "channelsLast30Days": [
            {"channel": ch, "lastActivity": _dt(ts)} for ch, ts in v["channelsLast30Days"].items()
        ],
    }


def _triggers(state: ProfileState) -> list[dict[str, Any]]:
    return [
        {
            "id": str(t.get("id", "")),
            "rule": str(t.get("rule", "")),
            "trigger": str(t.get("trigger", "")),
            "time": _dt(t.get("time", 0)),
            "outcome": str(t.get("outcome", "")),
            "channels": [str(c) for c in t.get("channels", [])],
            "refused": [
                {"channel": str(r["channel"]), "reason": str(r["reason"]), "detail": str(r["detail"])}
                for r in t.get("refused", [])
            ],
        }
        for t in reversed(state.recent)
    ]


def build(view: ProfileView, state: ProfileState, policy: Policy, now: int) -> Profile:
    """The API's answer from what the stores hold, as of ``now`` (ms).

    Built as plain data and validated once by :class:`Profile` (one call into pydantic-core,
    ~30 nested models: a third of the CPU of constructing them one by one), so what is answered
    is checked against the very schema ``/openapi.json`` publishes.
    """
    region = policy.region_of(state.country)
    return Profile.model_validate(
        {
            "profileId": view.profile_id,
            "created": _dt(view.created),
            "firstSeen": _dt(view.first_seen),
            "lastSeen": _dt(view.last_seen),
            "identifiers": [
                {"type": i.type, "value": i.value, "hashed": i.value.startswith("h:")}
                for i in view.identifiers
            ],
            "traits": {k: {"value": v, "asOf": _dt(ts)} for k, (v, ts) in sorted(view.traits.items())},
            "channels": [
                {"channel": ch, "lastActivity": _dt(ts)}
                for ch, ts in sorted(view.channels.items(), key=lambda x: (-x[1], x[0]))
            ],
            "country": state.country,
            "region": region,
            "consent": _consent(state, policy, region, now),
            "segments": segments_of(state),
            "computed": _computed(state, now),
            "recentTriggers": _triggers(state),
        }
    )

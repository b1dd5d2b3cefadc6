"""The identity contract: what resolution promises, whatever the store.

Resolution of one event, in batch order, each event atomically (the Redis store runs a
batch as a few script calls of bounded size, each atomic):

1. Look up the event's identifiers. Each maps to at most one live profile.
2. No match: a new profile; its id is derived from the event (deterministic, so a
   replay creates the same ids). One match: attach. Several: merge into the oldest
   profile (smallest ``created`` event time, then smallest id); the others are
   absorbed and point to it; their identifiers, traits and channels follow.
3. Before attaching or merging, the rules are checked: per-type limits (e.g. one
   ``user_id``), the cap of identifiers and of merges per profile. When one would be
   broken, the event's lowest-priority identifier is dropped and matching retried:
   two people who share a family tablet are not fused by its device id.

Before step 1, an event's identifiers are deduplicated, blocked values (``null``,
``guest``, ... and ``CXSTREAM_BLOCKED_IDENTIFIERS``) removed, and the rest ordered by
priority (:meth:`IdentityRules.prepare`, shared by both stores). An event left with no
identifier resolves to a profile of its own, keyed by its ``message_id`` (so a replay
finds it again and it never links anyone).

How many identifiers are kept is the longest prefix of the ordered identifiers that breaks
no rule (a single identifier always passes). Breaking is monotone in the prefix (counts,
total and merges only grow as identifiers are added), so both stores find that prefix in
one pass, looking each identifier and each matched profile up once; the dropped ones are
reported lowest priority first.

Replays: a batch whose outputs were lost (crash, a timeout after Redis ran the call) is
resolved again with the same events from the same source coordinates. The second run would
see the first run's writes (``matched`` instead of ``new``, no merges), so an event whose
outcome is ``new`` or ``merged`` or that dropped identifiers is remembered per occurrence,
``(message_id, source)``, for a TTL; resolving that occurrence again returns the remembered
:class:`Resolution` unchanged and applies nothing. An empty ``source`` remembers nothing.
Erasing a profile forgets the memos of its events too.

Merge pointers are kept one hop long: when a survivor is itself absorbed, every profile
it had absorbed is re-pointed to the new survivor, so ``merged_into`` always names a
live profile.

Stores: :class:`streams.identity.memory.MemoryIdentityStore` (tests, ``simulate``) and
:class:`streams.identity.redis_store.RedisIdentityStore` (one Lua call per batch).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from streams.constants import BLOCKED_IDENTIFIER_VALUES
from streams.frozen import fast_init
from streams.model import Identifier, JSONDict

if TYPE_CHECKING:
    from streams.settings import Settings

#: The Segment ``track`` event that asks for a person's erasure (right to be forgotten). Intake
#: erases the profile its identifiers belong to instead of resolving it like an event.
ERASURE_EVENT: Final = "Profile Erasure Requested"

#: Identifier type of the fallback identity of an event whose identifiers are all blocked.
FALLBACK_TYPE: Final = "message_id"

Outcome = Literal["new", "matched", "merged"]

#: Higher wins: the identifier kept longest when limits force a drop.
DEFAULT_PRIORITY: dict[str, int] = {
    "user_id": 100,
    "loyalty_id": 90,
    "crm_id": 90,
    "email": 80,
    "phone": 70,
    "device_id": 30,
    "anonymous_id": 10,
}
DEFAULT_LIMITS: dict[str, int] = {"user_id": 1, "email": 5, "phone": 5, "loyalty_id": 1, "crm_id": 1}
DEFAULT_OTHER_PRIORITY = 50
#: Caps per profile. 100 identifiers is ~20x what a real person accumulates over years of devices,
#: cookies and emails; a profile past it is almost always a shared or bot identifier gone wrong.
DEFAULT_MAX_IDENTIFIERS = 100
DEFAULT_MAX_MERGES = 50


@dataclass(frozen=True, slots=True)
class IdentityRules:
    """Identity rules as configuration (``CXSTREAM_IDENTITY_*``, see :meth:`from_settings`).

    ``priority``: type -> rank, higher is kept longer when a limit forces a drop (types not
    listed rank ``DEFAULT_OTHER_PRIORITY``). ``limits``: type -> most identifiers of that type
    in one profile (types not listed: no limit). ``blocked``: values (lower-case) never used
    to link, whatever their type.
    """

    priority: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITY))
    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    max_identifiers: int = DEFAULT_MAX_IDENTIFIERS
    max_merges: int = DEFAULT_MAX_MERGES
    blocked: frozenset[str] = BLOCKED_IDENTIFIER_VALUES

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityRules:
        return cls(
            priority=dict(settings.identity_priority),
            limits=dict(settings.identity_limits),
            max_identifiers=settings.identity_max_identifiers,
            max_merges=settings.identity_max_merges,
            blocked=BLOCKED_IDENTIFIER_VALUES | {v.strip().lower() for v in settings.blocked_identifiers},
        )

    def rank(self, type_: str) -> int:
        return self.priority.get(type_, DEFAULT_OTHER_PRIORITY)

    def ordered(self, ids: Sequence[Identifier]) -> list[Identifier]:
        """Highest priority first; ties by type then value, so the order is deterministic."""
        return sorted(ids, key=lambda i: (-self.rank(i.type), i.type, i.value))

    def is_blocked(self, identifier: Identifier) -> bool:
        return identifier.value.strip().lower() in self.blocked

    def prepare(self, req: ResolveRequest) -> list[Identifier]:
        """The identifiers resolution works on: unique, unblocked, highest priority first, never empty."""
        ids = [i for i in dict.fromkeys(req.identifiers) if not self.is_blocked(i)]
        return self.ordered(ids) if ids else [Identifier(FALLBACK_TYPE, req.message_id)]


@fast_init
@dataclass(frozen=True, slots=True)
class ResolveRequest:
    message_id: str
    ts: int
    channel: str
    identifiers: tuple[Identifier, ...]
    traits: JSONDict = field(default_factory=dict)
    #: Kafka source coordinate ``topic/partition/offset`` of the event: with ``message_id`` it names
    #: the occurrence whose resolution is remembered for replays. Empty: nothing is remembered.
    source: str = ""
    #: For an ``alias``: its ``previousId``, which intake types ``anonymous_id``. Segment allows it
    #: to be an earlier ``userId`` too: when ``user_id:<it>`` is known and ``anonymous_id:<it>`` is
    #: not, it is resolved as that user. An alias is an explicit statement that both ids are one
    #: person, so the per-type limits (``user_id=1``) do not refuse it; the caps on identifiers
    #: and merges still apply.
    alias_of: str = ""


@dataclass(frozen=True, slots=True)
class Merge:
    survivor: str
    absorbed: str
    linking: tuple[Identifier, ...]
    ts: int


@fast_init
@dataclass(frozen=True, slots=True)
class Resolution:
    profile_id: str
    outcome: Outcome
    created: bool = False
    merges: tuple[Merge, ...] = ()
    dropped: tuple[Identifier, ...] = ()  # dropped to respect a limit


def new_profile_id(message_id: str, first: Identifier) -> str:
    """Deterministic: the same creating event gives the same id on every replay."""
    return "p_" + hashlib.sha1(f"{message_id}|{first.type}:{first.value}".encode()).hexdigest()[:24]


@dataclass(slots=True)
class ProfileView:
    """A profile as ``cxstream profile show`` prints it."""

    profile_id: str
    created: int
    first_seen: int
    last_seen: int
    identifiers: list[Identifier]
    traits: dict[str, tuple[object, int]]
    channels: dict[str, int]
    merges: list[JSONDict]


class IdentityStore(ABC):
    """Where the identity graph lives."""

    @abstractmethod
    async def resolve(self, batch: Sequence[ResolveRequest]) -> list[Resolution]:
        """Resolve every request, in order, each atomically. Called once per batch. An occurrence
        resolved before (same ``message_id`` and non-empty ``source``, memo alive) gets the same
        :class:`Resolution` again, with nothing applied."""

    @abstractmethod
    async def lookup(self, identifier: Identifier) -> str | None:
        """The live profile id an identifier belongs to, or ``None``."""

    @abstractmethod
    async def profile(self, profile_id: str) -> ProfileView | None:
        """The profile (following a merge pointer to the survivor), or ``None``."""

    @abstractmethod
    async def forget(self, profile_id: str) -> list[str]:
        """Erase a profile and everything of it; returns the erased profile ids (incl. absorbed)."""

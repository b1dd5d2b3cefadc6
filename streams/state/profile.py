"""Per-profile state of the decision stage: one JSON document per profile.

Stored compactly (Redis key ``{P:s:<pid>}``, loaded and saved once per batch, and carried in
merge hand-offs): the document's keys are short and stable, and differ from some attribute
names (:data:`STORED_KEYS`). A state written by any earlier version reads back with nothing
lost: changing a stored key would strand what is in Redis and in the repartition topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Final

from streams.model import JSONDict, dumps, loads

#: Consent history entry: [granted, event ms, source]
ConsentEntry = list[Any]


@dataclass(slots=True)
class ProfileState:
    #: purpose -> history of [granted, ts, source], oldest first, bounded
    consent: dict[str, list[ConsentEntry]] = field(default_factory=dict)
    #: rule name -> the rule's own state
    rules: dict[str, JSONDict] = field(default_factory=dict)
    #: pending timers of this profile: ``rule|name`` (:attr:`TimerId.key
    #: <streams.state.timer_id.TimerId.key>`) -> due ms (they follow a merge)
    timers: dict[str, int] = field(default_factory=dict)
    #: payloads of those timers that have one: ``rule|name`` -> payload (they follow a merge too)
    timer_payloads: dict[str, JSONDict] = field(default_factory=dict)
    #: failed attempts of a timer whose rule raised: ``rule|name`` -> count (bounded retries)
    fails: dict[str, int] = field(default_factory=dict)
    #: rule name -> event ms of its last trigger (cooldowns)
    cooldowns: dict[str, int] = field(default_factory=dict)
    #: channel -> event ms of recent activations (frequency caps)
    caps: dict[str, list[int]] = field(default_factory=dict)
    #: zero-party preferences: channels or topics the customer chose, as data
    prefs: JSONDict = field(default_factory=dict)
    #: computed traits (order count, revenue, last activity, ...): see streams.engine.computed
    computed: JSONDict = field(default_factory=dict)
    #: the most recent decided triggers, oldest first, bounded: see streams.engine.recent
    recent: list[JSONDict] = field(default_factory=list)
    country: str | None = None
    #: identifier types the profile has (who can be reached where)
    reach: list[str] = field(default_factory=list)
    #: profiles merged into this one (makes a repeated hand-off a no-op)
    absorbed: list[str] = field(default_factory=list)
    #: absorbed profiles whose hand-off is announced but not yet here: events wait in ``buffer``
    pending: list[str] = field(default_factory=list)
    #: repartition records held while a hand-off is pending, applied in order once it arrives
    buffer: list[JSONDict] = field(default_factory=list)
    #: wall ms since when ``pending`` has been waited for (the hand-off timeout counts from it)
    since: int = 0
    #: set when this profile was merged away: events for it go to the survivor
    merged_into: str | None = None
    #: offset of the last repartition record applied to this profile (redelivery is a no-op)
    applied_offset: int = -1
    #: and its index, if that Kafka record was a batch of records (``b``, see
    #: :mod:`streams.pipeline.envelope`); 0 for a record of its own
    applied_index: int = 0
    #: open exposures: decided triggers waiting for a conversion (``streams.measure.exposures``)
    expo: list[JSONDict] = field(default_factory=list)

    def become_tombstone(self, merged_into: str) -> None:
        """Forget everything but the applied offset, and point at the survivor."""
        fresh = ProfileState(
            merged_into=merged_into, applied_offset=self.applied_offset, applied_index=self.applied_index
        )
        for f in fields(self):
            setattr(self, f.name, getattr(fresh, f.name))

    def restore(self, raw: bytes) -> None:
        """Become the state ``raw`` (from :meth:`to_json`) again, in place: undo a failed change."""
        old = ProfileState.from_json(raw)
        for f in fields(self):
            setattr(self, f.name, getattr(old, f.name))

    def to_json(self) -> bytes:
        """The stored document: :data:`STORED_KEYS` names, empty values left out (``off`` always)."""
        d: JSONDict = {"off": self.applied_offset}
        for attr, key in STORED_KEYS.items():
            v = getattr(self, attr)
            if v and key != "off":
                d[key] = v
        return dumps(d)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProfileState:
        """The state of a stored document (as written by :meth:`to_json`, this or any earlier version)."""
        # One constructor call with what the document holds: the defaults are made only for
        # what it leaves out (issue 13: ~40% of this method for a small state)
        d = loads(raw)
        if not isinstance(d, dict):
            return cls()
        attrs = _ATTRS
        return cls(**{attrs[k]: v for k, v in d.items() if k in attrs})


#: attribute -> key in the stored document. Short keys are the stored form since the first
#: version (``off``, ``into``, ``cool``, ``tpay``): kept so that states in Redis stay readable.
STORED_KEYS: Final[dict[str, str]] = {
    "applied_offset": "off",
    "applied_index": "oi",
    "consent": "consent",
    "rules": "rules",
    "timers": "timers",
    "timer_payloads": "tpay",
    "fails": "fails",
    "cooldowns": "cool",
    "caps": "caps",
    "prefs": "prefs",
    "computed": "computed",
    "recent": "recent",
    "reach": "reach",
    "absorbed": "absorbed",
    "pending": "pending",
    "buffer": "buffer",
    "expo": "expo",
    "country": "country",
    "merged_into": "into",
    "since": "since",
}

#: key in the stored document -> attribute (a key no version wrote is left out when read)
_ATTRS: Final[dict[str, str]] = {key: attr for attr, key in STORED_KEYS.items()}

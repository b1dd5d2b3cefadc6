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


@dataclass(slots=True, init=False)
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

    def __init__(
        self,
        consent: dict[str, list[ConsentEntry]] | None = None,
        rules: dict[str, JSONDict] | None = None,
        timers: dict[str, int] | None = None,
        timer_payloads: dict[str, JSONDict] | None = None,
        fails: dict[str, int] | None = None,
        cooldowns: dict[str, int] | None = None,
        caps: dict[str, list[int]] | None = None,
        prefs: JSONDict | None = None,
        computed: JSONDict | None = None,
        recent: list[JSONDict] | None = None,
        country: str | None = None,
        reach: list[str] | None = None,
        absorbed: list[str] | None = None,
        pending: list[str] | None = None,
        buffer: list[JSONDict] | None = None,
        since: int = 0,
        merged_into: str | None = None,
        applied_offset: int = -1,
        applied_index: int = 0,
        expo: list[JSONDict] | None = None,
    ) -> None:
        # written out, not the dataclass's: compiled (streams/native.py), mypyc makes it a
        # C function; the generated one stays interpreted (issue 13: 1.0 -> ~0.2 µs)
        self.consent = {} if consent is None else consent
        self.rules = {} if rules is None else rules
        self.timers = {} if timers is None else timers
        self.timer_payloads = {} if timer_payloads is None else timer_payloads
        self.fails = {} if fails is None else fails
        self.cooldowns = {} if cooldowns is None else cooldowns
        self.caps = {} if caps is None else caps
        self.prefs = {} if prefs is None else prefs
        self.computed = {} if computed is None else computed
        self.recent = [] if recent is None else recent
        self.country = country
        self.reach = [] if reach is None else reach
        self.absorbed = [] if absorbed is None else absorbed
        self.pending = [] if pending is None else pending
        self.buffer = [] if buffer is None else buffer
        self.since = since
        self.merged_into = merged_into
        self.applied_offset = applied_offset
        self.applied_index = applied_index
        self.expo = [] if expo is None else expo

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
        """The stored document: :data:`STORED_KEYS` names, empty values left out (``off`` always).

        Written out key by key, not by a loop over :data:`STORED_KEYS` with ``getattr``: compiled,
        these are direct slot reads (issue 13: the loop was a quarter of this method, and the
        method ~2/3 of a batch's commit); ``tests/state/test_profile_state.py`` holds the two to
        each other."""
        d: JSONDict = {"off": self.applied_offset}
        if self.applied_index:
            d["oi"] = self.applied_index
        if self.consent:
            d["consent"] = self.consent
        if self.rules:
            d["rules"] = self.rules
        if self.timers:
            d["timers"] = self.timers
        if self.timer_payloads:
            d["tpay"] = self.timer_payloads
        if self.fails:
            d["fails"] = self.fails
        if self.cooldowns:
            d["cool"] = self.cooldowns
        if self.caps:
            d["caps"] = self.caps
        if self.prefs:
            d["prefs"] = self.prefs
        if self.computed:
            d["computed"] = self.computed
        if self.recent:
            d["recent"] = self.recent
        if self.reach:
            d["reach"] = self.reach
        if self.absorbed:
            d["absorbed"] = self.absorbed
        if self.pending:
            d["pending"] = self.pending
        if self.buffer:
            d["buffer"] = self.buffer
        if self.expo:
            d["expo"] = self.expo
        if self.country:
            d["country"] = self.country
        if self.merged_into:
            d["into"] = self.merged_into
        if self.since:
            d["since"] = self.since
        return dumps(d)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProfileState:
        """The state of a stored document (as written by :meth:`to_json`, this or any earlier version).

        One positional constructor call with what the document holds: the defaults are made
        only for what it leaves out (issue 13: ~40% of this method for a small state), and
        keyword arguments cost compiled code a parse of their names (~1/4 of it)."""
        d = loads(raw)
        if not isinstance(d, dict):
            return cls()
        get = d.get
        return cls(
            get("consent"),
            get("rules"),
            get("timers"),
            get("tpay"),
            get("fails"),
            get("cool"),
            get("caps"),
            get("prefs"),
            get("computed"),
            get("recent"),
            get("country"),
            get("reach"),
            get("absorbed"),
            get("pending"),
            get("buffer"),
            get("since", 0),
            get("into"),
            get("off", -1),
            get("oi", 0),
            get("expo"),
        )


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

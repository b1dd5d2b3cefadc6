"""Magic numbers and the Redis key layout, in one place.

Redis key layout (``P`` is ``Settings.redis_prefix``; ``{...}`` is a Redis Cluster hash tag):

===============================  ======  ==============================================================
key                              type    holds
===============================  ======  ==============================================================
``{P:idg}:i:<type>:<value>``     string  identifier -> profile id (the identity index)
``{P:idg}:p:<pid>``              hash    profile meta: created, first_seen, last_seen, merged_into, ...
                                         (``an``: 1 anonymous-only, 0 known; see retention below)
``{P:idg}:p:<pid>:ids``          set     the profile's identifiers, ``type:value``
``{P:idg}:p:<pid>:traits``       hash    trait -> JSON ``[value, event_ms]`` (newest event wins)
``{P:idg}:p:<pid>:ch``           hash    channel -> last event ms
``{P:idg}:p:<pid>:merges``       list    JSON merge records, oldest first
``{P:idg}:p:<pid>:absorbed``     set     profiles merged into this one (erasure follows them)
``{P:idg}:p:<pid>:r``            zset    its resolution memos: ``<messageId>|<source>`` -> expiry ms
``{P:idg}:r:<messageId>|<src>``  string  resolution memo of one event occurrence (JSON), TTL ``dedupe_ttl``
``{P:dd:<b>}:<messageId>``       string  dedupe marker (the source coordinate), TTL ``dedupe_ttl``;
                                         ``b`` = CRC32(messageId) mod ``DEDUPE_BUCKETS``
``{P:s:<pid>}``                  string  decision-stage state of a profile: consent, rule state, caps
``{P:t:<n>}:due``                zset    timers of profiled partition n: member -> due ms
``{P:t:<n>}:data``               hash    timer member -> JSON payload
``{P:t:<n>}:claims``             zset    claimed timer member -> lease expiry ms
``{P:t:<n>}:wm``                 hash    source partition -> watermark ms, as seen by partition n
``{P:t:<n>}:wait``               zset    profiles of partition n waiting for a hand-off -> since (wall ms)
``{P:t:<n>}:act``                zset    known customers of partition n -> last activity ms (KPI gauges)
===============================  ======  ==============================================================

Why one hash tag for the whole identity graph: resolution must read and write several
identifiers and profiles atomically (one Lua call per batch), and Lua may only touch
keys of one slot. On Redis Cluster the graph therefore lives on one primary (measured
~200k keys/s per script call of 500 keys, far above one worker's intake), while profile
state and timers, the bulk of the traffic, spread over the cluster by their own tags.
Dedupe markers need no atomicity across ids, so they spread by ``DEDUPE_BUCKETS`` tags.

Retention (``CXSTREAM_ANONYMOUS_RETENTION_DAYS``): an anonymous-only profile (identifiers of
:data:`ANONYMOUS_TYPES` only) has a TTL of that many days on its graph keys (meta, sub-keys, the
index key of each identifier) and its state ``{P:s:<pid>}``, refreshed by events (with a margin:
:func:`retention_margin`); the event that makes it known PERSISTs them. An absorbed profile's
leftover meta (the merge pointer) and a state tombstone live :data:`MERGED_POINTER_TTL`. Timers
of a profile whose state expired are stale when they come due (the fresh state does not hold
them) and are dropped, not fired.
"""

from __future__ import annotations

import zlib
from typing import Final

MS: Final = 1
SECOND_MS: Final = 1000
MINUTE_MS: Final = 60 * SECOND_MS
HOUR_MS: Final = 60 * MINUTE_MS
DAY_MS: Final = 24 * HOUR_MS

#: Hash tags the dedupe markers are spread over. One server: one script call per batch
#: whatever this is. Cluster: one script call per bucket in the batch, in one pipeline;
#: measured at 500 ids per batch: 16 buckets ~68k ids/s, 64 ~55k/s, 256 ~34k/s (plain
#: SET NX + GET ~15k/s). 64 tags: ~21 per primary of 3, and some on each of up to ~10.
DEDUPE_BUCKETS: Final = 64

#: How long a claimed timer is leased before another owner may fire it again.
TIMER_LEASE_MS: Final = 30 * SECOND_MS
#: Attempts at a timer whose rule fails before it is dead-lettered with its payload. Rules do
#: no I/O, so a failure is almost always a bug; the retries (one per lease, 30 s apart) cover
#: a rule fixed by a rolling restart within a minute, and nothing is held up meanwhile. A timer
#: fired in the round that set it (with its batch, or chained) was not claimed: its second
#: attempt is at the next round, which claims it, and the lease paces the third.
TIMER_MAX_ATTEMPTS: Final = 3
#: Most timers fired per partition per scan, so one partition cannot starve the others.
TIMER_SCAN_LIMIT: Final = 500
#: Most timers that one due timer's firing may set due already and fire at once, in the same
#: round (``streams.pipeline.decide_timers``); a rule that keeps setting due timers leaves the
#: rest to the next round.
TIMER_CHAIN_LIMIT: Final = 16

#: Identifier types that leave a profile anonymous (``message_id``: the fallback of an event whose
#: identifiers were all blocked). A profile with any other type is known and kept until erased.
ANONYMOUS_TYPES: Final = frozenset({"anonymous_id", "device_id", "message_id"})


def retention_margin(ttl: int) -> int:
    """Seconds an anonymous-only profile may outlive its retention period (``ttl`` seconds): its graph
    keys get ``ttl`` plus this, refreshed only once their TTL has fallen below ``ttl``, so a visitor's
    burst of events sets them once (each refresh is seven EXPIREs or more). It is removed between
    ``ttl`` and ``ttl`` + margin after its last event: a day, or 1% of a shorter period."""
    return min(86_400, ttl // 100)


#: Seconds the pointer left by an absorbed profile (and a state tombstone) lives: lookups by the
#: old id within it still find the survivor; 30 days covers any replay or hand-off in flight.
MERGED_POINTER_TTL: Final = 30 * 86400

#: Identifier values never used to link profiles, whatever the settings add.
BLOCKED_IDENTIFIER_VALUES: Final = frozenset(
    {"", "null", "none", "undefined", "anonymous", "unknown", "-1", "0", "nan", "n/a", "test", "guest"}
)

#: The CloudEvents ``specversion`` and the data content type of our triggers.
CLOUDEVENTS_SPEC: Final = "1.0"
CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json"


class Keys:
    """Builds every Redis key from the prefix. The one place that knows the layout."""

    __slots__ = ("graph", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.graph = "{" + prefix + ":idg}"

    def identifier(self, type_: str, value: str) -> str:
        return f"{self.graph}:i:{type_}:{value}"

    def profile(self, pid: str) -> str:
        return f"{self.graph}:p:{pid}"

    # The profile's sub-keys. ``resolve.lua`` builds the same names itself (a script only gets
    # the graph's hash tag): a change here must be made there too.
    def profile_identifiers(self, pid: str) -> str:
        """``{P:idg}:p:<pid>:ids``: set of the profile's identifiers, ``type:value``."""
        return self.profile(pid) + ":ids"

    def profile_traits(self, pid: str) -> str:
        """``{P:idg}:p:<pid>:traits``: hash, trait -> JSON ``[value, event_ms]``."""
        return self.profile(pid) + ":traits"

    def profile_channels(self, pid: str) -> str:
        """``{P:idg}:p:<pid>:ch``: hash, channel -> last event ms."""
        return self.profile(pid) + ":ch"

    def profile_merges(self, pid: str) -> str:
        """``{P:idg}:p:<pid>:merges``: list of JSON merge records, oldest first."""
        return self.profile(pid) + ":merges"

    def resolution(self, message_id: str, source: str) -> str:
        """Memo of one event occurrence's resolution (``source``: ``topic/partition/offset``, no ``|``)."""
        return f"{self.graph}:r:{message_id}|{source}"

    def dedupe(self, message_id: str) -> str:
        """``{P:dd:<bucket>}:<messageId>``: the bucket is the hash tag (so the slot)."""
        return "{" + f"{self.prefix}:dd:{dedupe_bucket(message_id)}" + "}:" + message_id

    def state(self, pid: str) -> str:
        return "{" + f"{self.prefix}:s:{pid}" + "}"

    def timers(self, partition: int) -> str:
        """``{P:t:<n>}``: the hash tag of a partition's timer keys (all in one slot: one Lua call)."""
        return "{" + f"{self.prefix}:t:{partition}" + "}"

    def timer_due(self, partition: int) -> str:
        """``{P:t:<n>}:due``: zset, timer member -> due ms."""
        return self.timers(partition) + ":due"

    def timer_data(self, partition: int) -> str:
        """``{P:t:<n>}:data``: hash, timer member -> JSON payload."""
        return self.timers(partition) + ":data"

    def timer_claims(self, partition: int) -> str:
        """``{P:t:<n>}:claims``: zset, claimed timer member -> lease expiry ms."""
        return self.timers(partition) + ":claims"

    def timer_marks(self, partition: int) -> str:
        """``{P:t:<n>}:wm``: hash, source partition -> watermark ms as seen by partition n."""
        return self.timers(partition) + ":wm"

    def timer_waiting(self, partition: int) -> str:
        """``{P:t:<n>}:wait``: zset, profile waiting for a hand-off -> since (wall ms)."""
        return self.timers(partition) + ":wait"

    def activity(self, partition: int) -> str:
        """``{P:t:<n>}:act``: zset, known customer of partition n -> last activity ms (KPIs)."""
        return self.timers(partition) + ":act"


def dedupe_bucket(message_id: str) -> int:
    """Which of the ``DEDUPE_BUCKETS`` hash tags holds a messageId's marker (stable everywhere)."""
    return zlib.crc32(message_id.encode()) % DEDUPE_BUCKETS


#: the header of a batch record of the repartition topic that says how many records it holds
#: (``streams.pipeline.envelope.batched``); the decide stage's batch size counts records, not
#: Kafka messages (``streams.fastpath.records_weight``)
RECORDS_HEADER = "cx-records"

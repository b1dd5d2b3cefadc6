"""Prometheus metrics: every one cxstream exports, in one place.

Conventions: ``cxstream_`` prefix, base units (seconds; counts of records are plain numbers),
``_total`` counters, no per-person labels: label values come from closed or capped sets
(channel, call type, error code, rule name, outcome, reason, topic, partition).

The program-health measures (docs: domain principle 5) are ratios of these counters, taken in
PromQL (``deploy/grafana/cxstream.json`` shows them first):

* **valid-event share**: ``events_in / (events_in + deadletter)``: messages that passed
  validation, of all messages read from the raw topic.
* **identity resolution rate**: ``events_resolved{person="known"} / events_resolved``: events
  whose unified profile, once the event is applied (merges included), holds at least one
  identifier of a known person, i.e. any type but :data:`ANONYMOUS_TYPES` (a ``user_id``,
  ``email``, ``phone``, ``loyalty_id``, ``crm_id``, ...). Counted by the decide stage, which
  holds the profile (``ProfileState.reach``); intake only sees the event's own identifiers, and
  an anonymous page view of someone who logged in last week is exactly what resolution is for.
* **consent coverage**: ``decision_consent{statement="explicit"} / decision_consent``:
  decisions (activated or suppressed) where the profile holds an explicit consent statement,
  granted or withdrawn, for a purpose the decision needs (the rule's, or a candidate channel's);
  the others ran on the regional default (opt-in: no, opt-out: yes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

log = logging.getLogger(__name__)

# Buckets that fit a pipeline measured in milliseconds, with a tail for backlogs.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Redis calls are sub-millisecond on loopback; the top buckets catch retries and slow scripts.
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
#: Timer lateness is wall time since a timer became due (the timer tick, 0.2-1 s, when healthy,
#: on either clock); a starved worker or a backlog of due timers can make it minutes or hours.
LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

#: Identifier types that do not name a person: cookies, devices, and the fallback id of an event
#: with no usable identifier. A profile with any other type is "known".
ANONYMOUS_TYPES = frozenset({"anonymous_id", "device_id", "message_id"})

#: Channel names come from the input (``context.channel``), so a label is one of a closed set:
#: the contract's channels (docs/contract.md: ``context.channel``), the ones intake derives itself
#: (``server``, ``unknown``) and the policy's (:func:`known_channels`); any other name (one run
#: produced ``ivy_j_example_com``) counts as ``other``.
CONTRACT_CHANNELS = frozenset(
    {"web", "app", "email", "pos", "crm", "call_center", "ads", "sms", "push", "server", "unknown"}
)

# ---------------------------------------------------------------------- intake
EVENTS_IN = Counter("cxstream_events_in_total", "Valid events accepted by intake", ["channel", "call"])
DEADLETTERED = Counter("cxstream_deadletter_total", "Messages dead-lettered, by error code", ["code"])
DUPLICATES = Counter("cxstream_duplicates_total", "Events dropped as duplicate messageIds")
FUTURE_CLAMPED = Counter(
    "cxstream_future_clamped_total", "Events whose time lay in the future and was clamped"
)
BLOCKED_IDENTIFIERS = Counter(
    "cxstream_identifiers_blocked_total", "Identifier values ignored as blocked", ["type"]
)
# ---------------------------------------------------------------------- identity
IDENTITY_OUTCOMES = Counter(
    "cxstream_identity_outcomes_total",
    "Identity resolution outcomes per event (new, matched, merged; limit_hit: an identifier was dropped "
    "to respect a limit; erased: a profile erased on request)",
    ["outcome"],
)
PROFILE_CHANGES = Counter(
    "cxstream_profile_changes_total",
    "Unified profiles created, merged away (absorbed into a survivor) and erased",
    ["change"],
)
EVENTS_RESOLVED = Counter(
    "cxstream_events_resolved_total",
    "Events applied to a unified profile, by whether the profile holds a known-person identifier",
    ["person"],
)
# ---------------------------------------------------------------------- batches and latency
BATCH_SIZE = Histogram("cxstream_batch_size", "Events per processed batch", ["stage"], buckets=BATCH_BUCKETS)
PROCESSING_SECONDS = Histogram(
    "cxstream_batch_processing_seconds", "Time to process one batch", ["stage"], buckets=LATENCY_BUCKETS
)
EVENT_TO_TRIGGER_SECONDS = Histogram(
    "cxstream_event_to_trigger_seconds",
    "Wall time from an event's arrival at intake to its trigger being produced (event-caused triggers)",
    ["rule"],
    buckets=LATENCY_BUCKETS,
)
# ---------------------------------------------------------------------- consent, rules, triggers
TRIGGERS = Counter("cxstream_triggers_total", "Triggers activated, by rule and channel", ["rule", "channel"])
DECISIONS = Counter(
    "cxstream_decisions_total",
    "Decisions on triggers, by rule and outcome (activated, suppressed, holdout, error)",
    ["rule", "outcome"],
)
REFUSALS = Counter(
    "cxstream_channel_refusals_total",
    "Candidate channels refused by the governance step, by rule and reason (no_consent, frequency_cap, ...)",
    ["rule", "reason"],
)
DECISION_CONSENT = Counter(
    "cxstream_decision_consent_total",
    "Decisions by whether the profile held an explicit consent statement for a purpose they need",
    ["statement"],
)
RULE_ERRORS = Counter(
    "cxstream_rule_errors_total",
    "Rule calls that raised or returned an invalid outcome (isolated: that rule, that event or timer)",
    ["rule"],
)
BATCH_RETRIES = Counter(
    "cxstream_batch_retries_total",
    "Batches (or timer/lag task runs) our own code failed on and that were done again; "
    "nonzero means a bug is holding a partition up",
    ["stage"],
)
HANDOFF_TIMEOUTS = Counter(
    "cxstream_handoff_timeouts_total",
    "Profiles that stopped waiting for a merge hand-off (timeout or full buffer) and went on",
)
# ---------------------------------------------------------------------- measurement (streams/measure)
MEASURED_TRIGGERS = Counter(
    "cxstream_measured_triggers_total",
    "Triggers governance allowed, by rule and group: treated (activated) or holdout (held out, not sent)",
    ["rule", "group"],
)
CONVERSIONS = Counter(
    "cxstream_conversions_total",
    "Conversions within the rule's window after a trigger, by rule and group (treated, holdout)",
    ["rule", "group"],
)
EVENTS_IDENTIFIED = Counter(
    "cxstream_events_identified_total",
    "Events applied to a profile, by who identifies the person: the event itself, its profile, or nobody",
    ["by"],
)
MILESTONES = Counter(
    "cxstream_profile_milestones_total",
    "Profiles reaching a program milestone (known, cross_channel, first_purchase, repeat_purchase)",
    ["milestone"],
)
RETURNS = Counter(
    "cxstream_customer_returns_total",
    "Activities of known customers after a quiet spell, by its length (under_30d, 30d_to_90d, over_90d, "
    "after_churn)",
    ["gap"],
)
# ---------------------------------------------------------------------- timers
TIMERS_FIRED = Counter("cxstream_timers_fired_total", "Durable timers fired", ["rule"])
TIMERS_PENDING = Gauge("cxstream_timers_pending", "Timers scheduled on this worker's partitions")
CUSTOMERS = Gauge(
    "cxstream_customers",
    "Known customers of this worker's partitions: all with activity, active in the last 30d/90d, "
    "churned (no activity for [measurement] churn_days); sum over workers (streams.measure.activity)",
    ["partition", "window"],
)
TIMER_LATENESS = Histogram(
    "cxstream_timer_lateness_seconds",
    "Wall seconds from the moment a timer became due (its partition's clock reached it) until it fired",
    buckets=LATENESS_BUCKETS,
)
# ---------------------------------------------------------------------- Kafka and Redis
CONSUMER_LAG = Gauge(
    "cxstream_consumer_lag_records",
    "Records not yet processed per assigned partition: highwater - next offset to process",
    ["topic", "partition"],
)
REDIS_SECONDS = Histogram("cxstream_redis_call_seconds", "Redis call latency", ["op"], buckets=REDIS_BUCKETS)
REDIS_ERRORS = Counter("cxstream_redis_errors_total", "Redis calls that failed and were retried", ["op"])
KAFKA_ERRORS = Counter("cxstream_kafka_errors_total", "Produce calls that failed and were retried")
REDIS_OUTAGE = Gauge(
    "cxstream_redis_outage", "1 while a Redis call is waiting out an outage (retrying with backoff), else 0"
)
KAFKA_OUTAGE = Gauge(
    "cxstream_kafka_outage",
    "1 while a produce is waiting out a Kafka outage (resending with backoff), else 0",
)

_channels: set[str] = set(CONTRACT_CHANNELS)


def known_channels(names: Iterable[str]) -> None:
    """Add the policy's channels (configuration, not input) to the labels :func:`channel_label` keeps."""
    _channels.update(names)


def channel_label(channel: str) -> str:
    """``channel`` as a label value if it is a known channel, else ``other``."""
    return channel if channel in _channels else "other"


def program_series(calls: Iterable[str], codes: Iterable[str]) -> None:
    """Start the program-health series (docstring above) at 0, every label value they can take:
    the known channels (and ``other``) by call type, the dead-letter ``codes``, both persons and
    both consent statements.

    Prometheus takes a series' first sample as where ``increase`` and ``rate`` start: a series
    born with its first count loses that count. And a worker that takes a burst between two
    scrapes (a replay, a backlog after a deploy) gives every ratio 0/0, NaN, on the dashboard.
    Call after :func:`known_channels`; before the metrics endpoint serves, so the first scrape
    has them."""
    calls = list(calls)
    for channel in (*_channels, "other"):
        for call in calls:
            EVENTS_IN.labels(channel, call)
    for code in codes:
        DEADLETTERED.labels(code)
    for person in ("known", "anonymous"):
        EVENTS_RESOLVED.labels(person)
    for statement in ("explicit", "none"):
        DECISION_CONSENT.labels(statement)


def measured_rules(rules: Iterable[str], converting: Iterable[str]) -> None:
    """Start the measurement series of the enabled rules at 0 (triggers of both groups; conversions
    of the rules that define conversion events), so a rate over them counts their first events."""
    for rule in rules:
        for group in ("treated", "holdout"):
            MEASURED_TRIGGERS.labels(rule, group)
    for rule in converting:
        for group in ("treated", "holdout"):
            CONVERSIONS.labels(rule, group)


def person_label(reach: Iterable[str]) -> str:
    """``known`` if the identifier types ``reach`` name a person, else ``anonymous``."""
    return "anonymous" if ANONYMOUS_TYPES.issuperset(reach) else "known"


def statement_label(consent: Mapping[str, Any], purposes: Iterable[str]) -> str:
    """``explicit`` if the consent history holds a statement for one of ``purposes``, else ``none``."""
    return "explicit" if any(consent.get(p) for p in purposes) else "none"


def event_resolved(reach: Iterable[str]) -> None:
    """An event was applied to a profile whose identifier types are ``reach``."""
    EVENTS_RESOLVED.labels(person_label(reach)).inc()


def decision_consent(consent: Mapping[str, Any], purposes: Iterable[str]) -> None:
    """A decision needing ``purposes`` was taken on a profile with this consent history."""
    DECISION_CONSENT.labels(statement_label(consent, purposes)).inc()


# ---------------------------------------------------------------------- per-batch counting
#: counts gathered by :func:`count`, per (counter, label values), until :func:`flush`
_pending: dict[tuple[Counter, tuple[str, ...]], int] = {}


def count(counter: Counter, *labels: str) -> None:
    """Add 1 to ``counter`` (with these label values) at the next :func:`flush`.

    For what happens once per event: ``labels().inc()`` takes a lock and builds the label key
    each time (a few µs); a batch of 500 events has a handful of distinct label sets, each
    added once. Only the process's own event loop calls this (not thread-safe)."""
    key = (counter, labels)
    _pending[key] = _pending.get(key, 0) + 1


def flush() -> None:
    """Add what :func:`count` gathered to the counters. Called at the end of each stage call
    (``IntakeStage.process``, ``DecideStage.process``/``fire_due``/``release_waiting``) and by
    the app after every batch, so a scrape lags by at most the batch in hand."""
    if not _pending:
        return
    items = list(_pending.items())
    _pending.clear()
    for (counter, labels), n in items:
        (counter.labels(*labels) if labels else counter).inc(n)


class Lag:
    """Consumer lag per assigned partition: highwater - the next offset this worker will process.

    The next offset is the one after the last record an agent finished (:meth:`done`), else the
    consumer's fetch position; records fetched but still buffered in faust's stream count as lag.
    """

    def __init__(self) -> None:
        self.next: dict[tuple[str, int], int] = {}
        self.shown: set[tuple[str, int]] = set()
        self.positions: dict[tuple[str, int], int | None] = {}  # fetch positions at the last caught_up

    def done(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if offset + 1 > self.next.get(key, -1):
            self.next[key] = offset + 1

    async def measure(self, consumer: Any) -> None:
        """Set the gauge for the consumer's current assignment (faust consumer; untyped)."""
        try:
            assigned = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        except Exception:  # consumer not started yet
            return
        for key in list(self.shown - assigned.keys()):  # revoked: its series go away
            CONSUMER_LAG.remove(key[0], str(key[1]))
            self.shown.discard(key)
            self.next.pop(key, None)
        for key, tp in sorted(assigned.items()):
            try:
                high = consumer.highwater(tp)
                pos = await consumer.position(tp)
            except Exception as exc:  # a partition being reassigned; next round
                log.debug("lag of %s/%s unknown (%s)", key[0], key[1], type(exc).__name__)
                continue
            if high is None or pos is None:
                continue
            nxt = min(pos, self.next[key]) if key in self.next else pos
            CONSUMER_LAG.labels(key[0], str(key[1])).set(max(0, high - nxt))
            self.shown.add(key)

    async def caught_up(self, consumer: Any, topic: str) -> list[int]:
        """The partitions of ``topic`` assigned here that are processed to their end, in order: at
        their high-water mark, and every record fetched from them processed.

        "Every record fetched" is checked at each step between the fetch and the end of a
        batch, with the bookkeeping of :class:`streams.fastpath.Consumer`: every record
        fetched for the streams was handed to one (``fetched`` against ``delivered``), every
        one handed over is done (``delivered`` against :meth:`done`), and the fetch position
        is where it was at the last call (records fetched since may still be on their way
        from the consumer's thread). So a partition counts from the second call that finds it
        at rest, and a backlog fetched whole at start-up is not idle while it waits in the
        stream's queue.
        """
        try:
            assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        except Exception:  # consumer not started yet
            return []
        fetched: dict[Any, int] = getattr(consumer, "fetched", {})
        delivered: dict[Any, int] = getattr(consumer, "delivered", {})
        out: list[int] = []
        for tp in assigned:
            key = (tp.topic, tp.partition)
            try:
                high = consumer.highwater(tp)
                pos = await consumer.position(tp)
            except Exception:  # being reassigned: not caught up as far as we know
                continue
            last, self.positions[key] = self.positions.get(key), pos
            if high is None or pos is None or pos != last:
                continue
            handed = delivered.get(tp, -1)
            if fetched.get(tp, -1) > handed or self.next.get(key, -1) < handed:
                continue  # fetched for a stream, in its queue, or in a batch in hand
            if pos >= high:
                out.append(tp.partition)
        return sorted(out)  # the assignment is a set: its order changes from run to run

    def forget(self, consumer: Any, revoked: Iterable[Any]) -> None:
        """Partitions revoked in a rebalance start afresh if they come back: the offsets noted
        before they left (fetched, handed over, done) would hold their idle report back for good
        once another worker had moved them on."""
        fetched: dict[Any, int] = getattr(consumer, "fetched", {})
        delivered: dict[Any, int] = getattr(consumer, "delivered", {})
        for tp in revoked:
            key = (tp.topic, tp.partition)
            self.next.pop(key, None)
            self.positions.pop(key, None)
            fetched.pop(tp, None)
            delivered.pop(tp, None)


# Closed label sets start at 0, so a rate or increase over a series counts its first events too.
for _person in ("known", "anonymous"):
    EVENTS_RESOLVED.labels(_person)
for _statement in ("explicit", "none"):
    DECISION_CONSENT.labels(_statement)
for _change in ("created", "merged", "erased"):
    PROFILE_CHANGES.labels(_change)
for _outcome in ("new", "matched", "merged", "limit_hit", "erased"):
    IDENTITY_OUTCOMES.labels(_outcome)
for _by in ("event", "profile", "anonymous"):
    EVENTS_IDENTIFIED.labels(_by)
for _m in ("known", "cross_channel", "first_purchase", "repeat_purchase"):
    MILESTONES.labels(_m)
for _g in ("under_30d", "30d_to_90d", "over_90d", "after_churn"):
    RETURNS.labels(_g)


# ---------------------------------------------------------------------- reading a worker's endpoint
#: what the live summary of ``cxstream dev`` adds up, from a scrape
SUMMARY: dict[str, tuple[str, dict[str, str]]] = {
    "events_in": ("cxstream_events_in_total", {}),
    # one activation (CloudEvent) per activated decision, whatever the number of its channels
    "triggers": ("cxstream_decisions_total", {"outcome": "activated"}),
    "deadletter": ("cxstream_deadletter_total", {}),
    "lag": ("cxstream_consumer_lag_records", {}),
}


def scrape_totals(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Sum each :data:`SUMMARY` metric over its series, from a worker's ``/metrics`` endpoint."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out = dict.fromkeys(SUMMARY, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for key, (name, labels) in SUMMARY.items():
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    out[key] += sample.value
    return out


def summary_line(prev: Mapping[str, float], cur: Mapping[str, float], seconds: float) -> str:
    """``events/s in, triggers, dead letters, lag`` between two :func:`scrape_totals`."""
    rate = (cur["events_in"] - prev["events_in"]) / seconds if seconds > 0 else 0.0
    return (
        f"  [metrics] {rate:,.0f} events/s in ({cur['events_in']:,.0f} total), "
        f"{cur['triggers']:,.0f} triggers, {cur['deadletter']:,.0f} dead letters, lag {cur['lag']:,.0f}"
    )

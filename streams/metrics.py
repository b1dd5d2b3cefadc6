"""Prometheus metrics: every one cxstream exports, in one place.

Conventions: ``cxstream_`` prefix, base units (seconds, bytes), ``_total`` counters,
no per-person labels (label values come from closed sets: channel, call type, error
code, rule name, outcome, reason).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets that fit a pipeline measured in milliseconds, with a tail for backlogs.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)

EVENTS_IN = Counter("cxstream_events_in_total", "Valid events accepted by intake", ["channel", "call"])
DEADLETTERED = Counter("cxstream_deadletter_total", "Messages dead-lettered, by error code", ["code"])
DUPLICATES = Counter("cxstream_duplicates_total", "Events dropped as duplicate messageIds")
FUTURE_CLAMPED = Counter(
    "cxstream_future_clamped_total", "Events whose time lay in the future and was clamped"
)
BLOCKED_IDENTIFIERS = Counter(
    "cxstream_identifiers_blocked_total", "Identifier values ignored as blocked", ["type"]
)
BATCH_SIZE = Histogram("cxstream_batch_size", "Events per processed batch", ["stage"], buckets=BATCH_BUCKETS)
PROCESSING_SECONDS = Histogram(
    "cxstream_batch_processing_seconds", "Time to process one batch", ["stage"], buckets=LATENCY_BUCKETS
)
EVENT_TO_TRIGGER_SECONDS = Histogram(
    "cxstream_event_to_trigger_seconds",
    "Wall time from an event's arrival at intake to its trigger being produced",
    ["rule"],
    buckets=LATENCY_BUCKETS,
)
IDENTITY_OUTCOMES = Counter("cxstream_identity_outcomes_total", "Identity resolution outcomes", ["outcome"])
PROFILES_CREATED = Counter("cxstream_profiles_created_total", "Profiles created")
TRIGGERS = Counter("cxstream_triggers_total", "Triggers activated, by rule and channel", ["rule", "channel"])
DECISIONS = Counter(
    "cxstream_decisions_total", "Decisions by rule, outcome and reason", ["rule", "outcome", "reason"]
)
RULE_ERRORS = Counter("cxstream_rule_errors_total", "Events a rule raised on (isolated)", ["rule"])
TIMERS_FIRED = Counter("cxstream_timers_fired_total", "Durable timers fired", ["rule"])
TIMERS_PENDING = Gauge("cxstream_timers_pending", "Timers scheduled on this worker's partitions")
TIMER_LATENESS = Histogram(
    "cxstream_timer_lateness_seconds",
    "How late a timer fired, against its clock",
    buckets=LATENCY_BUCKETS,
)
REDIS_SECONDS = Histogram(
    "cxstream_redis_call_seconds", "Redis call latency", ["op"], buckets=LATENCY_BUCKETS
)
REDIS_ERRORS = Counter("cxstream_redis_errors_total", "Redis calls that failed and were retried", ["op"])
KAFKA_ERRORS = Counter("cxstream_kafka_errors_total", "Produce calls that failed and were retried")

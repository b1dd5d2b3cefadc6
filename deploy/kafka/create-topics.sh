#!/usr/bin/env bash
# Creates cxstream's topics with the retention each needs (docs/operations.md, "Kafka").
# Run once by the compose stack's `topics` service (the apache/kafka image); on a real
# cluster run it with KAFKA_BOOTSTRAP, REPLICATION=3 and KAFKA_TOPICS (the path of
# kafka-topics.sh) set. Existing topics are kept as they are (--if-not-exists).
set -euo pipefail

BOOTSTRAP="${KAFKA_BOOTSTRAP:-kafka:9092}"
PARTITIONS="${CXSTREAM_PARTITIONS:-8}"
REPLICATION="${REPLICATION:-1}"
APP_ID="${CXSTREAM_APP_ID:-cxstream}"
TOPICS_BIN="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"
DAY=86400000

for _ in $(seq 1 60); do
    "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1 && break
    echo "waiting for Kafka at $BOOTSTRAP"
    sleep 2
done

create() {  # name retention.ms [more --config k=v ...]
    local name="$1" retention="$2"
    shift 2
    "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --topic "$name" --partitions "$PARTITIONS" --replication-factor "$REPLICATION" \
        --config "retention.ms=$retention" "$@"
    echo "topic $name: $PARTITIONS partitions, replication $REPLICATION, retention $((retention / DAY)) days"
}

min_isr=$((REPLICATION > 1 ? 2 : 1))
create "${CXSTREAM_TOPIC_RAW:-cx.events.raw}" $((7 * DAY)) --config "min.insync.replicas=$min_isr"
# The repartition topic: what intake resolved, waiting for the decide stage. Keep it at least
# as long as the raw topic so a reprocessing from raw never needs records it already dropped.
create "$APP_ID-profiled" $((7 * DAY)) --config "min.insync.replicas=$min_isr"
create "${CXSTREAM_TOPIC_DEADLETTER:-cx.events.deadletter}" $((30 * DAY)) --config "min.insync.replicas=$min_isr"
create "${CXSTREAM_TOPIC_ACTIVATIONS:-cx.activations}" $((7 * DAY)) --config "min.insync.replicas=$min_isr"
create "${CXSTREAM_TOPIC_DECISIONS:-cx.decisions}" $((90 * DAY)) --config "min.insync.replicas=$min_isr"
create "${CXSTREAM_TOPIC_IDENTITY_CHANGES:-cx.identity.changes}" $((30 * DAY)) --config "min.insync.replicas=$min_isr"
# measured conversions (holdouts): read by analytics jobs, kept like the decisions they follow
create "${CXSTREAM_TOPIC_CONVERSIONS:-cx.conversions}" $((90 * DAY)) --config "min.insync.replicas=$min_isr"
"$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --describe --topics-with-overrides | grep -E "cx|$APP_ID" || true

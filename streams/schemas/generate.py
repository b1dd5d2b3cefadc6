"""JSON Schema files and the AsyncAPI document, generated from :mod:`streams.schemas.records`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from streams.constants import CLOUDEVENTS_CONTENT_TYPE
from streams.schemas.records import (
    DIALECT,
    ID_BASE,
    ROOT,
    SCHEMA_FORMAT,
    ConversionRecord,
    DeadLetterHeaders,
    DecisionRecord,
    IdentityChange,
    NormalizedEvent,
    ProfiledRecord,
    SegmentCall,
    TriggerCloudEvent,
)
from streams.settings import Settings

# ---------------------------------------------------------------------------------------- generation
#: file stem -> (type, title, description)
SCHEMAS: dict[str, tuple[Any, str, str]] = {
    "segment-call": (SegmentCall, "Segment call", "One Segment Spec message on the raw events topic."),
    "normalized-event": (NormalizedEvent, "Normalized event", "An event after intake (Event.to_dict)."),
    "profiled-record": (
        ProfiledRecord,
        "Profiled record",
        "A record of the internal repartition topic <app_id>-profiled, keyed by profile id.",
    ),
    "trigger-cloudevent": (TriggerCloudEvent, "Trigger", "A trigger: CloudEvents 1.0, structured JSON mode."),
    "decision": (DecisionRecord, "Decision", "The audit record of one decision."),
    "identity-change": (IdentityChange, "Identity change", "A profile created, merged or erased."),
    "conversion": (ConversionRecord, "Conversion", "A conversion after a trigger, on cx.conversions."),
    "deadletter-headers": (DeadLetterHeaders, "Dead-letter headers", "Headers of a dead-lettered message."),
}


def json_schema(stem: str) -> dict[str, Any]:
    type_, title, description = SCHEMAS[stem]
    schema = TypeAdapter(type_).json_schema(by_alias=True, mode="validation")
    if stem == "segment-call":
        # Segment: every call needs a userId or an anonymousId (alias requires userId anyway)
        schema["anyOf"] = [{"required": ["userId"]}, {"required": ["anonymousId"]}]
    if stem == "decision":
        # ``error`` comes with, and only with, outcome ``error``
        schema["if"] = {"properties": {"outcome": {"const": "error"}}, "required": ["outcome"]}
        schema["then"] = {"required": ["error"]}
        schema["else"] = {"not": {"required": ["error"]}}
    schema.update({"$schema": DIALECT, "$id": f"{ID_BASE}{stem}.schema.json", "title": title})
    schema["description"] = description + (" " + schema["description"] if "description" in schema else "")
    return schema


def _kafka_key(description: str) -> dict[str, Any]:
    return {"kafka": {"key": {"type": "string", "description": description}, "bindingVersion": "0.5.0"}}


def _payload(stem: str) -> dict[str, Any]:
    return {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{stem}.schema.json"}}


def asyncapi(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document: every topic (default names), its key, its messages."""
    s = settings or Settings()
    pid_key = _kafka_key("the profile id")
    messages: dict[str, Any] = {
        "segmentCall": {
            "name": "SegmentCall",
            "title": "Segment call",
            "summary": "identify, track, page, screen, group or alias, as JSON",
            "contentType": "application/json",
            "payload": _payload("segment-call"),
            "bindings": _kafka_key("any; usually the anonymousId or userId"),
        },
        "deadLetter": {
            "name": "DeadLetter",
            "title": "Dead letter",
            "summary": "a message intake rejected, or a record our code failed on (processing_error): "
            "the original bytes, untouched, and why in the headers",
            "contentType": "application/octet-stream",
            "headers": _payload("deadletter-headers"),
            "payload": {"type": "string", "format": "binary", "description": "the original bytes"},
            "bindings": _kafka_key("the original key, as received"),
        },
        "profiledRecord": {
            "name": "ProfiledRecord",
            "title": "Profiled record",
            "summary": "internal: resolved events, merge hand-offs, watermarks, erasures",
            "contentType": "application/json",
            "payload": _payload("profiled-record"),
            "bindings": _kafka_key(
                "the profile id (watermark markers and batches of records: no key, placed on a partition)"
            ),
        },
        "trigger": {
            "name": "Trigger",
            "title": "Trigger (CloudEvent)",
            "summary": "a rule fired and consent allowed it",
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "headers": {
                "type": "object",
                "required": ["content-type"],
                "properties": {
                    "content-type": {"type": "string", "const": CLOUDEVENTS_CONTENT_TYPE},
                },
            },
            "payload": _payload("trigger-cloudevent"),
            "bindings": pid_key,
        },
        "decision": {
            "name": "Decision",
            "title": "Decision",
            "summary": "one audit record per decision: activated, suppressed, holdout, or error "
            "(a rule failed)",
            "contentType": "application/json",
            "payload": _payload("decision"),
            "bindings": pid_key,
        },
        "conversion": {
            "name": "Conversion",
            "title": "Conversion",
            "summary": "the first conversion event within a rule's window after a trigger "
            "(treated or holdout)",
            "contentType": "application/json",
            "payload": _payload("conversion"),
            "bindings": pid_key,
        },
        "identityChange": {
            "name": "IdentityChange",
            "title": "Identity change",
            "summary": "a profile created, merged or erased",
            "contentType": "application/json",
            "payload": _payload("identity-change"),
            "bindings": pid_key,
        },
    }
    topics = [
        ("raw", s.topic_raw, "segmentCall", "receive", "Raw channel events, one Segment call per record."),
        ("deadletter", s.topic_deadletter, "deadLetter", "send", "Everything intake rejected."),
        ("activations", s.topic_activations, "trigger", "send", "Triggers for email and ad systems."),
        ("decisions", s.topic_decisions, "decision", "send", "The audit trail of every decision."),
        ("identityChanges", s.topic_identity_changes, "identityChange", "send", "Profile lifecycle."),
        ("conversions", s.topic_conversions, "conversion", "send", "Conversions after triggers, per group."),
    ]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for name, address, message, action, description in topics:
        channels[name] = {
            "address": address,
            "description": description + f" Setting: CXSTREAM_TOPIC_{_setting(name)}.",
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        operations[f"{action}{name[0].upper()}{name[1:]}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{message}"}],
        }
    channels["profiled"] = {
        "address": "{appId}-profiled",
        "description": "Internal repartition topic: the intake agent re-keys events by profile id for "
        "the decide agent. Same partition count as the raw topic.",
        "parameters": {"appId": {"description": "CXSTREAM_APP_ID", "default": s.app_id}},
        "messages": {"profiledRecord": {"$ref": "#/components/messages/profiledRecord"}},
    }
    for action in ("send", "receive"):
        operations[f"{action}Profiled"] = {
            "action": action,
            "channel": {"$ref": "#/channels/profiled"},
            "messages": [{"$ref": "#/channels/profiled/messages/profiledRecord"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "cxstream",
            "version": "0.1.0",
            "description": "Kafka-native real-time customer-event processor: Segment calls in, identity "
            "changes, decisions and CloudEvents triggers out. Topic names are the defaults.",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": s.kafka_bootstrap,
                "protocol": "kafka",
                "description": "CXSTREAM_KAFKA_BOOTSTRAP",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _setting(channel: str) -> str:
    return {"identityChanges": "IDENTITY_CHANGES"}.get(channel, channel.upper())


def render() -> dict[str, bytes]:
    """File name -> bytes, exactly as checked in (sorted keys, 2-space indent, trailing newline)."""
    import orjson

    opts = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2
    out = {f"{stem}.schema.json": orjson.dumps(json_schema(stem), option=opts) + b"\n" for stem in SCHEMAS}
    out["asyncapi.json"] = orjson.dumps(asyncapi(), option=opts) + b"\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m streams.schemas",
        description="Write the JSON Schemas and the AsyncAPI document into schemas/.",
    )
    ap.add_argument("--check", action="store_true", help="exit 1 if a file in DIR differs, write nothing")
    ap.add_argument("dir", nargs="?", type=Path, default=ROOT)
    args = ap.parse_args(argv)
    stale = []
    for name, data in render().items():
        path: Path = args.dir / name
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    verb = "differ" if args.check else "written"
    print(f"{len(stale)} file(s) {verb} in {args.dir}" + (": " + ", ".join(stale) if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())

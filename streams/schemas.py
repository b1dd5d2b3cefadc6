"""JSON Schemas (draft 2020-12) of every message cxstream reads or writes, and the AsyncAPI 3.0 document.

The models below *describe* records; they are not used to build them (``streams.sinks.records``,
``streams.pipeline.envelope`` and ``streams.model.Event.to_dict`` do that, for speed). Tests
validate real records against the generated files, so a builder that drifts from its schema fails.

Regenerate after changing a record (``tests/test_schemas.py`` fails until you do)::

    python -m streams.schemas            # writes schemas/*.json
    python -m streams.schemas --check    # exit 1 if a checked-in file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict  # pydantic needs this TypedDict on Python < 3.12

from streams.consent.decide import Reason
from streams.constants import CLOUDEVENTS_CONTENT_TYPE
from streams.intake.consent import CONSENT_EVENT
from streams.intake.errors import ErrorCode
from streams.settings import Settings

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://cxstream.dev/schemas/"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
ROOT = Path(__file__).resolve().parent.parent / "schemas"

_OPEN = ConfigDict(extra="allow")
_CLOSED = ConfigDict(extra="forbid")


def _closed(description: str) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"description": description})


Id = Annotated[
    str | int | float | None, Field(description="a string; numbers are accepted and turned into text")
]
Time = Annotated[str | None, Field(description="ISO 8601 date-time; without an offset it is UTC")]
Rfc3339 = Annotated[
    str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", description="RFC 3339, UTC, ms")
]
ProfileId = Annotated[str, Field(min_length=1, description="the unified profile id")]


# ---------------------------------------------------------------------------------------- input
@with_config(_OPEN)
class ExternalId(TypedDict):
    """One more identifier of the person; ``type`` becomes the identifier type (snake_case)."""

    id: Annotated[str | int, Field(description="the identifier value")]
    type: Annotated[str, Field(pattern=r"[A-Za-z0-9]", examples=["loyalty_id", "crm_id"])]


@with_config(_OPEN)
class SegmentConsent(TypedDict):
    """Segment's consent object."""

    categoryPreferences: NotRequired[dict[str, bool]]


@with_config(_OPEN)
class RudderStackConsent(TypedDict):
    """RudderStack's consent object: category ids allowed and denied (a list, or an ``{id: name}`` map)."""

    allowedConsentIds: NotRequired[list[str | int] | dict[str, Any]]
    deniedConsentIds: NotRequired[list[str | int] | dict[str, Any]]


@with_config(_OPEN)
class Device(TypedDict):
    id: NotRequired[str | int | None]


@with_config(_OPEN)
class Context(TypedDict):
    """Segment's ``context``, with the fields cxstream reads. Everything else passes through."""

    channel: NotRequired[
        Annotated[
            str | None, Field(description="cxstream extension: web, app, email, pos, crm, call_center, ...")
        ]
    ]
    traits: NotRequired[
        Annotated[dict[str, Any] | None, Field(description="traits; email, phone are identifiers")]
    ]
    device: NotRequired[Device | None]
    location: NotRequired[dict[str, Any] | None]
    externalIds: NotRequired[list[ExternalId] | None]
    consent: NotRequired[SegmentConsent]
    consentManagement: NotRequired[RudderStackConsent]


@with_config(_OPEN)
class _Common(TypedDict):
    messageId: NotRequired[Annotated[Id, Field(description="dedupe key: the same id within 24 h is dropped")]]
    anonymousId: NotRequired[Id]
    userId: NotRequired[Id]
    timestamp: NotRequired[Annotated[Time, Field(description="event time; wins over the other times")]]
    originalTimestamp: NotRequired[Time]
    sentAt: NotRequired[Time]
    receivedAt: NotRequired[Time]
    context: NotRequired[Context | None]
    integrations: NotRequired[dict[str, Any] | None]
    channel: NotRequired[Annotated[str | None, Field(description="Segment's: browser, mobile, server")]]


@with_config(_OPEN)
class IdentifyCall(_Common):
    type: Literal["identify"]
    traits: NotRequired[dict[str, Any] | None]


@with_config(_OPEN)
class TrackCall(_Common):
    type: Literal["track"]
    event: Annotated[
        str,
        Field(
            pattern=r"\S",
            description=f"the action; '{CONSENT_EVENT}' must carry context.consent.categoryPreferences",
        ),
    ]
    properties: NotRequired[dict[str, Any] | None]


@with_config(_OPEN)
class PageCall(_Common):
    type: Literal["page"]
    name: NotRequired[str | None]
    category: NotRequired[Any]
    properties: NotRequired[dict[str, Any] | None]


@with_config(_OPEN)
class ScreenCall(_Common):
    type: Literal["screen"]
    name: NotRequired[str | None]
    properties: NotRequired[dict[str, Any] | None]


@with_config(_OPEN)
class GroupCall(_Common):
    type: Literal["group"]
    groupId: NotRequired[Id]
    traits: NotRequired[dict[str, Any] | None]


@with_config(_OPEN)
class AliasCall(_Common):
    type: Literal["alias"]
    userId: Annotated[str | int | float, Field(description="the person's new (or surviving) id")]  # type: ignore[misc]
    previousId: Annotated[str | int | float, Field(description="the id they were known by before")]


SegmentCall = Annotated[
    IdentifyCall | TrackCall | PageCall | ScreenCall | GroupCall | AliasCall, Field(discriminator="type")
]


# ---------------------------------------------------------------------------------------- internal
@with_config(_CLOSED)
class NormalizedEvent(TypedDict):
    """``streams.model.Event.to_dict``: a validated, normalized event (empty fields are left out)."""

    messageId: str
    call: Literal["identify", "track", "page", "screen", "group", "alias"]
    ts: Annotated[int, Field(ge=0, description="event time, epoch ms")]
    channel: Annotated[str, Field(min_length=1, max_length=64)]
    identifiers: Annotated[
        list[tuple[str, str]],
        Field(min_length=1, description="[type, normalized value]: email lower-cased, phone E.164"),
    ]
    name: NotRequired[str]
    receivedTs: NotRequired[int]
    properties: NotRequired[dict[str, Any]]
    traits: NotRequired[dict[str, Any]]
    consent: NotRequired[
        Annotated[list[tuple[str, bool, int, str]], Field(description="[purpose, granted, ts, source]")]
    ]
    country: NotRequired[str]
    previousId: NotRequired[str]
    source: NotRequired[Annotated[tuple[str, int, int], Field(description="[topic, partition, offset]")]]


@with_config(_CLOSED)
class EventRecord(TypedDict):
    """A resolved event for profile ``pid``; ``rx`` is intake's wall clock (ms)."""

    k: Literal["ev"]
    pid: ProfileId
    ev: NormalizedEvent
    rx: int


# "from" is a Python keyword, so these two use the functional form.
ExpectRecord = TypedDict(
    "ExpectRecord", {"k": Literal["expect"], "pid": ProfileId, "from": ProfileId, "ts": int}
)
with_config(_closed("Survivor pid will receive the state of 'from': hold its events and timers until then."))(
    ExpectRecord
)


@with_config(_CLOSED)
class MergeRecord(TypedDict):
    """Profile ``pid`` was absorbed into ``into``: hand its state over."""

    k: Literal["merge"]
    pid: ProfileId
    into: ProfileId
    ts: int


HandRecord = TypedDict(
    "HandRecord",
    {"k": Literal["hand"], "pid": ProfileId, "from": ProfileId, "state": dict[str, Any], "ts": int},
)
with_config(_closed("The state of absorbed profile 'from', for survivor pid."))(HandRecord)


@with_config(_CLOSED)
class WatermarkRecord(TypedDict):
    """Source partition ``src`` has seen event time up to ``wm`` (ms)."""

    k: Literal["wm"]
    src: Annotated[int, Field(ge=0)]
    wm: int


@with_config(_CLOSED)
class EraseRecord(TypedDict):
    """Profile ``pid`` is erased: drop its state and timers."""

    k: Literal["erase"]
    pid: ProfileId


ProfiledRecord = Annotated[
    EventRecord | ExpectRecord | MergeRecord | HandRecord | WatermarkRecord | EraseRecord,
    Field(discriminator="k"),
]


# ---------------------------------------------------------------------------------------- output
@with_config(_CLOSED)
class RuleRef(TypedDict):
    name: str
    version: Annotated[int, Field(ge=1)]


@with_config(_CLOSED)
class ConsentBasis(TypedDict):
    """The customer consented to the purpose (``source`` says where, ``at`` when, ms)."""

    basis: Literal["consent"]
    source: str
    at: int


@with_config(_CLOSED)
class OptOutBasis(TypedDict):
    """No statement, and the region's regime is opt-out."""

    basis: Literal["opt_out_regime"]
    region: str


Basis = Annotated[ConsentBasis | OptOutBasis, Field(discriminator="basis")]


@with_config(_CLOSED)
class ActivationChannel(TypedDict):
    channel: str
    destinations: list[str]


@with_config(_CLOSED)
class TriggerData(TypedDict):
    profileId: ProfileId
    rule: RuleRef
    trigger: str
    region: str
    policyVersion: str
    channels: Annotated[list[ActivationChannel], Field(min_length=1)]
    consent: Annotated[dict[str, dict[str, Basis]], Field(description="channel -> purpose -> basis")]
    context: Annotated[dict[str, Any], Field(description="the rule's context: cart, days inactive, ...")]


@with_config(_CLOSED)
class TriggerCloudEvent(TypedDict):
    """A trigger on the activations topic: CloudEvents 1.0, structured JSON mode."""

    specversion: Literal["1.0"]
    id: Annotated[
        str, Field(json_schema_extra={"format": "uuid"}, description="uuid5: same trigger, same id")
    ]
    source: Annotated[str, Field(pattern=r"^urn:cxstream:rule:.+$")]
    type: Annotated[str, Field(pattern=r"^cx\.trigger\..+$")]
    subject: ProfileId
    time: Annotated[Rfc3339, Field(description="when the condition became true (event time)")]
    datacontenttype: Literal["application/json"]
    partitionkey: ProfileId
    data: TriggerData


@with_config(_CLOSED)
class AllowedChannel(TypedDict):
    channel: str
    destinations: list[str]
    basis: dict[str, Basis]


@with_config(_CLOSED)
class RefusedChannel(TypedDict):
    channel: str
    reason: Literal[tuple(r.value for r in Reason)]  # type: ignore[valid-type]
    detail: str


@with_config(_closed("Why no decision could be taken: a rule failed (nothing of it was applied)."))
class DecisionError(TypedDict):
    rule: Annotated[str, Field(description="the rule's name")]
    method: Annotated[str, Field(description="what failed: on_event, on_timer, merge, wants")]
    on: NotRequired[
        Annotated[
            str, Field(description="what it ran on: the messageId, the timer, or the absorbed profile id")
        ]
    ]
    exception: Annotated[
        str, Field(description="the exception's class name (never its message), or InvalidOutcome")
    ]


@with_config(_CLOSED)
class DecisionRecord(TypedDict):
    """One audit record per decision: activated or suppressed with the reasons, or error (a rule failed)."""

    id: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    triggerId: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    outcome: Literal["activated", "suppressed", "error"]
    profileId: ProfileId
    rule: RuleRef
    type: Annotated[str, Field(pattern=r"^cx\.trigger\..+$")]
    time: Rfc3339
    purpose: str
    region: str
    policyVersion: str
    allowed: list[AllowedChannel]
    refused: list[RefusedChannel]
    context: dict[str, Any]
    error: NotRequired[DecisionError]


@with_config(_CLOSED)
class ProfileCreated(TypedDict):
    change: Literal["created"]
    profileId: ProfileId
    time: Rfc3339
    messageId: Annotated[str, Field(description="the event that created the profile")]


@with_config(_CLOSED)
class ProfileMerged(TypedDict):
    change: Literal["merged"]
    profileId: Annotated[ProfileId, Field(description="the survivor")]
    absorbed: ProfileId
    linking: Annotated[
        list[Annotated[str, Field(pattern=r"^[^:]+:.+$")]],
        Field(
            description="type:value, in the stored form (taken after intake's pseudonymization): with "
            "CXSTREAM_IDENTITY_PEPPER set, email and phone are keyed hashes (h:<hex>), never raw; other "
            "types (user_id, anonymous_id, device_id, external ids) as sent, as in the identity graph"
        ),
    ]
    time: Rfc3339
    messageId: str


@with_config(_CLOSED)
class ProfileErased(TypedDict):
    change: Literal["erased"]
    profileId: ProfileId
    erased: Annotated[list[ProfileId], Field(description="every profile id erased with it")]
    time: Rfc3339
    reason: str


IdentityChange = Annotated[ProfileCreated | ProfileMerged | ProfileErased, Field(discriminator="change")]

_DIGITS = r"^[0-9]+$"


DeadLetterHeaders = TypedDict(
    "DeadLetterHeaders",
    {
        "cx-error-code": Literal[tuple(c.value for c in ErrorCode)],  # type: ignore[misc]
        "cx-error-detail": Annotated[str, Field(max_length=1000)],
        "cx-source-topic": Annotated[str, Field(min_length=1)],
        "cx-source-partition": Annotated[str, Field(pattern=_DIGITS)],
        "cx-source-offset": Annotated[
            str,
            Field(
                pattern=r"^(-1|[0-9]+)$",
                description="offset of the record; -1 for a dead-lettered timer (not a record)",
            ),
        ],
        "cx-error-stage": NotRequired[
            Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=200,
                    description="processing_error: where our code failed (intake.parse, decide, ...)",
                ),
            ]
        ],
        "cx-error-rule": NotRequired[
            Annotated[str, Field(min_length=1, max_length=200, description="processing_error: the rule")]
        ],
        "cx-error-exception": NotRequired[
            Annotated[
                str,
                Field(
                    min_length=1,
                    max_length=200,
                    description="processing_error: the exception's class name (never its message)",
                ),
            ]
        ],
    },
)
with_config(
    ConfigDict(extra="allow", json_schema_extra={"description": "Values are UTF-8 bytes on the wire."})
)(DeadLetterHeaders)


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
            "bindings": _kafka_key("the profile id (watermark markers: no key, sent to every partition)"),
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
            "summary": "one audit record per decision, activated or suppressed, or error (a rule failed)",
            "contentType": "application/json",
            "payload": _payload("decision"),
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
    ap = argparse.ArgumentParser(prog="python -m streams.schemas", description=__doc__.split("\n")[0])
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

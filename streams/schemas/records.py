"""The records, as pydantic-described TypedDicts: input calls, internal records, output records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, with_config
from typing_extensions import TypedDict  # pydantic needs this TypedDict on Python < 3.12

from streams.consent.decide import Reason
from streams.intake.consent import CONSENT_EVENT
from streams.intake.errors import ErrorCode

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://cxstream.dev/schemas/"
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
ROOT = Path(__file__).resolve().parents[2] / "schemas"

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
class WatermarksRecord(TypedDict):
    """Each source partition of ``marks`` has seen event time up to its watermark (ms): one record
    per repartition partition and intake batch."""

    k: Literal["wms"]
    marks: Annotated[
        list[tuple[Annotated[int, Field(ge=0)], int]],
        Field(min_length=1, description="[source partition, watermark ms]"),
    ]


@with_config(_CLOSED)
class WatermarkRecord(TypedDict):
    """Source partition ``src`` has seen event time up to ``wm`` (ms). Written by earlier
    versions (now ``wms``); still read during a rolling upgrade."""

    k: Literal["wm"]
    src: Annotated[int, Field(ge=0)]
    wm: int


@with_config(_CLOSED)
class IdleRecord(TypedDict):
    """Source partition ``src`` is read to its end by its owner (the event clock may stop
    waiting for it)."""

    k: Literal["idle"]
    src: Annotated[int, Field(ge=0)]


@with_config(_CLOSED)
class EraseRecord(TypedDict):
    """Profile ``pid`` is erased: drop its state and timers."""

    k: Literal["erase"]
    pid: ProfileId


#: one record of the repartition topic (also one inside a batch)
OneProfiledRecord = Annotated[
    EventRecord
    | ExpectRecord
    | MergeRecord
    | HandRecord
    | WatermarksRecord
    | WatermarkRecord
    | IdleRecord
    | EraseRecord,
    Field(discriminator="k"),
]


@with_config(_CLOSED)
class BatchRecord(TypedDict):
    """Records for one repartition partition, in order: what a worker's intake writes, one Kafka
    record per partition and batch (no key)."""

    k: Literal["b"]
    r: Annotated[list[OneProfiledRecord], Field(min_length=1)]


ProfiledRecord = Annotated[OneProfiledRecord | BatchRecord, Field(discriminator="k")]


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
    """One audit record per decision: activated or suppressed with the reasons, holdout (allowed but
    held out: the rule's control group, not activated), error (a rule failed), or shadow (a rule
    running in shadow, CXSTREAM_SHADOW_RULES: what it would have decided; never activated)."""

    id: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    triggerId: Annotated[str, Field(json_schema_extra={"format": "uuid"})]
    outcome: Literal["activated", "suppressed", "holdout", "error", "shadow"]
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
            "CXSTREAM_IDENTITY_PEPPER set, every value that is an email or a phone number, whatever its "
            "type (user_id, anonymous_id, an external id), is a keyed hash (h:<hex>), never raw; other "
            "values as sent, as in the identity graph"
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


@with_config(_CLOSED)
class ConversionRecord(TypedDict):
    """A conversion after a trigger (activated or held out): the person's first conversion event
    within the rule's window. At most one per trigger."""

    triggerId: Annotated[
        str, Field(json_schema_extra={"format": "uuid"}, description="the trigger's id (its decision's)")
    ]
    rule: Annotated[str, Field(min_length=1)]
    group: Annotated[
        Literal["treated", "holdout"], Field(description="treated: activated; holdout: held out, not sent")
    ]
    profileId: ProfileId
    event: Annotated[str, Field(min_length=1, description="the conversion event's name")]
    messageId: Annotated[str, Field(description="the conversion event's messageId")]
    time: Annotated[Rfc3339, Field(description="the conversion event's time")]
    lagSeconds: Annotated[float, Field(gt=0, description="seconds from the trigger to the conversion")]


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

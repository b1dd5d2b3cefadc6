"""What the Profile API answers, as pydantic models: they serialize every response and they are
the schemas of ``/openapi.json`` (:func:`openapi`), so the document cannot drift from the answers.

Times are RFC 3339 UTC strings; money is in the events' own currency (not converted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import models_json_schema

#: The API's version, in ``/openapi.json`` (``info.version``).
API_VERSION = "1.0.0"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentifierOut(_Model):
    type: str = Field(description="identifier type: user_id, anonymous_id, email, phone, device_id, ...")
    value: str = Field(description="as stored: normalized, and a keyed hash (h:...) where a pepper is set")
    hashed: bool = Field(description="the value is a keyed hash; the raw value is not stored")


class TraitOut(_Model):
    value: JsonValue = Field(
        description="the newest value sent (hashed where it is personal and a pepper is set)"
    )
    asOf: datetime = Field(description="event time of the value")


class ChannelActivity(_Model):
    channel: str
    lastActivity: datetime = Field(description="event time of the person's latest event on the channel")


class ConsentOut(_Model):
    granted: bool = Field(description="whether the purpose may be used now")
    basis: Literal["consent", "withdrawn", "opt_out_regime", "opt_in_regime"] = Field(
        description="consent: granted by the person; withdrawn: denied by the person; opt_out_regime / "
        "opt_in_regime: nothing said, the region's regime decides"
    )
    since: datetime | None = Field(default=None, description="event time of the statement in force")
    source: str | None = Field(default=None, description="where the statement came from")


class Rfm(_Model):
    recency: int = Field(ge=1, le=5, description="by days since the last order")
    frequency: int = Field(ge=1, le=5, description="by the order count")
    monetary: int = Field(ge=1, le=5, description="by the revenue")
    score: str = Field(pattern=r"^[1-5]{3}$", description="recency, frequency and monetary as three digits")


class ComputedOut(_Model):
    orderCount: int = Field(ge=0)
    revenue: float = Field(ge=0, description="sum of Order Completed total (else revenue)")
    averageOrderValue: float | None = Field(description="revenue / orderCount; null without orders")
    firstOrder: datetime | None
    lastOrder: datetime | None
    lastActivity: datetime | None = Field(description="latest track, page or screen event")
    daysSinceLastActivity: int | None = Field(ge=0, description="whole days from lastActivity to now")
    channelsLast30Days: list[ChannelActivity] = Field(description="most recent first")
    rfm: Rfm | None = Field(description="recency/frequency/monetary scores; null without orders")


class RefusalOut(_Model):
    channel: str
    reason: str = Field(description="no_consent, preference, frequency_cap, ... (as in cx.decisions)")
    detail: str


class TriggerOut(_Model):
    id: str = Field(description="the trigger id (the CloudEvent id; cx.decisions triggerId)")
    rule: str
    trigger: str = Field(description="trigger name: the CloudEvent type is cx.trigger.<trigger>")
    time: datetime = Field(description="event time the condition became true")
    outcome: str = Field(description="activated, suppressed or holdout (allowed, held out: not activated)")
    channels: list[str] = Field(description="channels it was activated on")
    refused: list[RefusalOut] = Field(description="channels it was not activated on, and why")


class Profile(_Model):
    """The unified profile of one person, as of the moment of the request."""

    profileId: str
    created: datetime
    firstSeen: datetime
    lastSeen: datetime
    identifiers: list[IdentifierOut]
    traits: dict[str, TraitOut]
    channels: list[ChannelActivity] = Field(description="every channel seen, most recent first")
    country: str | None
    region: str = Field(description="the policy region the profile's country belongs to")
    consent: dict[str, ConsentOut] = Field(description="per purpose, as of now")
    segments: list[str] = Field(description="real-time segments the person is in (rule segments)")
    computed: ComputedOut
    recentTriggers: list[TriggerOut] = Field(description="newest first, at most 20")


class Error(_Model):
    error: Literal["unauthorized", "bad_reference", "not_found", "method_not_allowed", "unavailable"]
    detail: str


class Health(_Model):
    status: Literal["ok"]


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, built from the models above (JSON Schema 2020-12,
    which OpenAPI 3.1 uses as is)."""
    _, defs = models_json_schema(
        [(m, "serialization") for m in (Profile, Error, Health)],
        ref_template="#/components/schemas/{model}",
    )
    ref = {
        "name": "ref",
        "in": "path",
        "required": True,
        "description": "TYPE:VALUE, e.g. email:ann@example.com, user_id:u-123, loyalty_id:L-9 (a raw "
        "email or phone is hashed as intake does; a stored h:... value is looked up as is)",
        "schema": {"type": "string", "minLength": 3, "maxLength": 1024, "pattern": "^[A-Za-z0-9_]+:.+$"},
        "example": "email:ann.lee@example.com",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cxstream Profile API",
            "version": API_VERSION,
            "description": 'The unified customer profile at the point of service (README "Profile API").',
        },
        "paths": {
            "/v1/profiles/{ref}": {
                "get": {
                    "operationId": "getProfile",
                    "summary": "The unified profile an identifier belongs to",
                    "parameters": [ref],
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "the profile",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Profile"}}
                            },
                        },
                        "400": _error("malformed reference (not TYPE:VALUE, or not a valid email/phone)"),
                        "401": _error("missing or invalid bearer token"),
                        "404": _error("no profile has this identifier"),
                        "503": _error("Redis did not answer in time"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "200 while the process is alive",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "alive",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                            },
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

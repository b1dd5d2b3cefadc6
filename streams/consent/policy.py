"""The governance policy: purposes, channels, regions, destinations, caps. Policy as data.

Loaded from TOML (``CXSTREAM_POLICY_FILE``; ``deploy/policy.example.toml`` documents every
field) or the built-in default below, validated at start: a bad policy stops start-up
with one line naming the field. Its ``version`` is recorded in every decision.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.exceptions import PolicyError
from streams.measure.config import Measurement

Regime = Literal["opt_in", "opt_out"]
_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

#: EU member states plus the EEA (Iceland, Liechtenstein, Norway): GDPR territory.
# fmt: off
EU_EEA = (
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
)
# fmt: on


def duration_ms(text: str) -> int:
    """``"7d"`` -> 604800000. Units: ms, s, m, h, d."""
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a duration such as '30m', '24h' or '7d'")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Region(_Strict):
    #: ISO 3166-1 alpha-2 codes, upper case (intake upper-cases ``context.location.country``)
    countries: tuple[str, ...] = ()
    #: opt_in: no statement means no; opt_out: no statement means yes until withdrawn
    regime: Regime = "opt_in"
    #: purpose -> regime, where one purpose differs from ``regime`` (e.g. US: opt-out for
    #: marketing, opt-in for advertising)
    purpose_regimes: dict[str, Regime] = Field(default_factory=dict)

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for c in v:
            if not _COUNTRY.match(c):
                raise ValueError(f"{c!r} is not an ISO 3166-1 alpha-2 country code such as 'DE'")
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"country {dup[0]} is listed twice")
        return v


class Destination(_Strict):
    channels: tuple[str, ...]
    #: Regions whose data this destination may receive; ``"*"`` means any.
    regions: tuple[str, ...]


class Cap(_Strict):
    max: int = Field(ge=1)
    window: str

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        if duration_ms(v) <= 0:
            raise ValueError(f"{v!r} is an empty window; give a positive duration such as '7d'")
        return v

    @property
    def window_ms(self) -> int:
        return duration_ms(self.window)


class Policy(_Strict):
    version: str
    purposes: tuple[str, ...] = ("marketing", "advertising", "personalization", "analytics")
    #: channel -> the purpose an activation on it needs
    channels: dict[str, str]
    #: channel -> identifier types of which the profile needs at least one to be reachable
    reach: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    regions: dict[str, Region]
    #: regime and region for a profile whose country is unknown or in no region
    default_region: str = "OTHER"
    default_regime: Regime = "opt_in"
    destinations: dict[str, Destination]
    frequency_caps: dict[str, Cap] = Field(default_factory=dict)
    #: when two profiles merge: ``most_restrictive`` (a denial on either side wins) or ``latest``
    consent_merge: Literal["most_restrictive", "latest"] = "most_restrictive"
    #: holdouts and conversions per rule (``[measurement]``, see :mod:`streams.measure.config`)
    measurement: Measurement = Field(default_factory=Measurement)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("is empty; give the policy a version (it is recorded in every decision)")
        return v

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("is empty; list the purposes a customer can grant or deny")
        dup = sorted({p for p in v if v.count(p) > 1})
        if dup:
            raise ValueError(f"purpose {dup[0]!r} is listed twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        known = ", ".join(self.purposes)
        for ch, purpose in self.channels.items():
            if purpose not in self.purposes:
                raise ValueError(
                    f"channels.{ch} needs purpose {purpose!r}, which is not in purposes ({known})"
                )
        for ch, types in self.reach.items():
            if ch not in self.channels:
                raise ValueError(f"reach.{ch} is not in channels")
            if not types:
                raise ValueError(f"reach.{ch} is empty; list the identifier types that reach {ch}")
        for rname, region in self.regions.items():
            for purpose in region.purpose_regimes:
                if purpose not in self.purposes:
                    raise ValueError(
                        f"regions.{rname}.purpose_regimes names purpose {purpose!r}, "
                        f"which is not in purposes ({known})"
                    )
        for name, d in self.destinations.items():
            if not d.channels or not d.regions:
                raise ValueError(f"destinations.{name} needs at least one channel and one region")
            for ch in d.channels:
                if ch not in self.channels:
                    raise ValueError(f"destinations.{name}.channels names {ch!r}, which is not in channels")
            for r in d.regions:
                if r != "*" and r not in self.regions and r != self.default_region:
                    raise ValueError(f"destinations.{name}.regions names {r!r}, which is not in regions")
        for ch in self.frequency_caps:
            if ch not in self.channels:
                raise ValueError(f"frequency_caps.{ch} is not in channels")
        seen: dict[str, str] = {}
        for rname, region in self.regions.items():
            for c in region.countries:
                if c in seen:
                    raise ValueError(f"country {c} is in regions {seen[c]} and {rname}")
                seen[c] = rname
        return self

    def region_of(self, country: str | None) -> str:
        if country:
            for name, r in self.regions.items():
                if country in r.countries:
                    return name
        return self.default_region

    def regime_of(self, region: str, purpose: str | None = None) -> Regime:
        """The regime for ``purpose`` in ``region``: its override there, else the region's regime.

        A region not in ``regions`` (the default one) has ``default_regime``."""
        r = self.regions.get(region)
        if r is None:
            return self.default_regime
        return r.purpose_regimes.get(purpose, r.regime) if purpose else r.regime

    def destinations_for(self, channel: str, region: str) -> list[str]:
        return sorted(
            name
            for name, d in self.destinations.items()
            if channel in d.channels and ("*" in d.regions or region in d.regions)
        )


DEFAULT_POLICY = Policy(
    version="builtin-2026-11",
    channels={
        "email": "marketing",
        "sms": "marketing",
        "push": "marketing",
        "ads": "advertising",
        "web": "personalization",
        "app": "personalization",
        "call_center": "marketing",
    },
    reach={
        "email": ("email",),
        "sms": ("phone",),
        "push": ("device_id",),
        "ads": ("email", "phone", "device_id"),
        "web": ("anonymous_id", "user_id"),
        "app": ("device_id", "user_id"),
        "call_center": ("phone",),
    },
    regions={
        "EU": Region(countries=EU_EEA, regime="opt_in"),
        "UK": Region(countries=("GB",), regime="opt_in"),
        "US": Region(countries=("US",), regime="opt_out"),
    },
    default_region="OTHER",
    default_regime="opt_in",
    destinations={
        "esp-eu": Destination(channels=("email", "sms", "push"), regions=("EU", "UK")),
        "esp-us": Destination(channels=("email", "sms", "push"), regions=("US", "OTHER")),
        "ads-us": Destination(channels=("ads",), regions=("US", "OTHER")),
        "onsite": Destination(channels=("web", "app"), regions=("*",)),
        "contact-center": Destination(channels=("call_center",), regions=("*",)),
    },
    frequency_caps={
        "email": Cap(max=3, window="7d"),
        "sms": Cap(max=2, window="7d"),
        "push": Cap(max=5, window="1d"),
    },
)


def load_policy(path: Path | None) -> Policy:
    """The policy in ``path`` (TOML), or the built-in default. Raises :class:`PolicyError`."""
    if path is None:
        return DEFAULT_POLICY
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"CXSTREAM_POLICY_FILE={str(path)!r} cannot be read as TOML: {exc}") from None
    try:
        return Policy.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()
        err = errors[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ").replace("\n", " ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = f"{loc}: " if loc else ""
        raise PolicyError(
            f"CXSTREAM_POLICY_FILE={str(path)!r} is not a valid policy: {where}{msg}{more}"
        ) from None

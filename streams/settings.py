"""Settings: one frozen object, from ``CXSTREAM_*`` variables and an optional ``cxstream.toml``.

Precedence (highest first): explicit keyword arguments, environment variables, the TOML
file (``CXSTREAM_CONFIG`` names it; default ``./cxstream.toml`` when present), defaults.
A wrong value stops start-up with one line naming the setting, the value and what is
expected (:func:`load_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from streams.exceptions import ConfigError
from streams.identity.base import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_IDENTIFIERS,
    DEFAULT_MAX_MERGES,
    DEFAULT_PRIORITY,
)

ENV_PREFIX = "CXSTREAM_"


class Settings(BaseSettings):
    """Every knob of a worker. Field ``foo`` is the variable ``CXSTREAM_FOO``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        env_ignore_empty=True,
    )

    # --- Kafka ---------------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        default="localhost:9092", description="comma-separated host:port list of Kafka brokers"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_session_timeout: float = Field(
        default=30.0, ge=1, le=1800, description="seconds; a dead worker's partitions move after this"
    )
    kafka_rebalance_timeout: float = Field(default=60.0, ge=1, le=1800)
    repartition_batches: bool = Field(
        default=True,
        description="intake writes one <app_id>-profiled record per partition and batch (a 'b' record) "
        "instead of one per event; false while a rolling upgrade from a version before it runs (those "
        "workers cannot read 'b' records)",
    )
    kafka_fetch_max_wait: float = Field(
        default=0.1,
        ge=0.005,
        le=30,
        description="seconds a fetch may wait for records on the broker; Kafka answers as soon as "
        "some arrive, so this only paces empty fetches, but a broker that answers at the end of the "
        "wait (the embedded one) delays every record by up to this, at each of the two hops",
    )
    kafka_max_request_size: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        description="bytes; keep it at or below the broker's message.max.bytes (bigger records are cut)",
    )

    # --- Redis ---------------------------------------------------------------------------
    redis_url: SecretStr = Field(
        default=SecretStr("redis://localhost:6379/0"),
        description="redis://[:password@]host:port/db or rediss:// for TLS",
    )
    redis_prefix: str = Field(default="cx", description="prefix of every Redis key this app writes")
    redis_cluster: bool = Field(
        default=False,
        description="CXSTREAM_REDIS_URL names any one node of a Redis Cluster (redis:// or rediss://, db 0)",
    )

    # --- the app -------------------------------------------------------------------------
    app_id: str = Field(default="cxstream", description="consumer group id and internal topic prefix")
    partitions: int = Field(default=8, ge=1, le=10_000)
    clock: Literal["wall", "event"] = "wall"
    watermark_idle_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds after which an idle source partition stops holding the event clock",
    )
    policy_file: Path | None = None
    segments_file: Path | None = Field(
        default=None, description="TOML file of real-time segment definitions (rule `segments`)"
    )
    rules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("cart_abandoned", "inactive_45d", "loan_eligibility_repeat"),
        description="names of the rule modules that are on",
    )
    shadow_rules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="rules run in shadow (name or module:Class, as CXSTREAM_RULES): their decisions go to "
        "cx.decisions with outcome shadow, nothing is activated; each runs as <name>@<version>",
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 disables the metrics endpoint")
    shutdown_timeout: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="seconds a SIGTERM may take (finish the batch in hand, commit, leave the group) "
        "before the worker exits non-zero without committing more",
    )
    batch_size: int = Field(default=500, ge=1, le=100_000)
    batch_within: float = Field(default=0.05, gt=0, le=60)
    timer_tick: float = Field(default=0.5, gt=0, le=60, description="seconds between timer scans")
    timer_batch: int = Field(
        default=500, ge=1, le=100_000, description="most timers fired per partition per round (one produce)"
    )
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    handoff_timeout: float = Field(
        default=600.0,
        gt=0,
        le=7 * 86400,
        description="seconds a merged profile waits for the absorbed profile's state before it goes on "
        "without it (a lost hand-off must not block a person)",
    )
    handoff_max_buffer: int = Field(
        default=1000, ge=1, le=100_000, description="events a merged profile holds while it waits"
    )

    # --- intake --------------------------------------------------------------------------
    max_event_bytes: int = Field(default=32 * 1024, ge=256)
    max_properties: int = Field(default=300, ge=1)
    max_depth: int = Field(
        default=32,
        ge=1,
        le=200,
        description="deepest JSON nesting (objects and arrays) of an event; deeper is dead-lettered "
        "`too_deep` (orjson writes at most 255 levels)",
    )
    max_identifiers_per_event: int = Field(
        default=50,
        ge=1,
        description="most usable identifiers in one event after normalization; more is dead-lettered "
        "`too_many_identifiers`",
    )
    dedupe_ttl: int = Field(default=24 * 3600, ge=1, description="seconds a messageId is remembered")
    anonymous_retention_days: int = Field(
        default=395,
        ge=1,
        le=36_500,
        description="days an anonymous-only profile (anonymous_id / device_id only) is kept after its "
        "last activity; then Redis removes it with everything it holds (known profiles are kept)",
    )
    future_tolerance: int = Field(
        default=24 * 3600, ge=0, description="seconds an event may lie in the future"
    )
    phone_default_region: str = Field(default="US", min_length=2, max_length=2)
    blocked_identifiers: Annotated[tuple[str, ...], NoDecode] = ()

    # --- identity ------------------------------------------------------------------------
    identity_pepper: SecretStr | None = Field(
        default=None, description="secret for keyed hashing of emails and phones in Redis"
    )
    identity_priority: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_PRIORITY),
        description="TYPE=RANK,...: the identifier kept longest when a limit forces a drop (higher "
        "wins); listed types override the defaults",
    )
    identity_limits: Annotated[dict[str, int], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_LIMITS),
        description="TYPE=N,...: most identifiers of a type in one profile; listed types override "
        "the defaults",
    )
    identity_max_identifiers: int = Field(
        default=DEFAULT_MAX_IDENTIFIERS, ge=1, le=1_000_000, description="most identifiers in one profile"
    )
    identity_max_merges: int = Field(
        default=DEFAULT_MAX_MERGES, ge=0, le=1_000_000, description="most merges into one profile"
    )

    # --- Profile API (`cxstream api`) -------------------------------------------------------
    api_port: int = Field(default=8080, ge=1, le=65535, description="port of the Profile API")
    api_host: str = Field(default="0.0.0.0", description="address the Profile API listens on")
    api_tokens: SecretStr | None = Field(
        default=None,
        description="comma-separated bearer tokens allowed to read profiles (each >= 16 characters); "
        "unset: every profile request gets 401",
    )

    # --- topics --------------------------------------------------------------------------
    topic_raw: str = "cx.events.raw"
    topic_deadletter: str = "cx.events.deadletter"
    topic_activations: str = "cx.activations"
    topic_decisions: str = "cx.decisions"
    topic_identity_changes: str = "cx.identity.changes"
    topic_conversions: str = "cx.conversions"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = os.environ.get(f"{ENV_PREFIX}CONFIG", "cxstream.toml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(toml).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("expected host:port[,host:port...], e.g. localhost:9092")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: SecretStr) -> SecretStr:
        """Parsed as redis-py will (``parse_url``, then a connection object: no network), so a
        bad port, database or option is one line here, not a traceback at the first call."""
        from urllib.parse import unquote, urlsplit

        from redis.asyncio.connection import ConnectionPool, parse_url

        url = v.get_secret_value()
        expected = "expected a redis://, rediss:// or unix:// URL: redis://[[user]:password@]host[:port][/db]"
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(expected)
        try:
            parsed = urlsplit(url)
            secret = unquote(parsed.password or "")
            parse_url(url)
            path = unquote(parsed.path).strip("/")
            if not url.startswith("unix://") and path and not path.isdigit():
                raise ValueError(f"the database must be a number, not {path!r}")
            ConnectionPool.from_url(url).make_connection()  # type: ignore[no-untyped-call]  # unknown ?options
        except (ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split())
            if isinstance(exc, TypeError):  # e.g. "__init__() got an unexpected keyword argument 'foo'"
                reason = "unknown option " + reason.rpartition(" ")[2]
            if secret:
                reason = reason.replace(secret, "***")
            raise ValueError(f"{expected} ({reason})") from None
        return v

    @field_validator("api_tokens")
    @classmethod
    def _tokens(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and any(len(t.strip()) < 16 for t in v.get_secret_value().split(",")):
            raise ValueError("expected comma-separated tokens of at least 16 characters each")
        return v

    def api_token_list(self) -> list[bytes]:
        """The Profile API's bearer tokens (``CXSTREAM_API_TOKENS``), as bytes for ``hmac.compare_digest``."""
        raw = self.api_tokens.get_secret_value() if self.api_tokens else ""
        return [t.strip().encode() for t in raw.split(",") if t.strip()]

    @field_validator("app_id", "redis_prefix")
    @classmethod
    def _ident(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "._-" for c in v):
            raise ValueError("expected letters, digits, '.', '_' or '-'")
        return v

    @field_validator("rules", "shadow_rules", "blocked_identifiers", mode="before")
    @classmethod
    def _csv(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(p.strip() for p in v.split(",") if p.strip())
        return v

    @field_validator("identity_priority", "identity_limits", mode="before")
    @classmethod
    def _type_table(cls, v: Any, info: ValidationInfo) -> Any:
        limits = info.field_name == "identity_limits"
        expected = (
            "expected TYPE=N[,TYPE=N...] with N a whole number >= 1, e.g. user_id=1,email=5"
            if limits
            else "expected TYPE=RANK[,TYPE=RANK...] with RANK a whole number, higher kept longer, "
            "e.g. user_id=100,loyalty_id=90"
        )
        if isinstance(v, str):
            pairs = [p.partition("=") for p in v.split(",") if p.strip()]
            if any(not sep for _, sep, _ in pairs):
                raise ValueError(expected)
            items = [(t.strip(), n.strip()) for t, _, n in pairs]
        elif isinstance(v, dict):
            items = [(str(t), str(n)) for t, n in v.items()]
        else:
            raise ValueError(expected)
        table = dict(DEFAULT_LIMITS if limits else DEFAULT_PRIORITY)
        for t, n in items:
            if not t or not all(c.isalnum() or c == "_" for c in t) or not n.lstrip("-").isdigit():
                raise ValueError(expected)
            if limits and int(n) < 1:
                raise ValueError(expected)
            table[t] = int(n)
        return table

    @field_validator("policy_file")
    @classmethod
    def _policy(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError("expected the path of an existing policy file (see deploy/policy.example.toml)")
        return v

    @field_validator("segments_file")
    @classmethod
    def _segments(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(
                "expected the path of an existing segments file (see deploy/segments.example.toml)"
            )
        return v

    @model_validator(mode="after")
    def _sasl(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "kafka_security_protocol is SASL_*: set CXSTREAM_KAFKA_SASL_MECHANISM, "
                "CXSTREAM_KAFKA_SASL_USERNAME and CXSTREAM_KAFKA_SASL_PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _timeouts(self) -> Settings:
        # Kafka waits up to the rebalance timeout for members to rejoin; one shorter than the
        # session timeout makes every slow rejoin look like a dead member.
        if self.kafka_rebalance_timeout < self.kafka_session_timeout:
            raise ValueError(
                f"CXSTREAM_KAFKA_REBALANCE_TIMEOUT={self.kafka_rebalance_timeout:g} is below "
                f"CXSTREAM_KAFKA_SESSION_TIMEOUT={self.kafka_session_timeout:g}: set it at least as high"
            )
        return self

    def internal_topic(self, name: str) -> str:
        """Name of an internal topic, kept under the app id."""
        return f"{self.app_id}-{name}"

    @property
    def topic_profiled(self) -> str:
        """The repartition topic: resolved events keyed by profile id."""
        return self.internal_topic("profiled")

    def to_env(self) -> dict[str, str]:
        """Every setting as ``CXSTREAM_*`` variables (secrets revealed): for a child worker process."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, SecretStr):
                v = v.get_secret_value()
            elif isinstance(v, tuple):
                v = ",".join(v)
            elif isinstance(v, dict):
                v = ",".join(f"{k}={n}" for k, n in v.items())
            env[ENV_PREFIX + name.upper()] = str(v)
        return env

    def masked(self) -> dict[str, Any]:
        """The settings as a dict, safe to print: secrets and URL passwords masked."""
        out = self.model_dump(mode="json")
        out["redis_url"] = _mask_url(self.redis_url.get_secret_value())
        return out


_SECRET_FIELDS = frozenset({"kafka_sasl_password", "identity_pepper", "api_tokens"})


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}" if ":" in creds else f"{scheme}{sep}***@{host}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a validation error into one clear :class:`ConfigError` line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        value = err.get("input")
        if field != "settings":
            env = ENV_PREFIX + field.upper()
            if isinstance(value, SecretStr) or field in _SECRET_FIELDS:
                value = "***"
            elif field == "redis_url":
                value = _mask_url(str(value))
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"{env}={value!r} is invalid: {msg}") from None
        raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from None
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None

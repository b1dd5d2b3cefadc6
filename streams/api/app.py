"""The Profile API's ASGI app (starlette) and its server (uvicorn): ``cxstream api``.

Routes (README "Profile API"):

* ``GET /v1/profiles/{type}:{value}`` with ``Authorization: Bearer <token>``: 200 and the
  :class:`~streams.api.models.Profile`; 401 without a valid token (checked first, whatever the
  reference), 400 for a malformed reference, 404 when no profile has the identifier, 503 when
  Redis does not answer within :data:`READ_TIMEOUT` seconds (an outage must not pile up
  requests that wait forever) or refuses our credentials.
* ``GET /openapi.json``: the OpenAPI 3.1 document (:func:`streams.api.models.openapi`).
* ``GET /healthz``: 200 while the process is alive.

Every error body is an :class:`~streams.api.models.Error`. Tokens come from
``CXSTREAM_API_TOKENS``; a presented token is compared with every configured one with
:func:`hmac.compare_digest` (constant time, and no early exit), so timing tells nothing about
which token or how much of it matched.

Access log (logger ``streams.api.access``, one JSON line per request on stderr): method,
route, the identifier *type* of the reference (never its value: it may be an email or a phone
number), status and latency in ms. uvicorn's own access log, which prints the path, is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streams import redis_io
from streams.api.lookup import BadReference, ProfileReader
from streams.api.models import Error, Health, openapi
from streams.consent.policy import load_policy
from streams.exceptions import FatalError
from streams.model import dumps
from streams.settings import Settings

log = logging.getLogger("streams.api")
access = logging.getLogger("streams.api.access")

#: Seconds a profile read may take before the answer is 503. A lookup is three Redis round trips
#: (~1 ms on a LAN); seconds mean Redis is away, and its outage policy would wait indefinitely.
READ_TIMEOUT = 2.0
PROFILE_PREFIX = "/v1/profiles/"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), status, headers, media_type="application/json")


def _error(status: int, code: Any, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json(Error(error=code, detail=detail), status, headers)


def authorized(header: str | None, tokens: list[bytes]) -> bool:
    """Whether ``Authorization: Bearer <token>`` names one of ``tokens``, compared in constant time."""
    if not header or not tokens:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    presented = given.strip().encode()
    ok = False
    for t in tokens:  # every token, no early exit
        ok |= hmac.compare_digest(presented, t)
    return ok


def id_type(path: str) -> str:
    """The identifier type of a profile path, for the access log: a short name, else ``invalid``."""
    ref = path[len(PROFILE_PREFIX) :] if path.startswith(PROFILE_PREFIX) else ""
    type_, sep, _ = ref.partition(":")
    if sep and 0 < len(type_) <= 32 and all(c.isascii() and (c.isalnum() or c == "_") for c in type_):
        return type_
    return "invalid"


class AccessLog:
    """ASGI middleware: one access-log line per HTTP request, without personal data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path: str = scope.get("path", "")
            profile = path.startswith(PROFILE_PREFIX)
            method = scope.get("method", "?")
            access.info(
                "access",
                extra={
                    "method": method if method in _METHODS else "other",
                    "route": PROFILE_PREFIX + "{ref}" if profile else path if path in _ROUTES else "other",
                    "id_type": id_type(path) if profile else "-",
                    "status": status,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                },
            )


_ROUTES = frozenset({"/healthz", "/openapi.json"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_ACCESS_FIELDS = ("method", "route", "id_type", "status", "ms")


class AccessFormatter(logging.Formatter):
    """One JSON object per access-log line, from the fixed fields :class:`AccessLog` sets.

    Its own handler, not the structlog chain of :mod:`streams.logs`: that chain's redaction is a
    safety net for free text (~260 us a line measured here, a quarter of a lookup's CPU), and an
    access line holds no free text: a method and route from closed sets, an identifier type of
    ``[A-Za-z0-9_]{1,32}`` (else ``invalid``), two numbers.
    """

    def format(self, record: logging.LogRecord) -> str:
        d: dict[str, Any] = {f: getattr(record, f, None) for f in _ACCESS_FIELDS}
        d.update(event="access", level="info", logger=record.name, ts=_iso_now(record.created))
        return dumps(d).decode()


def _iso_now(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat().replace("+00:00", "Z")


def access_log_to_stderr() -> None:
    """Send the access log to stderr through :class:`AccessFormatter` only (called by :func:`run_api`)."""
    handler = logging.StreamHandler()
    handler.setFormatter(AccessFormatter())
    access.handlers[:] = [handler]
    access.propagate = False


def create_app(settings: Settings, reader: ProfileReader | None = None) -> Starlette:
    """The app. Without ``reader``, it connects to the Redis of ``settings`` at start-up (lifespan)
    and loads the policy (consent regimes by region) from ``CXSTREAM_POLICY_FILE``."""
    tokens = settings.api_token_list()
    if not tokens:
        log.warning("CXSTREAM_API_TOKENS is not set: every profile request will get 401")
    doc = dumps(openapi())
    held: dict[str, ProfileReader] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if reader is not None:
            held["r"] = reader
            yield
            return
        client = redis_io.connect_any(settings.redis_url.get_secret_value(), cluster=settings.redis_cluster)
        held["r"] = ProfileReader(settings, client, load_policy(settings.policy_file))
        try:
            yield
        finally:
            await client.aclose()

    async def get_profile(request: Request) -> Response:
        if not authorized(request.headers.get("authorization"), tokens):
            given = "authorization" in request.headers
            return _error(
                401,
                "unauthorized",
                "invalid bearer token" if given else "send Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer error="invalid_token"' if given else "Bearer"},
            )
        ref: str = request.path_params["ref"]
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                profile = await held["r"].read(ref)
        except BadReference as exc:
            return _error(400, "bad_reference", str(exc))
        except TimeoutError:
            log.error("profile read took over %.1fs: Redis is slow or away", READ_TIMEOUT)
            return _error(503, "unavailable", f"Redis did not answer within {READ_TIMEOUT:g}s")
        except FatalError as exc:  # Redis refuses us (password, ACL): the operator must fix it
            log.error("profile read refused: %s", exc)
            return _error(503, "unavailable", "Redis refused the API's credentials; see its log")
        if profile is None:
            return _error(404, "not_found", "no profile has this identifier")
        return _json(profile)

    async def health(request: Request) -> Response:
        return _json(Health(status="ok"))

    async def openapi_json(request: Request) -> Response:
        return Response(doc, media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_reference")
        return _error(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    app = Starlette(
        routes=[
            Route(PROFILE_PREFIX + "{ref:path}", get_profile, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    return app


def run_api(settings: Settings) -> None:
    """Serve the API on ``CXSTREAM_API_HOST:CXSTREAM_API_PORT`` until SIGTERM/SIGINT (uvicorn's
    graceful shutdown: requests in flight finish)."""
    import uvicorn

    from streams.logs import setup_logging

    setup_logging(settings.log_level)
    access_log_to_stderr()
    app = AccessLog(create_app(settings))
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,  # it prints the path, which holds the identifier's value
        log_config=None,  # our JSON logs (streams.logs)
        lifespan="on",
        server_header=False,
    )
    log.info("Profile API on %s:%d", settings.api_host, settings.api_port)
    uvicorn.Server(config).run()

"""The Profile API (``cxstream api``, README "Profile API"): the unified profile over HTTP for
staff tools at the point of service (store, call centre, dealer).

A process of its own, apart from the workers, so that reads scale on their own: it only
reads Redis (what the workers wrote), never Kafka. Modules:

* :mod:`streams.api.models`: the response models and the OpenAPI 3.1 document built from them;
* :mod:`streams.api.lookup`: a ``TYPE:VALUE`` reference -> the profile, from Redis;
* :mod:`streams.api.app`: the ASGI app (starlette), its auth and access log, and the server (uvicorn).
"""

from streams.api.app import create_app, run_api

__all__ = ["create_app", "run_api"]

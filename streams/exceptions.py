"""The exceptions of cxstream, all under one root.

::

    CxStreamError                 root: catch this to catch everything we raise
    ├── ConfigError               a setting or the policy file is wrong; stops start-up
    │   └── PolicyError           the consent/governance policy file is invalid
    ├── RuleError                 a rule module is wrong (duplicate name, bad declaration)
    ├── StackError                the local broker or Redis could not be started
    ├── IdentityError             an identifier given on the command line is malformed
    └── FatalError                Redis or Kafka refuses us for good (credentials, ACL, database):
                                  waiting will not help; stop without committing (:func:`fatal`)

A bad *event* is never an exception that escapes: intake turns it into a dead-letter
record with an error code (see ``streams.intake.errors``). An *outage* (Redis or Kafka away,
full, busy, failing over) is not an exception either: it is retried until it passes
(``streams.redis_io.call``, ``streams.kafka.send_all``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

#: exit status of :func:`fatal` (``EX_CONFIG`` of sysexits.h: a configuration error)
EXIT_FATAL = 78


class CxStreamError(Exception):
    """Root of every exception cxstream raises on purpose."""


class ConfigError(CxStreamError):
    """A setting is wrong. The message is one line: setting, value, what is expected."""


class PolicyError(ConfigError):
    """The governance policy file is invalid."""


class RuleError(CxStreamError):
    """A rule module cannot be loaded or is declared wrongly."""


class StackError(CxStreamError):
    """The embedded broker or Redis could not be started or reached."""


class IdentityError(CxStreamError):
    """An identifier reference such as ``email:ann@example.com`` is malformed."""


class FatalError(CxStreamError):
    """Redis or Kafka refuses us for a reason waiting will not fix: a wrong password, a missing
    ACL permission, a database that does not exist, a command the server does not provide.

    The message is one line that names what is wrong and the fix, never a secret. At start-up
    it stops the command like any :class:`CxStreamError`; inside a running worker, call
    :func:`fatal` (or use :func:`exit_on_fatal`) so the batch in hand is not committed.
    """


def fatal(exc: BaseException, code: int = EXIT_FATAL) -> NoReturn:
    """Log ``exc`` as one critical line, flush, and end the process at once with ``code``
    (:func:`exit_now`): no offset of the batch in hand is committed; the next owner of the
    partitions resumes from the last commit."""
    exit_now(code, "fatal: %s", " ".join(str(exc).split()) or type(exc).__name__)


def exit_now(code: int, msg: str, *args: object) -> NoReturn:
    """Log ``msg`` as one critical line, flush, and end the process with ``code``: ``os._exit``,
    so no ``finally`` block runs and faust does not shut down, which would commit offsets."""
    try:
        logging.getLogger("streams").critical(msg, *args)
        for h in logging.getLogger().handlers + logging.getLogger("streams").handlers:
            with contextlib.suppress(Exception):
                h.flush()
        sys.stderr.flush()
        sys.stdout.flush()
    finally:
        os._exit(code)


@contextlib.contextmanager
def exit_on_fatal() -> Iterator[None]:
    """``with exit_on_fatal():`` around a batch body: a :class:`FatalError` ends the process
    (:func:`fatal`) before the batch can be acknowledged; any other exception passes through."""
    try:
        yield
    except FatalError as exc:
        fatal(exc)


def where(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of ``exc``: enough to find a bug, with no value in it
    (an exception's text may carry event data, so logs name the class and this, never the text)."""
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return "?"
    f = tb[-1]
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"

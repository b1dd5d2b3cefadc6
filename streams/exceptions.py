"""The exceptions of cxstream, all under one root.

::

    CxStreamError                 root: catch this to catch everything we raise
    ├── ConfigError               a setting or the policy file is wrong; stops start-up
    │   └── PolicyError           the consent/governance policy file is invalid
    ├── RuleError                 a rule module is wrong (duplicate name, bad declaration)
    ├── StackError                the local broker or Redis could not be started
    └── IdentityError             an identifier given on the command line is malformed

A bad *event* is never an exception that escapes: intake turns it into a dead-letter
record with an error code (see ``streams.intake.errors``).
"""

from __future__ import annotations


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

"""The identity of one pending timer: profile id, rule and timer name.

Two text forms exist, both stored and so both unchanged:

* ``<profile id>|<rule>|<name>``: a member of a partition's timer ZSET in Redis
  (:mod:`streams.engine.timers`), ``str(TimerId)``;
* ``<rule>|<name>``: a key of :attr:`ProfileState.timers <streams.state.profile.ProfileState.timers>`
  (the profile is the state's own), :attr:`TimerId.key`.

Profile ids never hold ``|`` (they are generated); rule names neither (registry names). A
timer name may: it is split off last.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.frozen import fast_init

SEP = "|"


@dataclass(frozen=True, slots=True, init=False)
class TimerId:
    """One timer of one profile's rule. Built where a timer is set, parsed where a stored form is read."""

    profile_id: str
    rule: str
    name: str

    def __init__(self, profile_id: str, rule: str, name: str) -> None:
        object.__setattr__(self, "profile_id", profile_id)
        object.__setattr__(self, "rule", rule)
        object.__setattr__(self, "name", name)

    @classmethod
    def parse(cls, member: str) -> TimerId:
        """The timer a Redis member ``pid|rule|name`` names. Raises ``ValueError`` on any other text."""
        pid, sep1, rest = member.partition(SEP)
        rule, sep2, name = rest.partition(SEP)
        if not (sep1 and sep2 and pid and rule):
            raise ValueError(f"not a timer id (profile|rule|name): {member!r}")
        return cls(pid, rule, name)

    @classmethod
    def from_key(cls, profile_id: str, key: str) -> TimerId:
        """The timer a key ``rule|name`` of ``profile_id``'s :attr:`ProfileState.timers` names.
        Raises ``ValueError`` on a key without a ``|``."""
        rule, sep, name = key.partition(SEP)
        if not (sep and rule):
            raise ValueError(f"not a timer key (rule|name): {key!r}")
        return cls(profile_id, rule, name)

    @property
    def key(self) -> str:
        """``rule|name``: this timer's key in its profile's :attr:`ProfileState.timers`."""
        return f"{self.rule}{SEP}{self.name}"

    def __str__(self) -> str:
        """``pid|rule|name``: the member stored in the partition's timer ZSET."""
        return f"{self.profile_id}{SEP}{self.rule}{SEP}{self.name}"


def rule_of_key(key: str) -> str:
    """The rule of a ``rule|name`` key of :attr:`ProfileState.timers`."""
    return key.partition(SEP)[0]


# interpreted (no compiler here): faster __init__s; compiled, they are left as written
fast_init(TimerId)

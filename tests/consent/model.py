"""The independent consent model the property tests check the engine against.

* a person's statement about a purpose holds from its event time until their next one;
* when two profiles merge, up to the merge a denial by either side wins (a grant on one side
  with nothing on the other is a grant); statements made after the merge are the one merged
  person's, and the latest wins;
* nothing said means no in an opt-in region, yes in an opt-out one.

The engine keeps one bounded history per purpose and folds histories on a merge; this model
keeps the merge tree and every statement, and walks it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from streams.consent.policy import Policy


@dataclass
class Node:
    """A profile in the merge tree: a person, or the merge of two profiles."""

    person: int | None = None
    children: tuple[Node, Node] | None = None
    #: purpose -> [(ts, stream index, granted)] said while this node was the profile
    said: dict[str, list[tuple[int, int, bool]]] = field(default_factory=lambda: defaultdict(list))

    def consent(self, purpose: str, t: int) -> bool | None:
        own = [s for s in self.said[purpose] if s[0] <= t]
        if own:
            return max(own)[2]
        if self.children is None:
            return None
        sides = [c.consent(purpose, t) for c in self.children]
        if False in sides:
            return False
        return True if True in sides else None


def allowed_by_model(node: Node, policy: Policy, region: str, purpose: str, t: int) -> bool:
    said = node.consent(purpose, t)
    if said is None:
        return policy.regime_of(region, purpose) == "opt_out"
    return said

"""What erasing a profile removes from the decision stage's Redis data: one definition, used by
the decide stage (an ``erase`` repartition record) and by ``cxstream profile forget``
(:func:`streams.profiles.forget_profile`), which acts on Redis directly.

The identity graph is erased by the identity store; this is the rest: the profile's pending
timers and its state, and the state tombstones of the profiles it absorbed (they name it).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.state.profile import ProfileState
from streams.state.timer_id import TimerId


@dataclass(frozen=True, slots=True)
class Erasure:
    """What one profile's erasure removes (nothing is removed by building it)."""

    profile_id: str
    #: timer store members (``str(TimerId)``) to cancel: the profile's pending timers
    cancel_timers: frozenset[str]
    #: profile ids whose state is deleted: the profile, then the tombstones of those it absorbed
    delete_states: tuple[str, ...]


def erase_profile(profile_id: str, state: ProfileState) -> Erasure:
    """What erasing ``profile_id``, whose stored state is ``state``, removes. Pure: called by the
    caller that then applies it (timer cancels, then state deletes). Raises ``ValueError`` only on
    a timer key that this code never wrote (no ``|``)."""
    cancel = frozenset(str(TimerId.from_key(profile_id, k)) for k in state.timers)
    absorbed = tuple(a for a in state.absorbed if a != profile_id)
    return Erasure(profile_id, cancel, (profile_id, *absorbed))

"""Per-profile state of the decision stage and the identity of its timers.

Kept outside :mod:`streams.engine` and :mod:`streams.consent`, which both read and write it,
so that neither package imports the other's callers (``engine`` imports ``consent``; nothing
here imports either). The stores that persist the state are in :mod:`streams.engine.state`.
"""

from streams.state.erase import Erasure, erase_profile
from streams.state.profile import ConsentEntry, ProfileState
from streams.state.timer_id import TimerId

__all__ = ["ConsentEntry", "Erasure", "ProfileState", "TimerId", "erase_profile"]

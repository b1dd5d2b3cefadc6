"""Who is held out: a stable hash of (profile id, rule) into 10,000 buckets.

Stable across restarts, replays and worker counts (no state, no randomness). A profile is in
``rule``'s holdout when its bucket is below the rule's limit (``holdout_percent`` x 100), so
raising the percent only adds people to the holdout, never moves anyone out.

After a merge the survivor's id decides: triggers from then on are assigned by the survivor's
bucket, which may differ from the absorbed profile's. Exposures opened before the merge keep the
group they were opened in (it is recorded with them), so nothing already measured changes.
"""

from __future__ import annotations

import hashlib

from streams.measure.config import BUCKETS

TREATED = "treated"
HOLDOUT = "holdout"


def bucket(profile_id: str, rule: str) -> int:
    """0..9999, uniform: the first 8 bytes of BLAKE2b(rule, profile id) mod 10,000."""
    h = hashlib.blake2b(f"{rule}\x00{profile_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") % BUCKETS


def held_out(profile_id: str, rule: str, limit: int) -> bool:
    """Whether the profile is in the rule's holdout, for a bucket ``limit`` (0 = nobody)."""
    return limit > 0 and bucket(profile_id, rule) < limit

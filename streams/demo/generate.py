"""Generate the bundled demo data set: about 300 people's journeys as Segment Spec calls.

Run ``python -m streams.demo.generate`` to rewrite ``streams/demo/journeys.jsonl``.
Standard library only, and deterministic: ``random.Random(seed)`` drives every choice,
so the same seed gives a byte-identical file.

Who is in it (see ``docs/domain.md`` for the journeys and the README's "Built-in rules" for
the triggers they exercise):

- Retail (about half): anonymous web browsing, sign-in (identify with email and consent),
  carts that convert within 30 minutes on the same channel, carts that are abandoned
  (some bought later), carts that convert on another channel once identity is linked
  (web or app cart, then a point-of-sale order with the loyalty card the app account
  linked), in-store shoppers whose loyalty record is linked to an app account later,
  customers who go quiet for 50-90 days after a purchase and some who come back sooner,
  and anonymous browsers who never sign in.
- Financial services (20%): loan eligibility checked 1, 2, 3 or more times, some three
  times within 7 days, some spread over 10+ days, a few twice a few weeks apart, and a
  few who withdraw marketing consent between their checks.
- Automotive (20%): configurator views (the same configuration three times within 14
  days for some), email leads, test drives, the dealer CRM record (its own ``crm_id``,
  the same email), purchases, and six months of silence after a test drive.
- Insurance (10%): policy onboarding, some finishing, some dropping off at a step, some
  resuming days later.

Identity is consistent on purpose: a person's web cookie, app install, ``userId``, email,
loyalty card and CRM record are tied together only by calls that carry two of them at
once (an identify, a logged-in event), so identity resolution can link them, and no
two people ever share an identifier. Per person there is at most one ``userId``, one
``loyalty_id`` and one ``crm_id``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from streams.demo import DEMO_FILE
from streams.demo.cast import (
    CAST,
    DESCRIPTION,
    PEOPLE,
    Event,
)
from streams.demo.industries import Industries
from streams.demo.retail import Retail


class _Demo(Retail, Industries):
    # ------------------------------------------------------------------ all together
    def run(self) -> list[Event]:
        cast = [(industry, kind) for industry, kind, n in CAST for _ in range(n)]
        self.rng.shuffle(cast)
        journeys = {
            "retail": self.retail,
            "financial": self.financial,
            "automotive": self.automotive,
            "insurance": self.onboarding,
        }
        for industry, kind in cast:
            journeys[industry](self.person(industry, kind))
        self.out.sort(key=lambda e: e["timestamp"])  # stable: a person's same-ms calls keep their order
        for i, ev in enumerate(self.out, start=1):
            ev["messageId"] = f"demo-{i:06d}"
        return self.out


def generate(seed: int = 7) -> list[dict[str, Any]]:
    """The demo events for ``seed``, sorted by timestamp, with ``messageId`` ``demo-000001``..."""
    return _Demo(seed).run()


def render(events: Sequence[dict[str, Any]]) -> str:
    """One compact JSON object per line, keys sorted, UTF-8 text, a final newline."""
    return "".join(_dumps(e) + "\n" for e in events)


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.demo.generate", description=DESCRIPTION)
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7, the bundled file)")
    parser.add_argument("--out", type=Path, default=DEMO_FILE, help=f"output file (default {DEMO_FILE})")
    args = parser.parse_args(argv)
    events = generate(args.seed)
    data = render(events).encode("utf-8")
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {PEOPLE} people, {len(events)} events, {len(data)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

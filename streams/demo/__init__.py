"""The bundled demo data set: about 300 people's journeys as Segment Spec calls.

``journeys.jsonl`` holds one Segment call per line (compact JSON, keys sorted), sorted by
event time, so a replay in file order is in event-time order. It covers retail carts and
cross-channel orders, loan eligibility checks, automotive configurator leads and dealer
CRM records, and insurance onboarding, from 2026-01-05 to 2026-09-30. It is written by
:mod:`streams.demo.generate` (``python -m streams.demo.generate``) and is deterministic:
the same seed gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

#: The generated demo events, one Segment call per line.
DEMO_FILE: Path = Path(__file__).with_name("journeys.jsonl")

__all__ = ["DEMO_FILE"]

"""Fixtures for rule tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from rules.base import Rule, TriggerSpec
from streams.consent.policy import DEFAULT_POLICY
from streams.engine.runner import Engine
from streams.engine.state import ProfileState
from streams.model import Event

Deliver = Callable[[Rule, Iterable[Event], int], list[TriggerSpec]]


def _deliver_then_fire(rule: Rule, events: Iterable[Event], until: int) -> list[TriggerSpec]:
    """Every event arrives (in the given order) before the clock moves; then the clock goes to ``until``.

    That is the event-clock case the rules promise to get right whatever the arrival
    order: the watermark only passes a timer's due time after every earlier event was seen.
    """
    engine = Engine([rule], DEFAULT_POLICY)
    state = ProfileState()
    fired = []
    for ev in events:
        fired += engine.on_event("p_test", state, ev).fired
    fired += engine.fire_until("p_test", state, until).fired
    return [f.spec for f in fired]


@pytest.fixture(scope="session")
def deliver_then_fire() -> Deliver:
    return _deliver_then_fire

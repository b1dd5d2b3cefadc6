"""Fixtures for rule tests. The helpers themselves live in :mod:`streams.testing` (one import)."""

from __future__ import annotations

import pytest

from streams.testing import Deliver, deliver_then_fire

__all__ = ["Deliver"]  # kept for tests written against ``from conftest import Deliver``


@pytest.fixture(name="deliver_then_fire", scope="session")
def deliver_then_fire_fixture() -> Deliver:
    """:func:`streams.testing.deliver_then_fire`, as a fixture (the tests written before the kit use it)."""
    return deliver_then_fire

"""Fixtures of the Profile API tests (helpers: :mod:`api.server`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api.server import OTHER_TOKEN, RULES, TOKEN

from streams.settings import Settings


@pytest.fixture
def api_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return make_settings(rules=RULES, api_tokens=f"{TOKEN},{OTHER_TOKEN}", **overrides)

    return make

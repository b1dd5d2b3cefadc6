"""streams.frozen.fast_init: the same objects as the dataclass's own __init__, still frozen. Pure logic."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest

from streams.frozen import GENERATED, fast_init

#: the modules whose hot records use fast_init (importing them registers the classes)
MODULES = (
    "streams.model",
    "streams.state.timer_id",
    "rules.base",
    "streams.pipeline.records",
    "streams.measure.kpi",
    "streams.pipeline.intake_stage",
    "streams.identity.base",
    "streams.pipeline.envelope",
    "streams.consent.decide",
)


def _classes() -> list[type]:
    for m in MODULES:
        importlib.import_module(m)
    return sorted(GENERATED, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))


def test_the_hot_records_use_it() -> None:
    names = {c.__qualname__ for c in _classes()}
    assert {"Event", "Identifier", "InRecord", "OutRecord", "TimerId", "RuleContext", "Facts"} <= names


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__qualname__)
def test_builds_what_the_dataclass_init_builds(cls: type) -> None:
    original = GENERATED[cls]
    fields = dataclasses.fields(cls)
    required = [
        f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    given = {f.name: object() for f in fields}  # a distinct value per field

    def both(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        ours = cls(*args, **kwargs)
        theirs = object.__new__(cls)
        original(theirs, *args, **kwargs)
        return ours, theirs

    # every field given, by position and by name
    for ours, theirs in (both(*given.values()), both(**given)):
        assert _values(ours) == _values(theirs) == tuple(given.values())
    # only the required ones: the same defaults, and a fresh object from each default factory
    ours, theirs = both(*(given[f.name] for f in required))
    assert _values(ours) == _values(theirs)
    again = cls(*(given[f.name] for f in required))
    for f in fields:
        if f.default_factory is not dataclasses.MISSING and isinstance(
            getattr(ours, f.name), list | dict | set
        ):
            assert getattr(ours, f.name) is not getattr(again, f.name), f.name  # not shared
    # still frozen, still replaceable, the same signature
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(ours, fields[0].name, 1)
    assert _values(dataclasses.replace(ours, **{fields[0].name: 5}))[0] == 5
    mine, theirs_sig = inspect.signature(cls.__init__), inspect.signature(original)
    assert [(p.name, p.kind) for p in mine.parameters.values()] == [
        (p.name, p.kind) for p in theirs_sig.parameters.values()
    ]
    with pytest.raises(TypeError):
        cls(*given.values(), object())  # one argument too many, as before


def test_refuses_what_it_cannot_do_exactly() -> None:
    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = dataclasses.field(kw_only=True)

    @dataclasses.dataclass(frozen=True, slots=True)
    class NotInInit:
        a: int = dataclasses.field(default=1, init=False)

    for cls in (NotFrozen, NoSlots, PostInit, KwOnly, NotInInit):
        with pytest.raises(TypeError):
            fast_init(cls)

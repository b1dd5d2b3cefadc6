"""streams.frozen.fast_init: the same objects as the dataclass's own __init__, still frozen. Pure logic."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest

from streams.consent.decide import Reason
from streams.frozen import COMPILED, GENERATED, fast_init
from streams.model import Event
from streams.pipeline.records import InRecord

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
    _classes()
    names = {c.__qualname__ for c in [*GENERATED, *COMPILED]}
    assert {"Event", "Identifier", "InRecord", "OutRecord", "TimerId", "RuleContext", "Facts"} <= names


def _compiled() -> list[type]:
    _classes()
    return sorted(COMPILED, key=lambda c: f"{c.__module__}.{c.__qualname__}")


@pytest.mark.parametrize("cls", _compiled(), ids=lambda c: c.__qualname__)
def test_a_compiled_one_keeps_its_written_out_init_and_builds_what_it_declares(cls: type) -> None:
    """Compiled (`make native`), a class keeps the ``__init__`` written out in it: the same
    fields by name and by position, the declared defaults, fresh default containers, still frozen."""
    fields = dataclasses.fields(cls)
    example = EXAMPLES[cls.__qualname__]  # (a compiled __init__ shows no signature: built by name)
    made, again = cls(**example), cls(**example)
    for f in fields:
        if f.name in example:
            assert getattr(made, f.name) is example[f.name], f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(made, f.name) == f.default_factory(), f.name
            if isinstance(getattr(made, f.name), list | dict | set):
                assert getattr(made, f.name) is not getattr(again, f.name), f.name  # not shared
        else:
            assert getattr(made, f.name) == f.default, f.name
    assert made == cls(*example.values())  # by position too
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, getattr(made, fields[0].name))
    changed = dataclasses.replace(made, **{fields[0].name: example[fields[0].name]})
    assert changed == made and changed is not made


#: the required fields of each compiled class, with values of their types
EXAMPLES: dict[str, dict[str, Any]] = {
    "Identifier": {"type": "email", "value": "a@example.com"},
    "ConsentSignal": {"purpose": "marketing", "granted": True, "ts": 5, "source": "web"},
    "SourceRef": {"topic": "t", "partition": 1, "offset": 2},
    "Event": {"message_id": "m", "call": "track", "ts": 1, "channel": "web", "identifiers": ()},
    "InRecord": {"topic": "t", "partition": 0, "offset": 3, "key": None, "value": b"v"},
    "OutRecord": {"topic": "t", "key": b"k", "value": b"v"},
    "TimerId": {"profile_id": "p", "rule": "r", "name": "n"},
    "Facts": {"known": True, "channels": 2, "orders": 1, "last_activity": None},
    "Allowed": {"channel": "email", "destinations": ("d",), "basis": {}},
    "Refused": {"channel": "email", "reason": Reason.FREQUENCY_CAP, "detail": "d"},
    "Verdict": {"region": "US"},
    "EventRecord": {"profile_id": "p", "event": {}},
    "Pending": {
        "rec": InRecord("t", 0, 3, None, b"v"),
        "ev": Event("m", "track", 1, "web", ()),
        "raw": b"{}",
    },
}


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


def test_an_interpreted_class_with_its_init_written_out_gets_the_faster_one() -> None:
    """As the compiled modules' classes are written, run from source (no compiler)."""

    @dataclasses.dataclass(frozen=True, slots=True, init=False)
    class Written:
        a: int
        b: list[int] = dataclasses.field(default_factory=list)

        def __init__(self, a: int, b: list[int] | None = None) -> None:
            object.__setattr__(self, "a", a)
            object.__setattr__(self, "b", [] if b is None else b)

    written_init = Written.__init__
    assert fast_init(Written) is Written
    assert Written not in COMPILED and GENERATED[Written] is written_init
    assert Written.__init__ is not written_init
    made = Written(1)
    assert (made.a, made.b) == (1, []) and made.b is not Written(1).b
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.a = 2  # type: ignore[misc]

"""A faster ``__init__`` for the frozen dataclasses built for every event.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(looked up on every call), to get past its own ``__setattr__``, which refuses. Made ~23 times
per event (identifiers, timer ids and specs, records, events, KPI facts, rule contexts), that
was ~0.85 µs an object against ~0.15 µs for a plain one (issue 13). :func:`fast_init` gives a
frozen, slotted dataclass an ``__init__`` with the same signature that writes each field through
its slot's descriptor instead (~0.35 µs): the instance is the same, and stays frozen (the
class's ``__setattr__`` and ``__delattr__`` are untouched).

In a module compiled with mypyc (``streams/native.py``) the class has its ``__init__`` written
out and ``fast_init`` is called after the class (a decorator would make mypyc compile it as a
plain Python class): it then leaves the compiled class alone (:data:`COMPILED`), whose own
``__init__`` is faster still. Without a compiler, the same call gives it this faster one.

Only for what that ``__init__`` can do exactly: every field in ``__init__``, positional or
keyword, with or without a default or a default factory; no ``__post_init__``, no ``InitVar``,
no keyword-only field. Anything else raises ``TypeError`` at import, not a wrong object later.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, TypeVar

T = TypeVar("T")

#: class -> the ``__init__`` dataclasses generated for it (tests compare the two)
GENERATED: dict[type, Any] = {}

#: classes fast_init left alone: compiled, with their ``__init__`` written out (tests check them)
COMPILED: set[type] = set()

_NO_VALUE = object()  # an argument not given, for a field with a default factory


def fast_init(cls: type[T]) -> type[T]:
    """Replace ``cls.__init__`` (a ``@dataclass(frozen=True, slots=True)``) with the faster one.

    A class compiled with mypyc (``streams/native.py``) is left as it is: its ``__init__``,
    written out in the class, is compiled already (its ``object.__setattr__`` calls are direct
    slot writes there, ~10x faster than this one), and a compiled class's methods cannot be
    replaced. Such classes are kept in :data:`COMPILED`."""
    params = getattr(cls, "__dataclass_params__", None)
    own_init = vars(cls).get("__init__")
    if (
        params is not None
        and params.frozen
        and own_init is not None
        and not isinstance(own_init, types.FunctionType)
    ):
        COMPILED.add(cls)  # compiled: its own __init__ is a C slot wrapper (and it has no __slots__)
        return cls
    if params is None or not params.frozen or "__slots__" not in vars(cls):
        raise TypeError(f"{cls.__qualname__}: fast_init is for @dataclass(frozen=True, slots=True)")
    declared = vars(cls)["__dataclass_fields__"]
    if hasattr(cls, "__post_init__") or len(declared) != len(dataclasses.fields(cls)):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__qualname__}: fast_init cannot do __post_init__, InitVar or ClassVar fields")
    names: list[str] = []
    args: list[str] = []
    body: list[str] = []
    env: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only:
            raise TypeError(
                f"{cls.__qualname__}.{f.name}: fast_init needs every field in __init__, positional"
            )
        n = f.name
        names.append(n)
        env[f"_set_{n}"] = vars(cls)[n].__set__  # the slot's descriptor
        if f.default is not dataclasses.MISSING:
            env[f"_default_{n}"] = f.default
            args.append(f"{n}=_default_{n}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_factory_{n}"] = f.default_factory
            args.append(f"{n}=_NO_VALUE")
            body.append(f"    if {n} is _NO_VALUE:\n        {n} = _factory_{n}()")
        else:
            args.append(n)
        body.append(f"    _set_{n}(self, {n})")
    source = f"def __init__(self, {', '.join(args)}) -> None:\n" + ("\n".join(body) or "    pass") + "\n"
    exec(source, env)
    init = env["__init__"]
    original = vars(cls)["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(original.__annotations__)
    init.__doc__ = original.__doc__
    GENERATED[cls] = original
    type.__setattr__(cls, "__init__", init)
    return cls

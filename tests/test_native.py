"""The compiled hot modules (streams/native.py, `make native`): they are what runs after a
build, and a source edited since its build stops import with one line instead of running the
old compiled code."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
from pathlib import Path
from typing import Any

import pytest

import streams
from rules.purchase_suppression import PurchaseSuppression
from streams import native
from streams.engine.effects import Effects, Fired
from streams.pipeline.decide_result import Commit, Result
from streams.state import ProfileState
from streams.testing import run_rule, track


def test_after_make_native_the_listed_modules_run_compiled() -> None:
    if not native.MANIFEST.exists():
        pytest.skip("not compiled here (no C compiler, or `make clean-native`): the code runs from source")
    assert not native.stale()
    for path in native.MODULES:
        assert native.compiled_path(path).exists(), path
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        # (a compiled module's __file__ is not where it was loaded from: mypyc sets it)
        assert isinstance(module.__loader__, importlib.machinery.ExtensionFileLoader), path


def test_a_source_edited_after_its_build_stops_import_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "ROOT", tmp_path)
    monkeypatch.setattr(native, "MODULES", ("streams/hot.py",))
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "hot.py").write_bytes(b"x = 1\n")
    native.compiled_path("streams/hot.py").write_bytes(b"")  # as `make native` leaves it
    monkeypatch.setattr(native, "MANIFEST", tmp_path / "streams" / "_native.manifest")
    native.MANIFEST.write_text(f"streams/hot.py\t{native.digest('streams/hot.py')}\n")
    native.check()  # as built: fine
    importlib.reload(streams)  # what every command does first: imports streams

    (tmp_path / "streams" / "hot.py").write_bytes(b"x = 2\n")
    with pytest.raises(native.StaleNativeModule) as err:
        importlib.reload(streams)
    assert str(err.value).splitlines() == [
        "streams/hot.py changed since it was compiled (1 stale): run `make native` again, "
        "or `make clean-native` to run everything from source"
    ]

    native.MANIFEST.unlink()  # a compiled module no build of ours recorded is not trusted either
    assert native.stale() == ["streams/hot.py"]
    native.compiled_path("streams/hot.py").unlink()  # nothing compiled: the source runs
    assert native.stale() == []


# Compiled dataclasses get their __init__ written out (mypyc compiles it; the one dataclasses
# generates would stay interpreted, 4x slower): it must do what the declaration says.
WRITTEN_OUT_INITS = [ProfileState, Effects, Commit, Result]


def _sample(f: dataclasses.Field[Any]) -> Any:
    """A fresh value of the field's declared type, distinct from its default (a compiled class
    checks the types it is given)."""
    if f.default_factory is not dataclasses.MISSING:
        made = f.default_factory()
        return {dict: {"x": 1}, set: {"x"}, list: [1]}.get(type(made), made)
    default = f.default
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 7
    return "v"  # str | None


@pytest.mark.parametrize("cls", WRITTEN_OUT_INITS, ids=lambda c: c.__name__)
def test_a_written_out_init_gives_every_field_its_declared_default(cls: type) -> None:
    made, again = cls(), cls()
    for f in dataclasses.fields(cls):
        want = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        assert getattr(made, f.name) == want, f.name
        if f.default is dataclasses.MISSING:  # a fresh container each, never one shared
            assert getattr(made, f.name) is not getattr(again, f.name), f.name


@pytest.mark.parametrize("cls", [ProfileState, Effects, Commit], ids=lambda c: c.__name__)
def test_a_written_out_init_keeps_what_it_is_given_by_name_and_by_position(cls: type) -> None:
    given = {f.name: _sample(f) for f in dataclasses.fields(cls)}
    by_name, by_position = cls(**given), cls(*given.values())
    for name, value in given.items():
        assert getattr(by_name, name) is value, name
        assert getattr(by_position, name) is value, name


def test_a_result_keeps_the_commit_it_is_given() -> None:
    commit = Commit(marks={0: {1: 2}})
    result = Result([], commit, [("r", 1)], True)
    assert result.commit is commit
    assert (result.latencies, result.more) == ([("r", 1)], True)


def test_a_fired_trigger_keeps_its_fields_and_stays_frozen() -> None:
    fired = run_rule(
        PurchaseSuppression(), [track("Order Completed", 1_700_000_000_000, properties={"sku": "A"})]
    ).fired[0]
    again = Fired(fired.rule, fired.profile_id, fired.spec, fired.verdict, 5, holdout=True)
    assert (again.rule, again.spec, again.verdict, again.origin_rx, again.holdout, again.shadow) == (
        fired.rule,
        fired.spec,
        fired.verdict,
        5,
        True,
        False,
    )
    assert again.outcome == ("holdout" if fired.verdict.activated else "suppressed")
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.holdout = False  # type: ignore[misc]

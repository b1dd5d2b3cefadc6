"""The compiled hot modules (streams/native.py, `make native`): they are what runs after a
build, and a source edited since its build stops import with one line instead of running the
old compiled code."""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path

import pytest

import streams
from streams import native


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

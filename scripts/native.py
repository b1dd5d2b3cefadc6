"""Compile the worker's hot modules with mypyc, in place: ``make native`` (see streams/native.py).

    .venv/bin/python scripts/native.py          # build (or rebuild) them
    .venv/bin/python scripts/native.py clean    # remove them: everything runs from source

Without a C compiler it says so in one line and exits 0: the code runs from source.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# streams/native.py on its own: importing the streams package would run its stale check, which
# fails on exactly the modules this script is about to compile again
_spec = importlib.util.spec_from_file_location("_native", ROOT / "streams" / "native.py")
assert _spec is not None and _spec.loader is not None
native = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(native)

SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
setup(name="cxstream-native", script_args=["-q", "build_ext", "--inplace"],
      ext_modules=mypycify(sys.argv[1:], group_name={group!r}, opt_level="3"))
"""


def clean() -> None:
    # every compiled module, also of one since taken off the list (which import does not check)
    for pkg in ("streams", "rules"):
        for lib in (ROOT / pkg).rglob("*.so"):
            lib.unlink()
    native.MANIFEST.unlink(missing_ok=True)


def build() -> int:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        print("native: no C compiler (cc): the worker runs from source, with more CPU per event")
        return 0
    clean()
    # setuptools runs in a scratch directory that links to our packages: in the repository it
    # would read pyproject.toml, whose SPDX license string older setuptools refuse
    with tempfile.TemporaryDirectory(prefix="cxstream-native-") as tmp:
        for pkg in ("streams", "rules"):
            os.symlink(ROOT / pkg, Path(tmp) / pkg)
        setup = SETUP.format(group=native.GROUP)
        args = [sys.executable, "-c", setup, *native.MODULES, "--config-file", str(ROOT / "pyproject.toml")]
        done = subprocess.run(args, cwd=tmp, capture_output=True, text=True)
    if done.returncode != 0:
        clean()
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        print("native: mypyc failed (above); nothing is compiled, the worker runs from source")
        return 1
    native.MANIFEST.write_text("".join(f"{m}\t{native.digest(m)}\n" for m in native.MODULES))
    print(f"native: compiled {len(native.MODULES)} modules (streams/native.py)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["clean"]:
        clean()
        sys.exit(0)
    sys.exit(build())

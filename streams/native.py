"""The worker's hot modules, compiled to C with mypyc, and the check that none is stale.

`make native` (part of ``make install``; ``scripts/native.py``) compiles :data:`MODULES` in
place: Python imports a module's compiled form (``runner.cpython-311-x86_64-linux-gnu.so``
beside ``runner.py``) before its source. It writes :data:`MANIFEST`, the SHA-256 of each
source it compiled. Issue 13: these modules are the decide and intake stages' own Python, ~90%
of a worker's CPU, and compiled they take less of it (README "Performance", eighth to tenth
rounds: the stages ~18% fewer instructions per event than with the first 13 modules).

Without a C compiler (or after ``make clean-native``) nothing is compiled and the same code
runs from source: the behaviour is the same, only slower. A compiled class cannot be
subclassed by interpreted code nor have its methods replaced: the rule kit (``rules.kit``,
``rules.base``) that rule modules build on stays interpreted for that reason.

:func:`check` runs when ``streams`` is imported: a source edited since it was compiled would
otherwise be silently ignored (its old compiled form would run), so import stops with one line
that says which file and what to run.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
from pathlib import Path

#: the compiled modules, as paths from the repository root (the stages' hot Python: profiles of
#: a worker draining a backlog, issue 13). Their dataclasses have ``__init__`` written out in the
#: class: mypyc leaves the one ``dataclasses`` generates interpreted (a frozen one's
#: ``object.__setattr__`` calls become direct slot writes once compiled). ``fast_init`` is called
#: on a frozen one after the class, not as its decorator (mypyc would make a decorated class a
#: plain Python class), and leaves it alone when compiled. Not here: the rule kit and
#: ``rules.base`` (rule modules subclass them), modules whose classes interpreted code
#: subclasses (the identity and dedupe stores: the in-memory ones, test stores), the runtime
#: and the faust glue (per batch, not per event).
MODULES: tuple[str, ...] = (
    "streams/engine/runner.py",
    "streams/engine/effects.py",
    "streams/model.py",
    "streams/pipeline/records.py",
    "streams/state/timer_id.py",
    "streams/measure/kpi.py",
    "streams/consent/decide.py",
    "streams/consent/consent.py",
    "streams/pipeline/envelope.py",
    "streams/engine/timers.py",
    "streams/pipeline/intake_stage.py",
    "streams/pipeline/decide_commit.py",
    "streams/intake/consent.py",
    "streams/engine/computed.py",
    "streams/engine/recent.py",
    "streams/engine/state.py",
    "streams/intake/normalize.py",
    "streams/measure/exposures.py",
    "streams/pipeline/decide_result.py",
    "streams/pipeline/decide_stage.py",
    "streams/pipeline/decide_timers.py",
    "streams/sinks/records.py",
    "streams/state/profile.py",
    "rules/cart_abandoned.py",
    "rules/inactive_45d.py",
)

#: the package of mypyc's shared runtime module (``streams/_native__mypyc...so``)
GROUP = "streams._native"

ROOT = Path(__file__).resolve().parent.parent

#: ``module path<TAB>SHA-256 of its source`` per line, written by ``scripts/native.py``
MANIFEST = ROOT / "streams" / "_native.manifest"


class StaleNativeModule(ImportError):
    """A compiled module's source changed after it was compiled."""


def compiled_path(module: str) -> Path:
    """Where the compiled form of ``module`` (a path from the repository root) lives."""
    src = ROOT / module
    return src.with_name(src.stem + importlib.machinery.EXTENSION_SUFFIXES[0])


def digest(module: str) -> str:
    return hashlib.sha256((ROOT / module).read_bytes()).hexdigest()


def manifest() -> dict[str, str]:
    """What the last build compiled: module path -> SHA-256 of the source it compiled."""
    try:
        text = MANIFEST.read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def stale() -> list[str]:
    """The compiled modules whose source is not the one they were compiled from."""
    built = manifest()
    out = []
    for module in MODULES:
        if not compiled_path(module).exists():
            continue
        src = ROOT / module
        if built.get(module) != (digest(module) if src.exists() else None):
            out.append(module)
    return out


def check() -> None:
    """Raise :class:`StaleNativeModule` (one line) if a compiled module is stale."""
    old = stale()
    if old:
        raise StaleNativeModule(
            f"{old[0]} changed since it was compiled ({len(old)} stale): run `make native` again, "
            "or `make clean-native` to run everything from source"
        )

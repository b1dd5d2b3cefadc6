"""The package layering of ``streams/`` and ``rules/``: no import cycle between packages, every
module importable first in a fresh interpreter, no module over 500 lines.

Packages are ``rules`` and each sub-package of ``streams`` (``streams.engine``,
``streams.consent``, ``streams.state``, ...). The modules directly in ``streams/`` (settings,
model, runtime, cli, worker, ...) are the application around the packages, not a package: they
are left out of the graph.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``streams/`` and ``rules/``."""
    out: dict[str, Path] = {}
    for top in ("streams", "rules"):
        for f in sorted((ROOT / top).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _package(module: str) -> str | None:
    """The package a module belongs to, or ``None`` for a module directly in ``streams/``."""
    parts = module.split(".")
    if parts[0] == "rules":
        return "rules"
    if parts[0] != "streams" or len(parts) < 2:
        return None
    return "streams." + parts[1] if (ROOT / "streams" / parts[1]).is_dir() else None


def _imported(tree: ast.AST) -> Iterator[str]:
    """Every absolute module name an import statement names (anywhere: lazy imports count)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{a.name}" for a in node.names)


@functools.cache
def package_graph() -> dict[str, dict[str, set[str]]]:
    """package -> imported package -> the ``module -> module`` imports that make the edge.

    Built in a fresh interpreter (this file run as a script): in a test process where earlier
    tests provoked deep recursion (the hostile-input tests), CPython 3.11's ``ast.parse`` can fail
    with ``SystemError: AST constructor recursion depth mismatch``.
    """
    run = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    raw: dict[str, dict[str, list[str]]] = json.loads(run.stdout)
    return {src: {dst: set(edges) for dst, edges in out.items()} for src, out in raw.items()}


def _graph_here() -> dict[str, dict[str, set[str]]]:
    mods = _modules()
    graph: dict[str, dict[str, set[str]]] = {}
    for name, path in mods.items():
        src = _package(name)
        if src is None:
            continue
        graph.setdefault(src, {})
        for target in _imported(ast.parse(path.read_text(), str(path))):
            dst = _package(target)
            if dst is not None and dst != src:
                graph[src].setdefault(dst, set()).add(f"{name} -> {target}")
    return graph


def _cycle(graph: dict[str, dict[str, set[str]]]) -> list[str] | None:
    """One cycle of the graph (as a path back to its start), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, {})):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_graph_is_built_from_real_imports() -> None:
    """The check below could pass on an empty graph: it is not empty, and knows the real edges."""
    graph = package_graph()
    assert "streams.consent" in graph["streams.engine"]  # the engine asks consent for verdicts
    assert "streams.state" in graph["streams.consent"]
    assert _cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": set()}, "b": {}}) is None


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph()
    cycle = _cycle(graph)
    if cycle:
        edges = [sorted(graph[a][b])[0] for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle between packages: " + " -> ".join(cycle) + "\n  " + "\n  ".join(edges))


def test_consent_and_state_do_not_import_the_engine() -> None:
    """``engine`` calls ``consent``; consent, and the state both read, know nothing of the engine."""
    graph = package_graph()
    for pkg in ("streams.consent", "streams.state"):
        assert "streams.engine" not in graph.get(pkg, {}), sorted(graph[pkg]["streams.engine"])
        assert "streams.pipeline" not in graph.get(pkg, {})
    assert set(graph.get("streams.state", {})) == set(), graph["streams.state"]  # only streams.model


def _by_package() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in _modules():
        if not name.endswith(".__main__"):  # a program, not a module to import
            out.setdefault(_package(name) or name, []).append(name)
    return out


def _imports_cleanly(first: str, *then: str) -> None:
    """Import ``first`` in a fresh interpreter, then ``then``: an import cycle shows up as an
    ImportError (a partially initialized module) when a module of it is imported first."""
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    r = subprocess.run(
        [sys.executable, "-c", code, first, *then], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, f"importing {first} first: " + (r.stderr.strip().splitlines() or ["?"])[-1]


@pytest.mark.parametrize("package", sorted(_by_package()))
def test_each_package_imports_in_a_fresh_interpreter(package: str) -> None:
    _imports_cleanly(*_by_package()[package])


#: The packages whose mutual imports this layering is about: each of their modules first, alone.
LAYERED = ("streams.state", "streams.consent", "streams.engine", "streams.pipeline")


@pytest.mark.parametrize("module", [m for p in LAYERED for m in _by_package()[p]])
def test_each_layered_module_imports_first(module: str) -> None:
    _imports_cleanly(module)


def test_no_module_over_500_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules().values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


if __name__ == "__main__":  # the graph for package_graph(), as JSON
    print(json.dumps({s: {d: sorted(e) for d, e in out.items()} for s, out in _graph_here().items()}))

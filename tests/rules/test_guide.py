"""docs/adding-a-rule.md tells the truth: its rule is the shipped one, and its tests pass."""

import ast
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "adding-a-rule.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S)


def _code(source: str) -> str:
    """The source without its module docstring, normalized by the AST (formatting aside)."""
    tree = ast.parse(source)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant):
        tree.body = tree.body[1:]
    return ast.unparse(tree)


def test_the_guides_rule_is_the_shipped_browse_abandoned() -> None:
    shipped = (ROOT / "rules" / "browse_abandoned.py").read_text(encoding="utf-8")
    assert _code(BLOCKS[0]) == _code(shipped)


def test_the_guides_tests_pass() -> None:
    module = ModuleType("guide_tests")
    exec(compile(BLOCKS[1], "docs/adding-a-rule.md", "exec"), module.__dict__)
    tests = [f for name, f in vars(module).items() if name.startswith("test_")]
    assert len(tests) == 5
    for test in tests:
        test()

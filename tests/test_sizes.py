"""Small pieces: no module under services/ over 300 lines, no function over 50 (migrations aside,
whose revisions are history)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50


def sources() -> list[Path]:
    return [path for path in sorted((ROOT / "services").rglob("*.py")) if "migrations" not in path.parts]


def long_modules() -> list[str]:
    found = []
    for path in sources():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines")
    return found


def long_functions(text: str, name: str = "<text>") -> list[str]:
    """Each function of text longer than MAX_FUNCTION_LINES, decorators and docstring included."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
            start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
            if (length := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_is_over_300_lines() -> None:
    assert long_modules() == []


def test_no_function_is_over_50_lines() -> None:
    assert [problem for path in sources() for problem in long_functions(path.read_text(), str(path))] == []


def test_the_check_counts_a_long_function() -> None:
    body = "\n".join(f"    x{n} = {n}" for n in range(49))
    assert long_functions(f"def ok():\n{body}\n") == []
    assert long_functions(f"@decorated\ndef long():\n{body}\n") == ["<text>:2 long: 51 lines"]

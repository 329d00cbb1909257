"""The shape of the code, checked with ast across mailq/: no module over 400 lines, no class
over 250, no function over 60 (a function's lines run from its `def` to its last line,
docstring included; tests are not checked)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mailq"

MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60

# Empty: every module, class and function meets the limits. Never add to it: split the new
# offender instead.
ALLOWED: frozenset[str] = frozenset()


def _span(node: ast.stmt) -> int:
    assert node.end_lineno is not None
    return node.end_lineno - node.lineno + 1


def offenders(package: Path = PACKAGE) -> dict[str, int]:
    """Every module, class and function over its limit, with its length in lines."""
    found: dict[str, int] = {}
    for path in sorted(package.rglob("*.py")):
        name = path.relative_to(package.parent).as_posix()
        source = path.read_text(encoding="utf-8")
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            found[f"module {name}"] = lines
        found.update(_long_definitions(ast.parse(source), name))
    return found


def _long_definitions(tree: ast.Module, module: str) -> dict[str, int]:
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                is_class = isinstance(child, ast.ClassDef)
                limit = MAX_CLASS_LINES if is_class else MAX_FUNCTION_LINES
                if _span(child) > limit:
                    found[f"{'class' if is_class else 'function'} {module}:{qualname}"] = _span(
                        child
                    )
                visit(child, f"{qualname}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _listing(entries: dict[str, int]) -> str:
    return "\n".join(f"  {name}: {lines} lines" for name, lines in sorted(entries.items()))


def test_no_module_class_or_function_is_over_its_limit() -> None:
    new = {k: v for k, v in offenders().items() if k not in ALLOWED}
    assert not new, (
        f"over the limits (module {MAX_MODULE_LINES}, class {MAX_CLASS_LINES}, function "
        f"{MAX_FUNCTION_LINES} lines); split them:\n{_listing(new)}"
    )


def test_the_allow_list_names_only_current_offenders() -> None:
    stale = sorted(ALLOWED - set(offenders()))
    assert not stale, "now within the limits: remove from ALLOWED:\n  " + "\n  ".join(stale)


def test_the_worker_needs_no_allowance() -> None:
    assert not [name for name in ALLOWED if "mailq/worker/" in name]


def test_the_check_finds_a_long_function_class_and_module(tmp_path: Path) -> None:
    package = tmp_path / "mailq"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    method = "\n".join(f"        y{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    filler = "\n" * MAX_MODULE_LINES
    (package / "big.py").write_text(
        f"def long():\n{body}\n\n\nclass Big:\n    def m(self):\n{method}\n{filler}    z = 1\n"
    )
    assert set(offenders(package)) == {
        "module mailq/big.py",
        "function mailq/big.py:long",
        "class mailq/big.py:Big",
        "function mailq/big.py:Big.m",
    }

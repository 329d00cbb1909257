"""The architecture, checked: no import cycle among mailq's modules (function-level imports
included), only the CLI reaches the service, nothing read from the environment at import,
and the CLI's modules and functions stay small. The layers are checked by `lint-imports`
(the contract in pyproject.toml, run by .ci/run)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.processes import REPO

PACKAGE = REPO / "mailq"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def modules_of(root: Path) -> dict[str, Path]:
    """Every module of the package in folder `root`, by dotted name (a package by its own
    name, for its __init__.py)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement names: `from a.b import c` names a.b.c when c
    is a module, else a.b."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    return [f"{source}.{alias.name}" for alias in node.names] + [source]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function. Importing
    a.b.c counts as importing a.b.c only, not the package a.b (whose __init__ Python runs
    too): a package counts when a statement names it."""
    modules = modules_of(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported(node, name, is_package)
            if isinstance(node, ast.ImportFrom):
                # `from a.b import c`: the module a.b.c if there is one, else a.b itself.
                *members, source = names
                hits = [m for m in members if m in modules]
                edges.update(hits)
                if len(hits) < len(members) and source in modules:
                    edges.add(source)
            else:
                edges.update(n for n in names if n in modules)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None when the graph has none."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> list[str] | None:
        path.append(node)
        on_path.add(node)
        for target in sorted(graph.get(node, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


# -- the checker finds what it is meant to find ---------------------------------------------


def test_the_graph_counts_function_level_and_relative_imports(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from pkg import b\n",
            "pkg/b.py": "from .sub import thing\nimport pkg.sub.leaf\n",
            "pkg/sub/__init__.py": "thing = 1\n",
            "pkg/sub/leaf.py": "from ..a import f\n",
        },
    )
    assert import_graph(root) == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub", "pkg.sub.leaf"},
        "pkg.sub": set(),
        "pkg.sub.leaf": {"pkg.a"},
    }
    assert find_cycle(import_graph(root)) == ["pkg.a", "pkg.b", "pkg.sub.leaf", "pkg.a"]


def test_a_submodule_import_does_not_count_as_importing_its_package(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            # The package re-exports from pkg.user, which imports pkg.low: no cycle, although
            # Python runs pkg/__init__.py before pkg.low.
            "pkg/__init__.py": "from pkg.user import value\n",
            "pkg/user.py": "from pkg.low import value\n",
            "pkg/low.py": "value = 1\n",
        },
    )
    graph = import_graph(root)
    assert graph == {"pkg": {"pkg.user"}, "pkg.user": {"pkg.low"}, "pkg.low": set()}
    assert find_cycle(graph) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]


# -- mailq ---------------------------------------------------------------------------------


def test_no_import_cycle_among_mailq_modules() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 50, "the graph missed mailq's modules"
    assert "mailq.db.emails" in graph["mailq.enqueue"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_only_the_cli_imports_the_service() -> None:
    reaching = {
        module
        for module, imported in import_graph(PACKAGE).items()
        if any(i == "mailq.service" or i.startswith("mailq.service.") for i in imported)
        and not module.startswith(("mailq.service.", "mailq.cli."))
        and module not in ("mailq.service", "mailq.cli")
    }
    assert reaching == set()


def test_importing_mailq_reads_no_setting_from_the_environment() -> None:
    """Every module of mailq imports without reading a MAILQ_* variable (they are read at
    the edge of a process: `mailq`, the first call of the service's app)."""
    names = sorted(n for n in modules_of(PACKAGE) if not n.endswith("__main__"))
    script = f"""
import importlib, json, os, sys
read = set()
class Watched(dict):
    def __getitem__(self, key):
        read.add(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        read.add(key)
        return super().get(key, default)
    def __contains__(self, key):
        read.add(key)
        return super().__contains__(key)
os.environ = Watched(os.environ)
for name in {names!r} + ["service.app"]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:  # an optional extra that is not installed
        if (exc.name or "").split(".")[0] in ("mailq", "service"):
            raise
print(json.dumps(sorted(k for k in read if k.startswith("MAILQ_"))))
"""
    env = {"PATH": "/usr/bin:/bin", "MAILQ_CONCURRENCY": "not a number"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_cli_keeps_its_modules_and_functions_small() -> None:
    too_long = []
    for path in sorted((PACKAGE / "cli").glob("*.py")):
        text = path.read_text("utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}: {node.name}() is {length} lines")
    assert too_long == []

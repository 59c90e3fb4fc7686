"""pitgrid.models imports one way: no module of it imports, at any depth or place, one that imports it."""
from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pitgrid.models

PACKAGE = Path(pitgrid.models.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imports_of(module: str) -> set[str]:
    """Every ``pitgrid.models.X`` that ``module`` imports: at the top, inside functions, or
    under ``TYPE_CHECKING`` (a type-only import still makes a circle for readers and tools)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.startswith("pitgrid.models."):
                found.add(name.split(".")[2])
    return found - {module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(e.args[1])
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_models_modules_import_one_way():
    graph = {m: imports_of(m) for m in MODULES}
    assert set().union(*graph.values()) <= set(MODULES)
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"
    # the layers the package docstring states
    assert graph["errors"] == set() and graph["status"] == set()
    assert graph["features"] == {"errors"} and graph["decision"] == {"status"}
    assert "inference" not in graph["bundle"] and "strategy" not in graph["training"]


def test_each_module_imports_first():
    # one interpreter: before each import, every pitgrid.models module is forgotten, so each
    # is imported first, with only the layers below it already loaded by its own imports
    code = (
        "import importlib, sys\n"
        f"for m in {MODULES!r}:\n"
        "    for name in [n for n in sys.modules if n.startswith('pitgrid.models')]:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module('pitgrid.models.' + m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

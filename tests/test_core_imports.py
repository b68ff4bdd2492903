"""abqa/core is the shared layer: each of its modules imports on its own, none imports a stage, and their imports
(the ones inside functions too) form no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import abqa.core

CORE = Path(abqa.core.__file__).parent
CORE_MODULES = sorted(f"abqa.core.{path.stem}" for path in CORE.glob("*.py") if path.stem != "__init__")
# Imports a stage (abqa.analysis) and leaves core in this round of issue 12; drop it from here when it has.
LEAVING_CORE = {"abqa.core.tracking"}


def abqa_imports(module: str) -> set[str]:
    """The abqa modules `module` imports anywhere in its source (`from abqa.core import x` counts as abqa.core.x)."""
    tree = ast.parse((CORE / f"{module.rsplit('.', 1)[1]}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "abqa.core":
            found.update(f"abqa.core.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "abqa" or name.startswith("abqa.")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> list[str] | None:
        if module in visiting:
            return visiting[visiting.index(module):] + [module]
        if module in done:
            return None
        visiting.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_core_imports_no_stage():
    stages = {module: sorted(name for name in abqa_imports(module) if not name.startswith("abqa.core."))
              for module in CORE_MODULES if module not in LEAVING_CORE}
    assert {module: names for module, names in stages.items() if names} == {}


def test_core_imports_form_no_cycle():
    graph = {module: {name for name in abqa_imports(module) if name in CORE_MODULES} for module in CORE_MODULES}
    assert find_cycle(graph) is None
    # The data layer in its order: squad knows nothing of XQuAD nor of where data comes from.
    assert "abqa.core.squad" in graph["abqa.core.xquad"]
    assert not graph["abqa.core.squad"] & {"abqa.core.xquad", "abqa.core.data_sources", "abqa.core.hub"}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_each_core_module_imports_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

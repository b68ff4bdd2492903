"""The package's shape: the shared core imports no stage (not even inside a function), each core module imports
on its own, and no modules import each other in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import abqa

ROOT = Path(abqa.__file__).resolve().parent.parent
# Import name -> folder, as pyproject's package-dir maps them.
PACKAGES = {"abqa": "abqa", "abqa.export": "export", "abqa.serve": "serve", "abqa.client": "client",
            "abqa.loadtest": "loadtest", "abqa.analysis": "analysis", "abqa.router": "router", "abqa.ui": "ui"}
CORE = "abqa.core"


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            relative = path.relative_to(base).with_suffix("")
            if package == "abqa" and relative.parts[0] in {name.split(".")[1] for name in PACKAGES if "." in name}:
                continue
            parts = [part for part in relative.parts if part != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path, *, module_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in names if name == "abqa" or name.startswith("abqa.")}


def graph(*, module_level_only: bool) -> dict[str, set[str]]:
    known = modules()
    return {module: {name for name in imports(path, module_level_only=module_level_only) if name in known}
            for module, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_the_core_imports_no_stage_not_even_inside_a_function():
    offending = {module: sorted(name for name in targets if not name.startswith(CORE))
                 for module, targets in graph(module_level_only=False).items() if module.startswith(CORE)}
    assert {module: names for module, names in offending.items() if names} == {}


def test_core_modules_import_each_other_without_a_cycle():
    core = {module: {t for t in targets if t.startswith(CORE)}
            for module, targets in graph(module_level_only=False).items() if module.startswith(CORE)}
    assert cycles(core) == []
    # The data layer in its order: squad knows nothing of XQuAD nor of where data comes from.
    assert "abqa.core.squad" in core["abqa.core.xquad"]
    assert not core["abqa.core.squad"] & {"abqa.core.xquad", "abqa.core.data_sources", "abqa.core.hub"}


@pytest.mark.parametrize("module", sorted(name for name in modules() if name.startswith(CORE)))
def test_each_core_module_imports_in_a_fresh_interpreter(module):
    result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_no_module_level_import_cycle_in_the_package():
    assert cycles(graph(module_level_only=True)) == []


def test_the_scan_sees_the_package():
    known = modules()
    assert {"abqa.core.run.meta", "abqa.client.runner", "abqa.serve.server", "abqa.cli"} <= set(known)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]

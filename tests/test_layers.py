"""The import rules of the project's packages, read from the source (``ast``), not by importing it.

Layers, bottom to top (a package imports only itself and packages of lower layers)::

    0  runtime                  config, files, checkpoints, distributed, logging, seeding
    1  tasks                    the task vocabulary (configs/finetune/*.yaml): names, classes, units, metrics
    2  models, preprocess       nn.Modules and their registry; raw EEG -> windows (labels from tasks)
    3  pretrain, finetune       the training stages (models + preprocessed windows)
    4  scripts                  benchmarks, table makers

``models`` and ``preprocess`` do not import each other, nor do ``pretrain`` and ``finetune``. No two
modules import each other, directly or around a longer circle (imports inside functions included; a
package's ``__init__`` counts as the module of the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "runtime": 0,
    "tasks": 1,
    "models": 2,
    "preprocess": 2,
    "pretrain": 3,
    "finetune": 3,
    "scripts": 4,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that the module ``name`` imports (anywhere in it), as dotted names."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # the longest project module the target names (``a.b.func`` -> ``a.b``)
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts and ".".join(parts) != name:
                found.add(".".join(parts))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _project_modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_packages_import_only_lower_layers():
    bad = []
    for module, imported in _graph().items():
        package = module.split(".")[0]
        for target in imported:
            other = target.split(".")[0]
            if other != package and LAYERS[other] >= LAYERS[package]:
                bad.append(f"{module} imports {target} ({other}, layer {LAYERS[other]} >= {LAYERS[package]})")
    assert not bad, "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_the_rules_see_imports():
    """The parser finds absolute, relative, lazy and package imports (the test could not fail otherwise)."""
    graph = _graph()
    assert "runtime.config" in graph["tasks.vocabulary"]
    assert "models.m4cea" in graph["models.registry"]  # relative import
    assert "preprocess.datasets.base" in graph["preprocess.datasets.chbmit"]
    assert {"preprocess.datasets.chbmit", "preprocess.datasets.base"} <= graph["preprocess.datasets"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_package_has_a_layer(package):
    assert (ROOT / package).is_dir()


def test_no_module_over_800_lines():
    long = {
        name: n
        for name, path in _project_modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 800
    }
    assert long == {}

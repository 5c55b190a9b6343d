"""The rules of docs/architecture.md that a reader of imports can check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = {"server": "pycrid.server", "adapters": "pycrid.adapters", "tools": "pycrid.tools"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _imports(path: Path, nested: bool) -> set[str]:
    """What a module imports: at module level (TYPE_CHECKING blocks too), or everywhere."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt], top: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.Import) and (top or nested):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and (top or nested):
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(node.body, False)
            elif isinstance(node, ast.Try):
                visit(node.body + node.orelse + node.finalbody, top)
                for handler in node.handlers:
                    visit(handler.body, top)
            elif isinstance(node, ast.If | ast.With | ast.AsyncWith | ast.For | ast.While):
                visit(node.body + getattr(node, "orelse", []), top)

    visit(ast.parse(path.read_text()).body, True)
    return names


def test_no_module_imports_another_in_a_circle() -> None:
    graph = {m: {i for i in _imports(p, nested=False) if i in MODULES} for m, p in MODULES.items()}
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph[module]):
            walk(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])


def test_each_layer_imports_only_what_is_below_it() -> None:
    for module, path in MODULES.items():
        imported = _imports(path, nested=True)
        if module.startswith("pycrid.adapters"):
            assert not {i for i in imported if i.startswith(("pycrid.server", "pycrid.tools"))}, (
                module
            )
        if module.startswith("pycrid.server"):
            reached = {
                i
                for i in imported
                if i.startswith(("pycrid.adapters.docker", "pycrid.adapters.oci", "pycrid.tools"))
                or i == "docker"
                or i.startswith("docker.")
            }
            # The daemon picks its adapter, and nothing else of either.
            allowed = {
                "pycrid.adapters.docker.adapter",
                "pycrid.adapters.docker.adapter.DockerAdapter",
                "pycrid.adapters.oci.adapter",
                "pycrid.adapters.oci.adapter.OciAdapter",
            }
            assert reached <= allowed, (module, reached - allowed)


def test_adoption_imports_nothing_of_pycrid_late() -> None:
    path = MODULES["pycrid.adapters.docker.adopt"]
    late = _imports(path, nested=True) - _imports(path, nested=False)
    assert not {i for i in late if i.startswith("pycrid")}

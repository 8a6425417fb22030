"""The transfer package's layout: each module says what it holds, none imports in a cycle,
and ``remoteops.transfer`` still offers its whole public API."""

from __future__ import annotations

import ast
import graphlib
import importlib
from pathlib import Path

import remoteops.transfer

PACKAGE = Path(remoteops.transfer.__file__).parent


def _modules() -> dict[str, ast.Module]:
    return {
        path.stem: ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.glob("*.py"))
        if path.name != "__init__.py"
    }


def test_every_transfer_module_has_a_docstring() -> None:
    bare = [name for name, tree in _modules().items() if not ast.get_docstring(tree)]
    assert not bare


def test_transfer_modules_import_one_another_without_a_cycle() -> None:
    """Lower modules never import higher ones (at run time or for type checking)."""
    graph: dict[str, set[str]] = {}
    for name, tree in _modules().items():
        graph[name] = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module is not None
            and node.module.startswith("remoteops.transfer.")
        }
        assert not any(
            isinstance(node, ast.ImportFrom) and node.module == "remoteops.transfer"
            for node in ast.walk(tree)
        ), f"{name} imports the package itself"
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError
    assert set(order) == set(graph)


def test_the_package_offers_its_public_api() -> None:
    for name in remoteops.transfer.__all__:
        assert getattr(remoteops.transfer, name) is not None
    for module in _modules():
        importlib.import_module(f"remoteops.transfer.{module}")

"""The command line's modules import each other without a cycle, and only public names.

remoteops/cli/ is layered (see its __init__): each module imports only modules below
it. A cycle works or fails depending on which module happens to be imported first, so
it is checked statically (every import, at the top or inside a function) and by
importing each module first in a fresh interpreter.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

REMOTEOPS = Path(__file__).resolve().parents[2] / "remoteops"


def _cli_modules() -> dict[str, Path]:
    """Every module of the command line, by dotted name (old single files included)."""
    files = [*REMOTEOPS.glob("cli*.py"), *REMOTEOPS.glob("cli/*.py")]
    found = {}
    for path in files:
        parts = path.relative_to(REMOTEOPS.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, package: str) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for every ``import``/``from`` in the file."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            found.append((base, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _cli_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for module, names in _imports(path, package):
            targets = [module, *(f"{module}.{n}" for n in names)]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_the_cli_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    # The package imports its app module; nothing below may import the package itself.
    below = {name: deps - {"remoteops.cli"} for name, deps in graph.items()}
    assert not [n for n, deps in graph.items() if "remoteops.cli" in deps and n != "remoteops.cli"]
    order = list(graphlib.TopologicalSorter(below).static_order())  # CycleError on a cycle
    assert "remoteops.cli.app" in graph
    assert order.index("remoteops.cli.runtime") < order.index("remoteops.cli.run")


def test_no_cli_module_takes_a_private_name_from_another() -> None:
    modules = _cli_modules()
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for module, names in _imports(path, package):
            if module.startswith("remoteops.cli"):
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{path.name} imports {private} from {module}"


@pytest.mark.parametrize("module", sorted(_cli_modules()))
def test_each_cli_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}; import remoteops.cli; remoteops.cli.app()"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # app() with no arguments prints the help and exits 2 (no_args_is_help).
    assert "Traceback" not in done.stderr, done.stderr
    assert "Usage: " in done.stdout + done.stderr

"""Command-line values converted without pydantic: the same values and errors as typer's.

remoteops.cliparams returns plain values (a default of the right type, a
string for ``str``, digits for ``int``, strings for ``list[str]``) itself and
leaves everything else to typer's pydantic adapters, so a run need not import
pydantic (~80 ms of every start). These tests compare it with typer's own
coercion, and fail loudly if a typer release takes away what it hooks into.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo

from remoteops import cliparams
from tests.helpers import run_cli


def _typers_own(annotation: Any, value: Any) -> Any:
    descriptor = resolve_type_descriptor(annotation, OptionInfo())
    return build_runtime_param(descriptor)._coerce_value(value, param=None, ctx=None)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (int, "50"),
        (int, "0"),
        (int, "9" * 18),
        (int, 1048576),
        (str, "all"),
        (str, ""),
        (str, "é ünïcode"),
        (float, 2.5),
        (float, "3"),
        (float, "0.25"),
        (float, "10.000"),
        (float, "123456789012345678.123456789012345678"),
        (bool, True),
        (list[str], ("hostname", "-f")),
        (list[str], ["a"]),
        (list[str], ()),
    ],
)
def test_quick_values_are_typers_own(annotation: Any, value: Any) -> None:
    quick = cliparams.quick_value(annotation, value)
    assert quick is not cliparams._NO_QUICK
    own = _typers_own(annotation, value)
    assert (type(quick), quick) == (type(own), own)


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (int, "007"),
        (int, "-1"),
        (int, "+1"),
        (int, " 5"),
        (int, "1_000"),
        (int, "٣"),  # a digit, not ASCII
        (int, "9" * 19),
        (int, ""),
        (int, True),
        (float, "1e3"),
        (float, "inf"),
        (float, ".5"),
        (float, "5."),
        (float, "05.5"),
        (float, "1.2.3"),
        (float, "-2.5"),
        (float, 2),
        (str, b"bytes"),
        (Path, "x"),
        (list[str], "a"),
        (list[str], ("a", 1)),
        (list[Path], ("a",)),
    ],
)
def test_anything_else_is_left_to_typer(annotation: Any, value: Any) -> None:
    assert cliparams.quick_value(annotation, value) is cliparams._NO_QUICK


def test_the_quick_coercion_is_installed_on_the_command_line() -> None:
    """Fails loudly when a typer release no longer offers what cliparams hooks into."""
    assert cliparams.install() is True
    app_module = importlib.import_module("remoteops.cli.app")
    run = app_module._click_command().commands["run"]
    forks = next(p for p in run.params if p.name == "forks")
    assert forks.get_runtime_param().__class__.__name__ == "QuickParam"


def _inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    web1:\n      ansible_host: 127.0.0.1\n")
    return inventory


def test_a_run_does_not_import_pydantic(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from remoteops.cli import main
        try:
            main(["--no-log-file", "run", "nomatch", "-i", {str(_inventory(tmp_path))!r},
                  "-f", "5", "--json", "--connect-timeout", "3", "--", "true"])
        except SystemExit as exc:
            assert exc.code == 2, exc.code
        print(sorted(m for m in sys.modules if m.split(".")[0] == "pydantic"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert "no host matches 'nomatch'" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-f", "abc"],
            "Invalid value for '-f' / '--forks': Input should be a valid integer, "
            "unable to parse string as an integer; see 'remoteops run -h'",
        ),
        (
            ["--connect-timeout", "soon"],
            "Invalid value for '--connect-timeout': Input should be a valid number, "
            "unable to parse string as a number; see 'remoteops run -h'",
        ),
    ],
)
def test_a_value_typer_rejects_gets_typers_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli("run", "all", "-i", str(_inventory(tmp_path)), *args, "--", "true")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"remoteops: error: {message}"

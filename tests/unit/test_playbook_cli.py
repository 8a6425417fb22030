"""`remoteops play` refusals that need no host: every one exits 2 before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from remoteops.errors import UsageError
from remoteops.playbook import parse_extra_vars
from tests.helpers import run_cli


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(
        "all:\n  children:\n    web:\n      hosts:\n"
        "        web01: {ansible_host: 192.0.2.1, color: blue}\n"
        "        web02: {ansible_host: 192.0.2.2}\n"
    )
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("- hosts: web\n  steps:\n    - run: echo {{ color }}\n", "book.yml:3: 'color' is not"),
        ("- hosts: '~('\n  steps:\n    - ping:\n", "book.yml:1: hosts: invalid host pattern"),
        ("- hosts: web\n  steps:\n    - runn: x\n", "book.yml:3: unknown key 'runn'"),
    ],
)
def test_bad_playbooks_exit_2_naming_the_line(
    tmp_path: Path, inventory: Path, body: str, message: str
) -> None:
    (tmp_path / "book.yml").write_text(body)
    result = run_cli(
        "play", "book.yml", "-i", str(inventory), "--connect-timeout", "30", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"remoteops: error: {message}"), lines
    assert "Traceback" not in result.stderr


def test_step_needs_a_terminal(tmp_path: Path, inventory: Path) -> None:
    (tmp_path / "book.yml").write_text("- hosts: web\n  steps:\n    - ping:\n")
    result = run_cli("play", "book.yml", "-i", str(inventory), "--step", cwd=tmp_path, stdin="")
    assert result.returncode == 2
    assert "--step asks before each step and needs a terminal" in result.stderr


def test_no_matching_host_exits_2(tmp_path: Path, inventory: Path) -> None:
    (tmp_path / "book.yml").write_text("- hosts: db\n  steps:\n    - ping:\n")
    result = run_cli("play", "book.yml", "-i", str(inventory), cwd=tmp_path)
    assert result.returncode == 2
    assert "no host matches 'db'" in result.stderr


def test_extra_vars_forms(tmp_path: Path) -> None:
    (tmp_path / "vars.yml").write_text("a: 1\nb: [x, y]\n")
    assert parse_extra_vars(["x=1 y='two words'", f"@{tmp_path / 'vars.yml'}", '{"c": true}']) == {
        "x": "1",
        "y": "two words",
        "a": 1,
        "b": ["x", "y"],
        "c": True,
    }
    for bad in ["novalue", "1x=2", f"@{tmp_path / 'missing.yml'}", "[1, 2]"]:
        with pytest.raises(UsageError):
            parse_extra_vars([bad])

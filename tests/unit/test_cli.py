"""The command line skeleton: help, version, exit codes, no tracebacks."""

from __future__ import annotations

import os
from pathlib import Path

import cryptography
import paramiko
import pytest

import remoteops
from tests.helpers import run_cli


def test_version_names_every_component() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert f"remoteops {remoteops.__version__}" in result.stdout
    assert f"paramiko {paramiko.__version__}" in result.stdout
    assert f"cryptography {cryptography.__version__}" in result.stdout
    assert "Python 3." in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["lab"],
        ["lab", "up"],
        ["lab", "status"],
        ["lab", "down"],
        ["run"],
        ["ping"],
        ["put"],
        ["get"],
        ["play"],
        ["analyze"],
        ["inventory"],
        ["inventory", "list"],
        ["inventory", "graph"],
        ["inventory", "host"],
    ],
)
def test_help_has_an_example(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "Example" in result.stdout


def test_usage_error_exits_2_without_traceback() -> None:
    result = run_cli("lab", "up", "--no-such-option")
    assert result.returncode == 2
    assert "No such option" in result.stderr
    assert "Traceback" not in result.stderr


def test_library_error_is_one_line_and_exit_2(tmp_path: object) -> None:
    result = run_cli("lab", "status", "--dir", "/nonexistent/remoteops-lab")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("remoteops: error: /nonexistent/remoteops-lab: no lab here")


def test_no_arguments_shows_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "Usage" in result.stdout + result.stderr


def test_analyze_a_missing_source_is_a_usage_error() -> None:
    result = run_cli("analyze", "group", "no-such-run.jsonl")
    assert result.returncode == 2
    assert result.stderr == "remoteops: error: no-such-run.jsonl: no such file or directory\n"


def test_play_with_a_missing_playbook_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("play", str(tmp_path / "x.yml"), "-i", "a,b")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"remoteops: error: {tmp_path / 'x.yml'}: No such file or directory; check the path"
    ]


def test_lab_up_without_sshd_says_how_to_install(tmp_path: Path) -> None:
    env = dict(os.environ, REMOTEOPS_SSHD=str(tmp_path / "no-sshd-here"))
    result = run_cli("lab", "up", "--dir", str(tmp_path / "lab"), env=env)
    assert result.returncode == 2
    assert "apt-get install openssh-server" in result.stderr
    assert "--install" in result.stderr
    assert not (tmp_path / "lab").exists()

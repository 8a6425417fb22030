"""`run --become`: the sudo password never shows in a command's output or reaches its stdin.

Against the lab's real sshd and sudo: the lab user `rolab` needs its password
for sudo; a root login does not (sudo never asks root), so the password line
remoteops sends is not read by sudo there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration


def run_become(lab: Lab, *args: str, password_file: Path | None = None) -> dict[str, object]:
    """``run web01 --become ARGS`` with --json; the host's JSON object (and the process)."""
    result = cli(
        "run", lab.hosts[0].name, "-i", str(lab.inventory), "--json", "-t", "20",
        "--become", "--become-password-file", str(password_file or lab.become_password_file),
        *args,
    )  # fmt: skip
    host = json.loads(result.stdout.splitlines()[0])
    assert host["type"] == "host", result.stdout
    host["_returncode"] = result.returncode
    host["_stderr"] = result.stderr
    return host


@pytest.mark.parametrize("login", ["rolab", "root"])
def test_the_password_is_not_echoed_on_a_terminal(lab: Lab, login: str) -> None:
    """--pty: input is echoed until sudo turns echo off; the password waits for its prompt."""
    password = lab.become_password_file.read_text().strip()
    host = run_become(lab, "-u", login, "--pty", "--", "id -un")
    assert host["status"] == "ok", host
    assert host["stdout"] == "root\r\n"  # no password, no prompt, no blank line before
    assert password not in json.dumps(host)


def test_a_password_sudo_does_not_ask_for_never_reaches_the_command(lab: Lab) -> None:
    """A root login's sudo reads no password: the line must not become the command's input."""
    password = lab.become_password_file.read_text().strip()
    host = run_become(lab, "-u", "root", "--", "id -un; cat")
    assert host["status"] == "ok", host
    assert host["stdout"] == "root\n"
    assert password not in json.dumps(host)


@pytest.mark.parametrize("login", ["rolab", "root"])
def test_stdin_reaches_a_become_command_whole(lab: Lab, login: str, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("first line\nsecond line\n")
    host = run_become(lab, "-u", login, "--stdin", str(data), "--", "cat")
    assert host["status"] == "ok", host
    assert host["stdout"] == "first line\nsecond line\n"
    # On a terminal sudo discards input sent ahead of its prompt: refused up front.
    on_tty = cli(
        "run", "web01", "-i", str(lab.inventory), "--pty", "--stdin", str(data), "--become",
        "--become-password-file", str(lab.become_password_file), "--", "head -n 2",
    )  # fmt: skip
    assert on_tty.returncode == 2
    assert on_tty.stderr.startswith("remoteops: error: --stdin with --pty and a sudo password")


def test_stdin_on_a_terminal_is_read_not_echoed(lab: Lab, tmp_path: Path) -> None:
    data = tmp_path / "input.txt"
    data.write_text("first line\nsecond line\n")
    result = cli(
        "run", "web01", "-i", str(lab.inventory), "--json", "--pty", "--stdin", str(data),
        "--", "head -n 2",
    )  # fmt: skip
    host = json.loads(result.stdout.splitlines()[0])
    assert host["stdout"] == "first line\r\nsecond line\r\n"  # once, as head printed it


def test_a_wrong_password_on_a_terminal_fails_at_once(lab: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    host = run_become(lab, "--pty", "--", "id -un", password_file=wrong)
    assert host["_returncode"] == 5
    assert host["status"] == "failed"
    assert str(host["error"]).startswith("sudo: wrong password for rolab")
    assert float(host["duration_s"]) < 15  # not the 20 s deadline: sudo's second prompt ends it
    assert "not-the-password" not in json.dumps(host)

"""The stop helper's command line, stdin and verdicts (the helper itself: tests/integration)."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from remoteops.execution import CommandSpec
from remoteops.remotestop import helper_command, helper_stdin, parse_helper_output
from remoteops.target import Target


def test_the_bootstrap_is_one_line_any_login_shell_can_pass_on() -> None:
    line = helper_command()
    # csh cannot quote a newline; fish reads backslashes inside single quotes.
    assert "\n" not in line
    assert "\\" not in line
    argv = shlex.split(line)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert "'" not in argv[2]


@pytest.mark.parametrize("shell", ["sh", "bash", "dash"])
@pytest.mark.parametrize("sudo_asked", [True, False])
def test_the_password_line_is_never_run(shell: str, sudo_asked: bool) -> None:
    """What sudo -S did not read is skipped, never executed, whatever the login shell."""
    target = Target(name="h", address="a", port=22, user="u")
    spec = CommandSpec(command="true", become=True, become_password="echo PWNED")
    prefix, password_line = spec.run_as(target)
    assert prefix.startswith("sudo -S ")
    assert "PWNED" not in helper_command(prefix)
    data = helper_stdin(password_line, 3.0)
    head = data[: data.index(b"elapsed=")]  # the password line, then the marker
    if sudo_asked:  # sudo read the first line
        head = head.split(b"\n", 1)[1]
    # The login shell runs the exec string; a probe stands in for the stop script.
    result = subprocess.run(
        [shell, "-c", helper_command()],
        input=head + b"echo ran\nexit 0\n",
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert result.stdout == b"ran\n", result
    assert b"PWNED" not in result.stderr


def test_stdin_carries_the_password_then_the_marker_then_the_script() -> None:
    data = helper_stdin(b"pw\n", 12.7)
    first, marker, rest = data.split(b"\n", 2)
    assert (first, marker) == (b"pw", b"#remoteops-stop")
    assert rest.startswith(b"elapsed=13\n")
    assert b"kill -s KILL" in rest


def test_only_gone_is_confirmed() -> None:
    gone = parse_helper_output(0, b"remoteops-stop: gone\n", b"")
    assert (gone.confirmed, gone.signalled) == (True, True)
    left = parse_helper_output(0, b"remoteops-stop: left 2 12:sleep:0 13:sh:0\r\n", b"")
    assert (left.confirmed, left.signalled) == (False, True)
    assert left.detail.startswith("2 processes still run after SIGTERM and SIGKILL: ")
    assert "PID 12 sleep (uid 0), PID 13 sh (uid 0)" in left.detail
    unchecked = parse_helper_output(0, b"remoteops-stop: unchecked 9:sudo:0\n", b"")
    assert not unchecked.confirmed
    assert "1 process started while it ran could not be checked" in unchecked.detail
    unsupported = parse_helper_output(0, b"remoteops-stop: unsupported the host has no awk\n", b"")
    assert (unsupported.confirmed, unsupported.signalled) == (False, False)
    assert unsupported.detail == "the host has no awk"


def test_a_helper_that_failed_is_named_in_one_clean_line() -> None:
    report = parse_helper_output(1, b"", b"sudo: a password is required\x1b[2J\nmore\n")
    assert (report.confirmed, report.signalled) == (False, False)
    assert report.detail == "the stop helper failed (sudo: a password is required\\x1b[2J)"
    many = b"remoteops-stop: left 7 " + b" ".join(b"%d:sleep:0" % i for i in range(7))
    assert parse_helper_output(0, many, b"").detail.count("PID") == 5
    assert "and 2 more" in parse_helper_output(0, many, b"").detail

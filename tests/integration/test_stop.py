"""Remote work really stops, for every login (issue 11, D9).

sshd refuses the SSH ``signal`` request for root logins, a command that ignores
SIGHUP survives the channel's close, and sudo runs a ``--become`` command in a
session of its own. After a deadline, Ctrl-C or SIGTERM the command's processes
must be gone within 2 s, and the message may say so only when the host
confirmed it.

Lab hosts share this machine's PID namespace: the tests look for the remote
processes in this machine's /proc, by a unique number in their command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab, descendants, is_alive

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "remoteops", "--no-log-file"]
# The deadline is 2 s from the stop; the bounds below add generous slack
# for a shared, noisy machine.
STOP_SLACK_S = 3.0


def _token() -> str:
    """Digits unique to one test command: ``sleep 600.TOKEN`` is a valid, unique sleep."""
    return f"{os.getpid()}{random.randrange(10**9):09d}"


def _stubborn(token: str) -> str:
    """A command that ignores SIGHUP and SIGTERM and has a child process of its own."""
    return f"trap '' HUP TERM; sh -c 'sleep 600.{token}' & sleep 601.{token}; wait"


def _running(token: str, *, exclude: tuple[int, ...] = ()) -> list[int]:
    """Live processes (not zombies) whose command line holds ``token``."""
    needle = token.encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@contextlib.contextmanager
def _cleanup(tokens: list[str]) -> Iterator[None]:
    """Whatever happens, end the remote processes this test started (by PID)."""
    try:
        yield
    finally:
        for token in tokens:
            for pid in _running(token):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _host_lines(output: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {obj["host"]: obj for obj in lines if obj["type"] == "host"}


def _assert_stopped(obj: dict[str, Any], *, status: str) -> None:
    assert obj["status"] == status, obj
    assert "was stopped on the host" in obj["error"], obj["error"]
    assert "could not be confirmed" not in obj["error"]


LOGINS: dict[str, tuple[str, ...]] = {
    "root": ("-u", "root"),
    "root-pty": ("-u", "root", "--pty"),
    "rolab": (),
    "rolab-pty": ("--pty",),
    "become": ("--become",),
    "become-pty": ("--become", "--pty"),
    "root-become": ("-u", "root", "--become"),
}


def test_timeout_stops_every_process_for_every_login(lab: Lab) -> None:
    """Root and unprivileged logins, with and without a pty, and under sudo: -t 2 stops all."""
    runs: dict[str, tuple[str, str, subprocess.Popen[str]]] = {}
    tokens = {name: _token() for name in LOGINS}
    with _cleanup(list(tokens.values())):
        for index, (name, args) in enumerate(LOGINS.items()):
            host = lab.hosts[index % len(lab.hosts)].name
            become = ["--become-password-file", str(lab.become_password_file)]
            argv = [
                *CLI, "run", host, "-i", str(lab.inventory), "--json", "-t", "2", *args,
                *(become if "--become" in args else []), "--", _stubborn(tokens[name]),
            ]  # fmt: skip
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            runs[name] = (host, tokens[name], proc)
        for name, (host, token, proc) in runs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 3, (name, out, err)
            obj = _host_lines(out)[host]
            _assert_stopped(obj, status="timeout")
            assert obj["duration_s"] < 2 + 2 + STOP_SLACK_S, (name, obj)
            # Confirmed means gone: nothing of it runs once remoteops has said so.
            assert _wait_for(lambda t=token: not _running(t), timeout=1.0), (name, _running(token))


@pytest.mark.parametrize(
    ("sig", "code", "args"),
    [
        (signal.SIGINT, 130, ("-u", "root")),
        (signal.SIGTERM, 143, ("--become", "--pty")),
        (signal.SIGINT, 130, ("-u", "root", "--procs", "2")),
        (signal.SIGTERM, 143, ("--become", "--procs", "2")),
    ],
    ids=["sigint-root", "sigterm-become-pty", "sigint-procs", "sigterm-procs"],
)
def test_interrupt_stops_every_process(
    lab: Lab, sig: signal.Signals, code: int, args: tuple[str, ...]
) -> None:
    token = _token()
    become = ["--become-password-file", str(lab.become_password_file)]
    argv = [
        *CLI, "run", "all", "-i", str(lab.inventory), "--json", *args,
        *(become if "--become" in args else []), "--", _stubborn(token),
    ]  # fmt: skip
    with _cleanup([token]):
        # A session of its own, as a terminal's foreground job: Ctrl-C reaches the
        # whole process group (--procs workers too), SIGTERM the command alone.
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            # Every host runs the shell, its `sh -c` child and two sleeps.
            started = _wait_for(
                lambda: len(_running(token, exclude=(proc.pid,))) >= 4 * len(lab.hosts), 20
            )
            assert started, _running(token, exclude=(proc.pid,))
            workers = descendants([proc.pid])
            assert len(workers) == (2 if "--procs" in args else 0), workers
            if sig == signal.SIGINT:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=30)
            elapsed = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == code, out + err
        hosts = _host_lines(out)
        assert set(hosts) == {h.name for h in lab.hosts}
        for obj in hosts.values():
            _assert_stopped(obj, status="interrupted")
        assert elapsed < 2 + STOP_SLACK_S, elapsed
        assert _wait_for(lambda: not _running(token), timeout=1.0), _running(token)
        assert not [pid for pid in workers if is_alive(pid)]
        assert "Traceback" not in err


def test_play_step_timeout_stops_a_root_command(lab: Lab, tmp_path: Path) -> None:
    token = _token()
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n  steps:\n"
        f"    - run: {json.dumps(_stubborn(token))}\n      timeout: 2\n"
        "    - run: echo after\n"
    )
    with _cleanup([token]):
        result = subprocess.run(
            [*CLI, "play", str(book), "-i", str(lab.inventory), "-u", "root", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 3, result.stdout + result.stderr
        steps = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        first = [o for o in steps if o["type"] == "host" and o["step"] == 1]
        assert {o["host"] for o in first} == {h.name for h in lab.hosts}
        for obj in first:
            _assert_stopped(obj, status="timeout")
            assert "the step's timeout" in obj["error"]
        assert _wait_for(lambda: not _running(token), timeout=1.0), _running(token)


def test_orphans_are_stopped_and_setsid_daemons_left_alone(lab: Lab) -> None:
    """The command's shell exits at once; the background sleep it left holds the output
    open until -t, and must be stopped; the process that detached with setsid is not."""
    token = _token()
    host = lab.hosts[0].name
    command = (
        f"trap '' HUP; sleep 600.{token} & "
        f"setsid sleep 602.{token} </dev/null >/dev/null 2>&1 & exit 0"
    )
    with _cleanup([token]):
        result = subprocess.run(
            [*CLI, "run", host, "-i", str(lab.inventory), "-u", "root", "--json", "-t", "2",
             "--", command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 3, result.stdout + result.stderr
        _assert_stopped(_host_lines(result.stdout)[host], status="timeout")
        assert _wait_for(lambda: len(_running(token)) == 1, timeout=1.0), _running(token)
        (daemon,) = _running(token)
        assert Path(f"/proc/{daemon}/cmdline").read_bytes().startswith(b"sleep\x00602.")


def test_an_unconfirmed_stop_says_why(lab: Lab, tmp_path: Path) -> None:
    """A root process started by an unprivileged login (sudo inside the command) is out
    of its reach: the message must not claim the command was stopped."""
    token = _token()
    host = lab.hosts[0].name
    command = f"sudo -S -p '' sh -c \"trap '' HUP TERM; sleep 600.{token}\""
    with _cleanup([token]):
        result = subprocess.run(
            [*CLI, "run", host, "-i", str(lab.inventory), "--json", "-t", "2",
             "--stdin", str(lab.become_password_file), "--", command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 3, result.stdout + result.stderr
        error = _host_lines(result.stdout)[host]["error"]
        assert "was stopped on the host" not in error
        assert "stopping it on the host could not be confirmed" in error
        assert "still run after SIGTERM and SIGKILL" in error
        assert "(uid 0)" in error
        assert _running(token), "the root process was expected to survive the login's signals"

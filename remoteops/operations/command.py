"""The ``run`` operation: one command on one host's open session, and its result.

``run_on`` is a function of one session (left open for the next operation)
and the ``CommandSpec``; it streams output lines to ``on_line`` and, with an
output directory, the host's bytes to its files. ``Executor.run_command`` fans
it out over the executor's session pool; a playbook's ``run`` and ``script``
steps call it on the pooled session of each host.
"""

from __future__ import annotations

import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remoteops.become import Become
from remoteops.outdir import OutDirSink, write_exit
from remoteops.results import HostResult
from remoteops.session import (
    DEFAULT_MAX_OUTPUT,
    ExecResult,
    LineSink,
    PromptAnswer,
    Session,
)
from remoteops.target import Target

__all__ = ["CommandSpec", "run_on", "sudo_refusal"]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What to run on each host."""

    command: str
    pty: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
    max_output: int = DEFAULT_MAX_OUTPUT

    def remote_command(self, target: Target) -> tuple[str, bytes | None, PromptAnswer | None]:
        """The command line sent to the host, the bytes for its stdin, and, on a
        terminal, what answers sudo's password prompt.

        With become the command runs under sudo and the password goes on stdin,
        never on a command line. Without a terminal the command reads its stdin
        only past a marker line that follows the password, so a password sudo
        did not ask for (NOPASSWD, a root login, cached credentials) never
        reaches it. On a terminal (``--pty``) input is echoed until sudo turns
        echo off, so the password waits for sudo's prompt (``PromptAnswer``).
        """
        become = Become.choose(self.become, self.become_user, self.become_password, target)
        if become is None:
            return self.command, self.stdin, None
        if not become.password:
            return become.command(self.command), self.stdin, None
        if self.pty:
            prompt = f"[remoteops-sudo-{secrets.token_hex(8)}]"
            line = f"sudo -S -p {shlex.quote(prompt)} -u {shlex.quote(become.user)} -- sh -c "
            answer = PromptAnswer(prompt.encode(), become.password_line, self.stdin)
            return line + shlex.quote(self.command), None, answer
        return become.command(self.command), become.stdin(self.stdin or b""), None

    def run_as(self, target: Target) -> tuple[str, bytes]:
        """The ``sudo ... --`` prefix (empty without become) and the stdin it reads first.

        With a password sudo reads it from the first line of stdin (``-S``) and
        prints no prompt (``-p ''``); without one it must not ask (``-n``).
        """
        become = Become.choose(self.become, self.become_user, self.become_password, target)
        if become is None:
            return "", b""
        return become.prefix, become.password_line


def run_on(
    session: Session,
    spec: CommandSpec,
    *,
    cancel: threading.Event,
    timeout: float | None,
    timeout_name: str = "--timeout",
    on_line: LineSink | None = None,
    out_dir: Path | None = None,
    start: float | None = None,
    on_bytes: Callable[[str, bytes], None] | None = None,
) -> HostResult:
    """Run ``spec`` over an open ``session`` (left open) and return the host's result.

    ``timeout`` is the command's deadline (``timeout_name`` names it in the
    message); ``cancel`` (Ctrl-C) stops the command on the host; ``start``
    (``time.monotonic()``) is where the result's duration counts from.
    ``on_bytes(stream, data)`` gets the output's exact bytes as they arrive (with
    ``out_dir``, its files get them instead).
    Raises HostError if the connection fails under the command.
    """
    target = session.target
    start = time.monotonic() if start is None else start
    command, stdin, answer = spec.remote_command(target)
    sink = OutDirSink(out_dir, target.name) if out_dir else None
    if sink is not None:
        on_bytes = sink.write
    try:
        result = session.exec(
            command,
            timeout=timeout,
            pty=spec.pty,
            env=spec.env,
            stdin=stdin,
            max_output=spec.max_output,
            on_line=on_line,
            on_bytes=on_bytes,
            cancel=cancel,
            run_as=spec.run_as(target),
            answer=answer,
        )
    finally:
        if sink:
            sink.close()
    duration = time.monotonic() - start
    if result.timed_out:
        status, error = (
            "timeout",
            f"command did not finish within {timeout:g}s ({timeout_name}); "
            f"{_stopped(result, 'it')}",
        )
    elif result.interrupted:
        status, error = "interrupted", _stopped(result, "the command")
    elif answer is not None and answer.refused:
        status, error = "failed", _wrong_password(target)
    elif result.exit_code is None:
        status, error = "failed", _killed(result.signal)
    elif result.exit_code != 0:
        refusal = sudo_refusal(spec, target, result.exit_code, result.stderr)
        status, error = "failed", refusal or f"exit code {result.exit_code}"
    else:
        status, error = "ok", None
    if out_dir:
        write_exit(out_dir, target.name, result.exit_code, status)
    return HostResult(
        host=target.name,
        address=target.address,
        port=target.port,
        status=status,  # type: ignore[arg-type]
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        duration_s=duration,
        error=error,
        stdout_truncated=result.stdout_truncated,
        stderr_truncated=result.stderr_truncated,
        signal=result.signal,
        # For the analysis stage: this run's file of the host's whole stdout.
        extra={"_stdout_file": sink.stdout_path} if sink else {},
    )


def _killed(signal: str | None) -> str:
    """Why a command ended without an exit code: the signal the server named, if it did."""
    if signal and signal != "unknown":
        return f"killed by {signal}"
    return "the command ended without an exit code (killed by a signal the server did not name)"


# sudo's own lines (exit code 1) when it refuses before running the command.
_SUDO_WRONG_PASSWORD = re.compile(
    rb"^(?:sudo: \d+ incorrect password attempts?|Sorry, try again\.)\r?$", re.MULTILINE
)
_SUDO_NEEDS_PASSWORD = re.compile(
    rb"^sudo: (?:a password is required|a terminal is required to read the password)", re.MULTILINE
)
_SUDO_UNKNOWN_USER = re.compile(rb"^sudo: unknown user:? (\S+)\r?$", re.MULTILINE)


def _wrong_password(target: Target) -> str:
    return (
        f"sudo: wrong password for {target.user}; check --become-password-file "
        "(or ansible_become_password)"
    )


def sudo_refusal(spec: CommandSpec, target: Target, exit_code: int, stderr: bytes) -> str | None:
    """What sudo said when it refused to run a become command, in one line; None otherwise.

    sudo exits 1 after a wrong password, a password it needed and was not
    given, or an unknown ``--become-user``, and says so on stderr first.
    """
    if exit_code != 1 or not spec.run_as(target)[0]:
        return None
    if _SUDO_WRONG_PASSWORD.search(stderr):
        return _wrong_password(target)
    if _SUDO_NEEDS_PASSWORD.search(stderr):
        return (
            f"sudo: {target.user} needs a password to run commands as another user; "
            "give it with --become-password-file"
        )
    unknown = _SUDO_UNKNOWN_USER.search(stderr)
    if unknown:
        name = unknown.group(1).decode("utf-8", errors="replace")
        return f"sudo: no user {name} on the host; check --become-user"
    return None


def _stopped(result: ExecResult, subject: str) -> str:
    """What became of a stopped command: a claim only when the host confirmed it."""
    if result.stop is not None and result.stop.confirmed:
        return f"{subject} was stopped on the host"
    why = result.stop.detail if result.stop is not None else "no report"
    return f"stopping {subject} on the host could not be confirmed: {why}"

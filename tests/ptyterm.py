"""Run a command on a real pseudo-terminal, as an operator at a terminal would.

The child gets a new session whose controlling terminal is the pty, with its
stdin, stdout and stderr on it (or stdout sent to a file), so it sees
``isatty()`` true, draws progress displays, and gets SIGINT from a ``\\x03``
typed into the terminal through the line discipline, exactly as from Ctrl-C.
Everything the child writes to the terminal is kept, escape sequences and all,
for :func:`terminal_problems` to check that the terminal was left as found.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# What the child must not inherit from the test's environment: it would change
# what a terminal program decides to draw.
_UNSET = ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")

HIDE_CURSOR = b"\x1b[?25l"
SHOW_CURSOR = b"\x1b[?25h"

# One complete escape sequence: CSI (ESC [ params intermediates final), OSC or
# another string command ended by BEL or ST, or a two-byte ESC sequence.
_SEQUENCE = re.compile(
    rb"\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"
    rb"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)"
    rb"|\x1b(?![\[\]PX^_])[\x20-\x2f]*[\x30-\x7e]"
)
_SGR = re.compile(rb"\x1b\[([0-9;]*)m")


@dataclass
class PtyRun:
    """What a run on the pty did."""

    exit_code: int
    output: bytes  # every byte the terminal received
    pid: int

    @property
    def text(self) -> str:
        """The output as text, with the terminal's CRLF line ends made LF."""
        return self.output.decode("utf-8", errors="replace").replace("\r\n", "\n")

    @property
    def lines(self) -> list[str]:
        """The lines as a reader sees them: no escape sequences, only what the last
        carriage return of each line left (a progress display redraws itself so)."""
        plain = _SEQUENCE.sub(b"", self.output).decode("utf-8", errors="replace")
        return [line.rpartition("\r")[2] for line in plain.replace("\r\n", "\n").split("\n")]


Step = tuple[bytes, "bytes | Callable[[int], None]"]
"""Wait until the output holds ``bytes`` (after the previous step's match), then
type the given bytes into the terminal, or call the function with the child's PID."""


def remoteops_argv() -> list[str]:
    """The ``remoteops`` command installed next to this Python, as a user runs it."""
    script = Path(sys.executable).with_name("remoteops")
    return [str(script)] if script.exists() else [sys.executable, "-m", "remoteops"]


def terminal_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """An environment for a terminal program: ``TERM=xterm-256color``, colours not forced."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _UNSET}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def _take_terminal() -> None:  # pragma: no cover - runs in the child before exec
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_pty(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdout_path: Path | None = None,
    steps: Sequence[Step] = (),
    timeout: float = 60,
    columns: int = 100,
    rows: int = 30,
) -> PtyRun:
    """Run ``argv`` on a new pty of ``columns`` x ``rows`` and wait for it to exit.

    ``stdout_path``: stdout goes to that file while stdin and stderr stay on
    the terminal. ``steps`` are played in order. Everything is bounded by
    ``timeout``: a child still running then is killed (its whole session) and
    the test fails with what the terminal showed.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    out_file = open(stdout_path, "wb") if stdout_path is not None else None  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=out_file if out_file is not None else slave,
            stderr=slave,
            cwd=cwd,
            env=terminal_env() if env is None else env,
            start_new_session=True,
            preexec_fn=_take_terminal,  # only an ioctl, run after setsid
        )
    finally:
        os.close(slave)
        if out_file is not None:
            out_file.close()
    output = bytearray()
    pending = list(steps)
    searched = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            while pending:
                expect, action = pending[0]
                found = output.find(expect, searched)
                if found < 0:
                    break
                searched = found + len(expect)
                pending.pop(0)
                if callable(action):
                    action(proc.pid)
                else:
                    os.write(master, action)
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(
                    f"{list(argv)} still running after {timeout}s; "
                    f"waiting for {pending[0][0] if pending else 'exit'!r}; the terminal showed:\n"
                    + output.decode("utf-8", errors="replace")
                )
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal has closed it
                    chunk = b""
                if chunk:
                    output += chunk
                    continue
                if proc.poll() is None:  # closed, yet running: only wait for the exit
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                break
            if proc.poll() is not None:
                break
        # Whatever the child wrote just before it exited is still in the pty.
        for _ in range(50):
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(master)
    return PtyRun(exit_code=proc.wait(), output=bytes(output), pid=proc.pid)


def terminal_problems(output: bytes) -> list[str]:
    """How ``output`` leaves a terminal in a state other than it found it (empty: none).

    Checks that the cursor is shown after its last hiding, that every escape
    sequence is complete, that colours and attributes are reset at the end,
    and that no sequence retitles the terminal, clears it or switches screens.
    """
    problems = []
    hidden = output.rfind(HIDE_CURSOR)
    if hidden >= 0 and output.find(SHOW_CURSOR, hidden) < 0:
        problems.append("the cursor is left hidden")
    position = 0
    while (start := output.find(b"\x1b", position)) >= 0:
        match = _SEQUENCE.match(output, start)
        if match is None:
            problems.append(f"unterminated escape sequence {output[start : start + 12]!r}")
            position = start + 1
            continue
        sequence = match.group()
        if sequence.startswith((b"\x1b]", b"\x1b[2J", b"\x1b[3J", b"\x1b[?1049", b"\x1bc")):
            problems.append(f"the output drives the terminal: {sequence!r}")
        position = match.end()
    attributes = _SGR.findall(output)
    if attributes and attributes[-1] not in (b"", b"0"):
        problems.append(f"attributes left on: \\x1b[{attributes[-1].decode()}m")
    return problems


def assert_clean_exit(run: PtyRun, code: int | Sequence[int] = 0) -> None:
    """The exit code is ``code`` (or one of them), no traceback, the terminal restored."""
    codes = (code,) if isinstance(code, int) else tuple(code)
    assert run.exit_code in codes, f"exit {run.exit_code}, expected {codes}:\n{run.text}"
    assert "Traceback" not in run.text, run.text
    assert "internal error" not in run.text, run.text
    assert "lost sys.stderr" not in run.text, run.text
    assert terminal_problems(run.output) == [], run.text

"""Renderers: live host-prefixed lines, gathered blocks, JSON Lines and the failure summary.

Report only renders: it receives results and writes to the streams it is
given. Every write of a line happens under one lock, so a line is never torn
between hosts. What hosts sent is shown through :mod:`remoteops.printable`
(control characters escaped), so no host can drive the operator's terminal or
forge another host's lines; ``--out-dir`` and JSON keep the exact text.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any, Protocol

from remoteops.nodeset import fold, hosts_label
from remoteops.printable import json_safe, printable, printable_bytes
from remoteops.results import HostResult, RunResult
from remoteops.wording import plural

__all__ = [
    "JsonLinesWriter",
    "LivePrinter",
    "failure_line",
    "gather",
    "gathered_blocks",
    "outcome",
    "render_gathered",
    "render_summary",
]

_COLORS = (36, 32, 33, 35, 34, 96, 92, 93, 95, 94)


def use_color(stream: IO[Any]) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ByteSink(Protocol):
    """Where :class:`LivePrinter` writes: a binary stream, or anything that writes like one."""

    def write(self, data: bytes, /) -> object:
        """Write ``data``."""

    def flush(self) -> object:
        """Flush what was written."""


class LivePrinter:
    """Prints each output line as ``host: line`` the moment it arrives.

    A line's control characters other than tab are shown escaped (``\\x1b``,
    ``\\r``; a ``\\r`` ending the line, as from a pseudo-terminal, is dropped)
    and bytes that are not UTF-8 as ``\\xNN``.
    """

    def __init__(
        self,
        out: ByteSink,
        err: ByteSink,
        *,
        color: bool = False,
        width: int = 0,
        quiet: bool = False,
    ) -> None:
        self._out, self._err = out, err
        self._color = color
        self._width = width
        self._quiet = quiet
        self._lock = threading.Lock()
        self._buffered: dict[str, list[tuple[str, bytes]]] = {}
        self._closed: set[ByteSink] = set()

    def _prefix(self, host: str) -> bytes:
        label = host.ljust(self._width)
        if not self._color:
            return f"{label}: ".encode()
        code = _COLORS[int(hashlib.md5(host.encode(), usedforsecurity=False).hexdigest(), 16) % 10]
        return f"\x1b[{code}m{label}\x1b[0m: ".encode()

    def line(self, host: str, stream: str, data: bytes) -> None:
        """Print one complete line (called from worker threads)."""
        if self._quiet:
            # Held back until we know whether the host failed.
            with self._lock:
                self._buffered.setdefault(host, []).append((stream, data))
            return
        self._write(host, stream, data)

    def _write(self, host: str, stream: str, data: bytes) -> None:
        target = self._out if stream == "stdout" else self._err
        payload = self._prefix(host) + printable_bytes(data.rstrip(b"\r")).encode() + b"\n"
        with self._lock:
            if target in self._closed:
                return
            try:
                target.write(payload)
                target.flush()
            except BrokenPipeError:
                # The reader went away (`| head`): stop writing there, keep running.
                self._closed.add(target)

    def host_done(self, result: HostResult) -> None:
        """In quiet mode, show a failed host's held-back output."""
        if not self._quiet:
            return
        with self._lock:
            lines = self._buffered.pop(result.host, [])
        if not result.is_ok:
            for stream, data in lines:
                self._write(result.host, stream, data)


class JsonLinesWriter:
    """The JSON Lines of docs/json.md: one object per host as it finishes, then a summary.

    Without ``out`` it writes to ``sys.stdout`` as it is at each write: while a
    progress display is up on the terminal, that is rich's proxy, which prints
    above the display instead of tearing it.
    """

    def __init__(self, out: IO[str] | None = None) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._closed = False

    def host(self, result: HostResult) -> None:
        """Write one host line and flush it."""
        self.record(result.to_json())

    def summary(self, run: RunResult, **fields: Any) -> None:
        """Write the summary line; ``fields`` add to or override the run's own."""
        self.record({**run.summary_json(), **fields})

    def record(self, obj: Mapping[str, Any]) -> None:
        """Write any other object (a command's own line type) and flush it."""
        line = json_safe(json.dumps(obj, ensure_ascii=False, separators=(", ", ": "), default=str))
        with self._lock:
            if self._closed:
                return
            try:
                out = self._out or sys.stdout
                out.write(line + "\n")
                out.flush()
            except BrokenPipeError:
                self._closed = True


def gather(results: Iterable[HostResult]) -> list[tuple[list[str], HostResult]]:
    """Group hosts with identical stdout, stderr, exit code and status, largest group first."""
    groups: dict[tuple[bytes, bytes, int | None, str], list[HostResult]] = {}
    for r in results:
        groups.setdefault((r.stdout, r.stderr, r.exit_code, r.status), []).append(r)
    ordered = sorted(groups.values(), key=lambda rs: (-len(rs), rs[0].host))
    return [([r.host for r in rs], rs[0]) for rs in ordered]


def render_gathered(results: Sequence[HostResult], *, color: bool = False) -> str:
    """Text blocks like ``clush -b``: a folded node set header, then the shared output.

    The output is shown as :class:`LivePrinter` shows lines: control characters
    other than tab and newline escaped (``\\r\\n`` line ends become ``\\n``).
    """
    blocks = []
    for hosts, body in gathered_blocks(results):
        title = f"{fold(hosts)} ({len(hosts)})"
        rule = "-" * min(max(len(title), 15), 78)
        head = f"\x1b[1m{title}\x1b[0m" if color else title
        blocks.append(f"{rule}\n{head}\n{rule}\n{body}")
    return "".join(blocks)


def gathered_blocks(results: Iterable[HostResult]) -> list[tuple[list[str], str]]:
    """The groups of :func:`gather` with the text ``--gather`` shows for each: the shared
    stdout and stderr, :func:`printable` (newlines kept, ``\\r\\n`` as ``\\n``), ending in
    a newline, then ``[outcome]`` for a group that did not succeed. The HTML report
    (:mod:`remoteops.htmlreport`) shows the same text."""
    blocks = []
    for hosts, sample in gather(results):
        raw = sample.stdout + sample.stderr
        body = printable_bytes(raw.replace(b"\r\n", b"\n"), keep_newlines=True)
        if body and not body.endswith("\n"):
            body += "\n"
        if sample.status != "ok":
            body += f"[{outcome(sample)}]\n"
        blocks.append((hosts, body))
    return blocks


def outcome(result: HostResult) -> str:
    """What became of a host, for people: its status, then why.

    ``unreachable after 3 attempts: connection to ... refused`` when connecting
    was retried (``--retries``); an error that starts with the status word is
    not preceded by it again (``interrupted while connecting``, never
    ``interrupted: interrupted while connecting``). Shown :func:`printable`.
    """
    status: str = result.status
    attempts = result.extra.get("attempts")
    retried = isinstance(attempts, int) and attempts > 1
    if retried:
        status = f"{status} after {attempts} attempts"
    error = printable(result.error or "")
    if not error:
        return status
    first = error.split(maxsplit=1)[0].rstrip(";:,.")
    if first == result.status and not retried:
        return error
    return f"{status}: {error}"


def failure_line(result: HostResult, *, width: int = 0) -> str:
    """``host: status: error`` for stderr, worded by :func:`outcome` (with a newline)."""
    return f"{result.host.ljust(width)}: {outcome(result)}\n"


def render_summary(run: RunResult, *, verb: str = "ran") -> str:
    """The failure summary for stderr: counts, then each way hosts failed, their names folded
    (``web[01-05] (5): unreachable: ...``), the most common first."""
    counts = run.counts()
    parts = [f"{counts['ok']} ok"]
    for status in ("failed", "unreachable", "hostkey", "timeout", "interrupted", "skipped"):
        if counts[status]:
            parts.append(f"{counts[status]} {status}")
    lines = [f"{plural(len(run), 'host')}: {', '.join(parts)} ({run.duration_s:.1f}s)"]
    by_reason: dict[str, list[str]] = {}
    for name, r in run.failed_hosts.items():
        by_reason.setdefault(outcome(r), []).append(name)
    for reason, hosts in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {hosts_label(hosts)}: {reason}")
    return "\n".join(lines) + "\n"

"""Standard output and error that outlive their reader (`remoteops ... | head -1`).

When the reader of a pipe goes away, the next write to it fails with EPIPE.
Left alone, that exception surfaces wherever the write happened (a reporter
between two steps of a rollout, a worker thread printing a line) and ends the
command half-way. Instead :func:`guard_streams` wraps ``sys.stdout`` and
``sys.stderr``: the first failed write marks the stream closed, points its file
descriptor at /dev/null (so buffered bytes and later writes vanish quietly),
and tells the listeners registered with :meth:`OutputWatch.on_close`. The
command line uses that to start no more hosts, to end a rollout at a batch
boundary, and to exit 141 (``ExitCode.BROKEN_PIPE``, see docs/exit-codes.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["OutputWatch", "guard_streams", "watch"]

logger = logging.getLogger(__name__)


class OutputWatch:
    """Which of stdout and stderr lost their reader, and who wants to know."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed: list[str] = []
        self._listeners: list[Callable[[str], None]] = []
        self._announced = False

    @property
    def closed(self) -> tuple[str, ...]:
        """The names of the closed streams ("stdout", "stderr"), first closed first."""
        with self._lock:
            return tuple(self._closed)

    @property
    def reason(self) -> str | None:
        """``"stdout was closed (broken pipe)"``, or None while both are open."""
        closed = self.closed
        return f"{closed[0]} was closed (broken pipe)" if closed else None

    def is_closed(self, name: str) -> bool:
        """True once the stream ``name`` lost its reader."""
        with self._lock:
            return name in self._closed

    def mark_closed(self, name: str, fd: int | None) -> None:
        """Record that ``name`` (on ``fd``) lost its reader; tell the listeners once."""
        with self._lock:
            if name in self._closed:
                return
            self._closed.append(name)
            listeners = list(self._listeners)
        if fd is not None:
            _to_devnull(fd)
        for listener in listeners:
            listener(name)

    def announce(self, message: str) -> None:
        """Say once, in one line, what the closed pipe did to the command: on stderr
        (unless stderr is the stream that closed) and in the log."""
        with self._lock:
            if self._announced:
                return
            self._announced = True
        logger.info("%s", message)
        sys.stderr.write(f"remoteops: {message}\n")
        sys.stderr.flush()

    def on_close(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(name)`` when a stream closes (at once if one already has).

        Listeners run in the thread whose write failed; they must be quick and
        thread-safe (set an event, not print).
        """
        with self._lock:
            self._listeners.append(listener)
            closed = list(self._closed)
        for name in closed[:1]:
            listener(name)


def _to_devnull(fd: int) -> None:
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)


def _is_broken_pipe(exc: OSError) -> bool:
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


class _Guarded:
    """A stream whose writes and flushes never raise EPIPE; everything else passes through."""

    def __init__(self, stream: Any, name: str, owner: OutputWatch) -> None:
        self._stream = stream
        self._name = name
        self._owner = owner
        self._buffer: _Guarded | None = None

    def _fd(self) -> int | None:
        try:
            return int(self._stream.fileno())
        except (OSError, ValueError, AttributeError):
            return None

    def write(self, data: Any) -> int:
        """Write ``data``; once the reader is gone, discard it."""
        try:
            return int(self._stream.write(data))
        except OSError as exc:
            if not _is_broken_pipe(exc):
                raise
            self._owner.mark_closed(self._name, self._fd())
            return len(data)

    def writelines(self, lines: Any) -> None:
        """Write each of ``lines``."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush; once the reader is gone, the rest goes to /dev/null."""
        try:
            self._stream.flush()
        except OSError as exc:
            if not _is_broken_pipe(exc):
                raise
            self._owner.mark_closed(self._name, self._fd())
            with contextlib.suppress(OSError, ValueError):
                self._stream.flush()  # the fd is /dev/null now: empty the buffer there

    @property
    def buffer(self) -> _Guarded:
        """The binary stream under a text stream, guarded the same way."""
        if self._buffer is None:
            self._buffer = _Guarded(self._stream.buffer, self._name, self._owner)
        return self._buffer

    @property
    def wrapped(self) -> Any:
        """The stream this one guards."""
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_current = OutputWatch()


def watch() -> OutputWatch:
    """The watch of the streams :func:`guard_streams` installed (a fresh one per command)."""
    return _current


@contextlib.contextmanager
def guard_streams() -> Iterator[OutputWatch]:
    """Guard ``sys.stdout`` and ``sys.stderr`` for the duration of one command.

    A standard stream whose descriptor was already closed when the process started
    (``>&-``, ``2>&-``, ``<&-``: Python leaves it None) is /dev/null for the command,
    as Python's own ``print`` treats it: an output nobody asked for, not a reader
    that went away.
    """
    global _current
    previous_watch = _current
    saved: dict[str, IO[Any] | None] = {
        "stdin": sys.stdin,
        "stdout": sys.stdout,
        "stderr": sys.stderr,
    }
    current = OutputWatch()
    _current = current
    opened: list[IO[Any]] = []
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - closed below
        opened.append(sys.stdin)
    for name in ("stdout", "stderr"):
        stream = saved[name]
        if stream is None:
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - closed below
            opened.append(stream)
        inner = stream.wrapped if isinstance(stream, _Guarded) else stream
        setattr(sys, name, _Guarded(inner, name, current))
    try:
        yield current
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved["stdin"], saved["stdout"], saved["stderr"]
        for stream in opened:
            stream.close()
        _current = previous_watch

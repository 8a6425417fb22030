"""One host's transfer as the executor runs it: its counters and its result.

``_host_work`` wraps a per-host body: open the session (through sudo with
``become``), the transfer deadline, the error mapping, and the removal of
temporary files on failure, over a fresh connection if the old one is gone.
``_Stats`` counts files, bytes, failures and warnings and feeds the progress
callback; ``_result`` turns it into the host's ``HostResult`` with the extra
JSON fields ``files``, ``unchanged``, ``failed_files``, ``bytes``, ``changed``
and ``skipped``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remoteops.become import Become, Remote, SudoSession
from remoteops.errors import CommandTimeoutError, HostError, InterruptedHostError, TransferError
from remoteops.results import HostResult
from remoteops.session import Session, map_errors
from remoteops.transfer.model import ProgressSink, TransferOptions

if TYPE_CHECKING:
    from remoteops.execution import Executor
    from remoteops.target import Target

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Stats:
    host: str
    progress: ProgressSink | None
    files: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    attrs_changed: int = 0
    current: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # get: remote paths of the files this run left in place, downloaded or unchanged
    covered: list[str] = field(default_factory=list)

    def moved(self, nbytes: int) -> None:
        self.bytes += nbytes
        if self.progress is not None and nbytes:
            self.progress(self.host, nbytes, 0)

    def done(self, count: int = 1) -> None:
        self.files += count
        if self.progress is not None and count:
            self.progress(self.host, 0, count)

    def fail(self, message: str) -> None:
        self.failed += 1
        self.errors.append(message)
        logger.info("Host %r: %s", self.host, message)

    def warn(self, message: str) -> None:
        self.skipped += 1
        self.warnings.append(message)
        logger.warning("Host %r: %s", self.host, message)

    def extra(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "unchanged": self.unchanged,
            "failed_files": self.failed,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "changed": bool(self.files or self.attrs_changed),
            "warnings": self.warnings[:20],
            "errors": self.errors[:20],
            "_covered": tuple(self.covered),
        }


def _result(
    target: Target, start: float, stats: _Stats, error: HostError | None = None
) -> HostResult:
    status = "ok"
    message: str | None = None
    if error is not None:
        status, message = error.status, str(error)
    elif stats.failed:
        status = "failed"
        message = stats.errors[0]
        if stats.failed > 1:
            message = f"{stats.failed} files failed; first: {message}"
    return HostResult(
        host=target.name,
        address=target.address,
        port=target.port,
        status=status,  # type: ignore[arg-type]
        duration_s=time.monotonic() - start,
        error=message,
        extra=stats.extra(),
    )


def _host_work(
    executor: Executor,
    stats_progress: ProgressSink | None,
    opts: TransferOptions,
    body: Callable[[Remote, _Stats, set[str]], None],
    cleanup: Callable[[Remote, set[str]], None],
) -> Callable[[Target], HostResult]:
    """Wrap a per-host transfer: connect, deadline, error mapping, cleanup of temporary files."""

    def work(target: Target) -> HostResult:
        start = time.monotonic()
        stats = _Stats(target.name, stats_progress)
        temps: set[str] = set()  # remote (put) temporary files to remove on failure
        become = opts.run_as(target)
        try:
            session = _as_user(executor.open_session(target), become, executor.cancel_event)
        except HostError as exc:
            return _result(target, start, stats, exc)
        expired = threading.Event()

        def on_deadline() -> None:
            expired.set()
            with contextlib.suppress(Exception):
                session.transport.close()

        error: HostError | None = None
        try:
            with (
                executor.watchdog.deadline(executor.timeouts.command, on_deadline),
                map_errors(target, phase="transfer", deadline_passed=expired.is_set),
            ):
                body(session, stats, temps)
        except HostError as exc:
            error = exc
            where = f"remote {stats.current}: " if stats.current else ""
            if expired.is_set():
                error = CommandTimeoutError(
                    target.name,
                    f"{where}transfer did not finish within {executor.timeouts.command:g}s "
                    "(--timeout)",
                )
            elif not isinstance(exc, TransferError | InterruptedHostError):
                error = TransferError(target.name, f"{where}connection lost mid-transfer ({exc})")
        finally:
            if temps:
                _cleanup(executor, target, session, temps, cleanup, become)
            session.close()
        return _result(target, start, stats, error)

    return work


def _as_user(session: Session, become: Become | None, cancel: threading.Event) -> Remote:
    """``session`` itself, or under ``become`` its SFTP and commands run through sudo."""
    return session if become is None else SudoSession(session, become, cancel)


def _cleanup(
    executor: Executor,
    target: Target,
    session: Remote,
    temps: set[str],
    cleanup: Callable[[Remote, set[str]], None],
    become: Become | None,
) -> None:
    """Remove leftover temporary files, over a fresh connection if this one is gone."""
    try:
        if session.transport.is_active():
            cleanup(session, temps)
            return
    except Exception:
        logger.debug("Host %r: cleanup on the old connection failed", target.name, exc_info=True)
    fresh: Remote | None = None
    try:
        # Its own never-set cancel: after Ctrl-C the cleanup still has to run.
        fresh = _as_user(executor.open_session(target), become, threading.Event())
        cleanup(fresh, temps)
    except Exception as exc:
        logger.warning(
            "Host %r: could not remove temporary files %s (%s)",
            target.name,
            ", ".join(sorted(temps)[:5]),
            exc,
        )
    finally:
        if fresh is not None:
            fresh.close()


def _remove_remote(session: Remote, temps: set[str]) -> None:
    sftp = session.sftp()
    for path in sorted(temps):
        with contextlib.suppress(OSError, IOError):
            sftp.remove(path)
        temps.discard(path)

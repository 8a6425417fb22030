"""One host's transfer as a per-host operation of the engine: its counters and its result.

``HostTransfer`` (``put.Put``, ``get.Get``) runs a per-host body on the
host's open session (through sudo with ``become``) under the transfer
deadline and the error mapping, and removes temporary files on failure, over
a fresh connection if the old one is gone.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remoteops.become import Become, Remote, SudoSession
from remoteops.errors import CommandTimeoutError, HostError, InterruptedHostError, TransferError
from remoteops.results import HostResult
from remoteops.session import NOTHING_RAN_ERRORS, Session, map_errors
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


class HostTransfer:
    """A transfer as a per-host operation: ``on(session)`` runs it on one host's open session.

    Made once per run (what every host shares is planned in the subclass's
    ``__init__``); ``body`` does one host's transfer, ``cleanup`` removes its
    temporary files after a failure. ``on`` wraps ``body``: sudo with
    ``become``, the transfer deadline (``timeout``, default the executor's
    ``--timeout``), the error mapping, and the cleanup, over a fresh connection
    if the old one is gone. The session stays open for the next operation,
    unless the transfer failed under it: then its connection is closed (its
    SFTP channel may hold requests nobody reads), and the pool reconnects.
    When its first channel never opens (``NOTHING_RAN_ERRORS``), nothing was
    transferred: the error is raised for the engine (``Executor.fan_out``) to
    reconnect or to report the host as not reached.
    """

    def __init__(
        self,
        executor: Executor,
        opts: TransferOptions,
        progress: ProgressSink | None = None,
        timeout: float | None = None,
    ) -> None:
        self.executor = executor
        self.opts = opts
        self.progress = progress
        self.timeout = executor.timeouts.command if timeout is None else timeout

    def body(self, session: Remote, stats: _Stats, temps: set[str]) -> None:
        """One host's transfer (raises HostError when the host fails)."""
        raise NotImplementedError

    def cleanup(self, session: Remote, temps: set[str]) -> None:
        """Remove the temporary files ``temps`` a failed transfer left on the host."""
        del session, temps

    def fan_out(self) -> Iterator[HostResult]:
        """This transfer on every target of the executor; each host's result as it finishes."""
        return self.executor.fan_out(
            lambda lease: self.on(lease.session, start=lease.start),
            unreachable=self.unreachable,
        )

    def unreachable(self, target: Target, error: HostError, start: float) -> HostResult:
        """A host that could not be connected to: its result, with the transfer's fields."""
        return _result(target, start, _Stats(target.name, self.progress), error)

    def on(self, session: Session, *, start: float | None = None) -> HostResult:
        """Run the transfer over ``session`` (left open); the host's result."""
        executor = self.executor
        target = session.target
        start = time.monotonic() if start is None else start
        stats = _Stats(target.name, self.progress)
        temps: set[str] = set()  # remote (put) temporary files to remove on failure
        become = self.opts.run_as(target)
        remote = _as_user(session, become, executor.cancel_event)
        expired = threading.Event()

        def on_deadline() -> None:
            expired.set()
            with contextlib.suppress(Exception):
                session.transport.close()

        error: HostError | None = None
        opened = session.channels_opened
        try:
            with (
                executor.watchdog.deadline(self.timeout, on_deadline),
                map_errors(target, phase="transfer", deadline_passed=expired.is_set),
            ):
                self.body(remote, stats, temps)
        except HostError as exc:
            error = exc
            where = f"remote {stats.current}: " if stats.current else ""
            if expired.is_set():
                error = CommandTimeoutError(
                    target.name,
                    f"{where}transfer did not finish within {self.timeout:g}s (--timeout)",
                )
            elif isinstance(exc, NOTHING_RAN_ERRORS) and session.channels_opened == opened:
                # Its first channel never opened: nothing was transferred, the
                # engine reconnects (a pooled connection found closed) or
                # reports the host as not reached.
                raise
            elif not isinstance(exc, TransferError | InterruptedHostError):
                error = TransferError(target.name, f"{where}connection lost mid-transfer ({exc})")
        finally:
            if temps:
                _cleanup(executor, target, remote, temps, self.cleanup, become)
            if remote is not session:
                remote.close()  # the sudo'd sftp-server; the connection stays
        if error is not None:
            with contextlib.suppress(Exception):
                session.transport.close()
        return _result(target, start, stats, error)


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
    fresh: Session | None = None
    try:
        # Its own never-set cancel: after Ctrl-C the cleanup still has to run.
        never = threading.Event()
        fresh = executor.open_session(target, cancel=never)
        as_user = _as_user(fresh, become, never)
        cleanup(as_user, temps)
        if as_user is not fresh:
            as_user.close()
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

"""``put``/``get`` on one open session, for a playbook step.

``put_on_session``/``get_on_session`` run a transfer on a session the
playbook runner owns and keeps open. ``_OneSession`` stands in for the
``Executor`` (its ``fan_out`` runs the one host's work in the caller's thread)
and ``_Lent`` turns the lent session's ``close()`` into a no-op: a stand-in
that goes once playbook steps run on the executor's own session pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remoteops.results import HostResult
from remoteops.session import Session
from remoteops.transfer.get import get
from remoteops.transfer.model import GetOptions, ProgressSink, PutOptions
from remoteops.transfer.put import put
from remoteops.transfer.sources import SourceSet

if TYPE_CHECKING:
    from remoteops.execution import Executor
    from remoteops.target import Target


class _Lent:
    """A session lent to one transfer: ``close()`` leaves the lender's connection open."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def close(self) -> None:
        """Keep the connection: its owner goes on using it."""


class _OneSession:
    """Stands in for the Executor so that ``put``/``get`` work on one open session.

    ``fan_out`` runs the per-host work once, for the session's host, in the
    caller's thread; the first ``open_session`` lends the session, and any later
    one (cleanup of temporary files after a lost connection) connects afresh.
    """

    def __init__(self, executor: Executor, session: Session, timeout: float | None) -> None:
        self._executor = executor
        self._session: Session | None = session
        self._target = session.target
        if timeout is not None:
            import dataclasses

            self.timeouts = dataclasses.replace(executor.timeouts, command=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)

    def fan_out(self, work: Callable[[Target], HostResult]) -> Iterator[HostResult]:
        yield work(self._target)

    def open_session(self, target: Target) -> Any:
        session, self._session = self._session, None
        if session is None:
            return self._executor.open_session(target)
        return _Lent(session)


def _one(executor: Executor, session: Session, timeout: float | None) -> Executor:
    from typing import cast

    return cast("Executor", _OneSession(executor, session, timeout))


def put_on_session(
    executor: Executor,
    session: Session,
    sources: SourceSet,
    dest: str,
    *,
    options: PutOptions | None = None,
    progress: ProgressSink | None = None,
    timeout: float | None = None,
) -> HostResult:
    """``put`` to the host of an open ``session``, which stays open; the host's result.

    ``timeout`` replaces the executor's transfer deadline; cancel and
    credentials are the executor's.
    """
    one = _one(executor, session, timeout)
    results = put(one, sources, dest, options=options, progress=progress)
    return next(iter(results))


def get_on_session(
    executor: Executor,
    session: Session,
    remotes: Sequence[str],
    local_dir: Path,
    *,
    options: GetOptions | None = None,
    progress: ProgressSink | None = None,
    timeout: float | None = None,
) -> HostResult:
    """``get`` from the host of an open ``session``, which stays open; the host's result."""
    one = _one(executor, session, timeout)
    results = get(one, remotes, local_dir, options=options, progress=progress)
    return next(iter(results))
